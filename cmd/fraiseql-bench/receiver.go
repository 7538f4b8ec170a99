package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxBody bounds what the receiver reads of one request: above the
// largest body a batch may have (batch.max_bytes is at most 16 MiB).
const maxBody = 17 << 20

// receiver is the webhook the service delivers to: it answers 204 at
// once and, per phase, counts each event id and records commit→delivery
// latencies (arrival minus the writer's t_ns in the event's data). A
// request carries one event envelope, or a batch document
// ({"type":"batch","count":n,"events":[...]}) whose every event is
// counted as if it had come alone, with the batch's arrival time.
type receiver struct {
	srv  *http.Server
	ln   net.Listener
	URL  string
	reqs atomic.Int64 // every request, all phases

	mu        sync.Mutex
	seen      map[string]int       // event id -> deliveries, this phase
	first     map[string]time.Time // event id -> its first arrival, this phase
	lat       []time.Duration
	last      time.Time // last arrival, this phase
	badBody   int       // bodies that are neither an event nor a well-formed batch, this phase
	phaseReqs int       // requests with a body, this phase
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver listen: %w", err)
	}
	r := &receiver{ln: ln, URL: "http://" + ln.Addr().String() + "/hook", seen: map[string]int{}, first: map[string]time.Time{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) close() { _ = r.srv.Close() }

// delivered is one event of a request: its id and the writer's t_ns.
type delivered struct {
	ID   string `json:"id"`
	Data struct {
		T int64 `json:"t_ns"`
	} `json:"data"`
}

// parseBody reads a request body: one event envelope, or a batch
// document whose count matches its events and whose every event has an
// id. Anything else is an error.
func parseBody(body []byte) ([]delivered, error) {
	var doc struct {
		delivered
		Type   string            `json:"type"`
		Count  int               `json:"count"`
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("parse body: %w", err)
	}
	if doc.Type != "batch" {
		if doc.ID == "" {
			return nil, errors.New("parse body: event without an id")
		}
		return []delivered{doc.delivered}, nil
	}
	if doc.Count != len(doc.Events) || doc.Count == 0 {
		return nil, fmt.Errorf("parse batch: count %d, %d events", doc.Count, len(doc.Events))
	}
	out := make([]delivered, len(doc.Events))
	for i, raw := range doc.Events {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			return nil, fmt.Errorf("parse batch event %d: %w", i, err)
		}
		if out[i].ID == "" {
			return nil, fmt.Errorf("parse batch event %d: no id", i)
		}
	}
	return out, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.reqs.Add(1)
	evs, err := parseBody(body)
	r.mu.Lock()
	r.phaseReqs++
	if err != nil {
		r.badBody++
	}
	for _, ev := range evs {
		if r.seen[ev.ID]++; r.seen[ev.ID] == 1 {
			r.first[ev.ID] = at
		}
		if ev.Data.T != 0 {
			r.lat = append(r.lat, at.Sub(time.Unix(0, ev.Data.T)))
		}
	}
	if len(evs) > 0 {
		r.last = at
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// reset starts a new phase.
func (r *receiver) reset() {
	r.mu.Lock()
	r.seen = map[string]int{}
	r.first = map[string]time.Time{}
	r.lat = nil
	r.last = time.Time{}
	r.badBody = 0
	r.phaseReqs = 0
	r.mu.Unlock()
}

// distinct is the number of event ids seen this phase.
func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// phaseResult is what the receiver saw of a phase's expected events.
type phaseResult struct {
	Delivered  int // distinct expected ids received
	Duplicates int // deliveries beyond the first, of any id
	Missing    int // expected ids never received
	Unexpected int // ids received that were not expected, and bodies without an id
	Malformed  int // bodies that were neither an event nor a well-formed batch (also in Unexpected)
	Requests   int // requests with a body
	Latencies  []time.Duration
	Arrived    map[string]time.Time // each id's first arrival
	Last       time.Time
}

// first is the earliest first arrival of the phase's events (zero when
// none arrived).
func (p phaseResult) first() time.Time {
	var first time.Time
	for _, at := range p.Arrived {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first
}

func (r *receiver) result(expected []string) phaseResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := phaseResult{Latencies: r.lat, Arrived: r.first, Last: r.last, Unexpected: r.badBody, Malformed: r.badBody, Requests: r.phaseReqs}
	want := make(map[string]bool, len(expected))
	for _, id := range expected {
		want[id] = true
		if r.seen[id] > 0 {
			res.Delivered++
		} else {
			res.Missing++
		}
	}
	for id, n := range r.seen {
		res.Duplicates += n - 1
		if !want[id] {
			res.Unexpected++
		}
	}
	return res
}

// hammer measures the receiver's own ceiling: conns connections posting
// an event body as fast as it answers, for d. It returns requests/s.
func hammer(ctx context.Context, url string, conns int, d time.Duration) (float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := []byte(`{"id":"00000000-0000-4000-8000-000000000000","event_type":"INSERT","entity_type":"Order",` +
		`"entity_id":"00000000-0000-4000-8000-000000000001","timestamp":"2026-01-01T00:00:00Z","data":{"t_ns":0,"status":"new"}}`)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, err)
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				n.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, fmt.Errorf("hammer the receiver: %w", err)
	}
	return float64(n.Load()) / elapsed.Seconds(), nil
}
