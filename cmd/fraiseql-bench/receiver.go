package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxBody bounds what the receiver reads of one request.
const maxBody = 1 << 20

// receiver is the webhook the service delivers to: it answers 204 at
// once and, per phase, counts each event id and records commit→delivery
// latencies (arrival minus the writer's t_ns in the event's data).
type receiver struct {
	srv  *http.Server
	ln   net.Listener
	URL  string
	reqs atomic.Int64 // every request, all phases

	mu      sync.Mutex
	seen    map[string]int // event id -> deliveries, this phase
	lat     []time.Duration
	last    time.Time // last arrival, this phase
	badBody int
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver listen: %w", err)
	}
	r := &receiver{ln: ln, URL: "http://" + ln.Addr().String() + "/hook", seen: map[string]int{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) close() { _ = r.srv.Close() }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.reqs.Add(1)
	var env struct {
		ID   string `json:"id"`
		Data struct {
			T int64 `json:"t_ns"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &env) != nil || env.ID == "" {
		r.mu.Lock()
		r.badBody++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	r.mu.Lock()
	r.seen[env.ID]++
	if env.Data.T != 0 {
		r.lat = append(r.lat, at.Sub(time.Unix(0, env.Data.T)))
	}
	r.last = at
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// reset starts a new phase.
func (r *receiver) reset() {
	r.mu.Lock()
	r.seen = map[string]int{}
	r.lat = nil
	r.last = time.Time{}
	r.badBody = 0
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
	Latencies  []time.Duration
	Last       time.Time
}

func (r *receiver) result(expected []string) phaseResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := phaseResult{Latencies: r.lat, Last: r.last, Unexpected: r.badBody}
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
