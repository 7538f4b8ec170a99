package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
)

// batchRequest is one batch a batchReceiver took.
type batchRequest struct {
	WebhookID string
	Attempt   int // requests with this webhook-id so far, this one included
	Events    []domain.Event
	Status    int
}

// batchReceiver takes batch documents; it answers 503 to the first request
// of each webhook-id when failFirst is set, else 204.
type batchReceiver struct {
	failFirst bool

	mu       sync.Mutex
	reqs     []batchRequest
	attempts map[string]int
}

func (r *batchReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var doc struct {
		Type    string            `json:"type"`
		BatchID string            `json:"batch_id"`
		Count   int               `json:"count"`
		Events  []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Type != "batch" || doc.Count != len(doc.Events) ||
		doc.BatchID != req.Header.Get("webhook-id") {
		http.Error(w, "not a batch document", http.StatusBadRequest)
		return
	}
	br := batchRequest{WebhookID: doc.BatchID, Status: http.StatusNoContent}
	for _, raw := range doc.Events {
		ev, err := domain.DecodeEvent(raw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		br.Events = append(br.Events, ev)
	}
	r.mu.Lock()
	r.attempts[br.WebhookID]++
	br.Attempt = r.attempts[br.WebhookID]
	if r.failFirst && br.Attempt == 1 {
		br.Status = http.StatusServiceUnavailable
	}
	r.reqs = append(r.reqs, br)
	r.mu.Unlock()
	w.WriteHeader(br.Status)
}

func (r *batchReceiver) all() []batchRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]batchRequest(nil), r.reqs...)
}

// batchedObserver is webhookObserver with its action batched.
func batchedObserver(url string, maxEvents int, maxWait time.Duration, retry *config.RetryConfig) config.ObserverConfig {
	o := webhookObserver("batched", "*", url, retry)
	o.Actions[0].Batch = &config.BatchConfig{MaxEvents: &maxEvents, MaxWait: &maxWait}
	return o
}

// TestBatchedWebhookRetriesWholeBatches drains a backlog of several
// entities to a receiver that fails the first request of every batch:
// each failed batch is sent again with the same webhook-id and the same
// events, every event is delivered, each entity's events arrive in
// change-log order, and the delivery log has each event's failed and
// successful attempt.
func TestBatchedWebhookRetriesWholeBatches(t *testing.T) {
	t.Parallel()
	const entities, perEntity, maxEvents = 12, 8, 5
	b := setup(t)
	ids := make([]string, entities)
	for e := range ids {
		ids[e] = newUUID()
	}
	for n := range perEntity {
		var changes []change
		for e := range entities {
			changes = append(changes, change{Entity: "Order", Kind: "UPDATE", ID: ids[e], Data: fmt.Sprintf(`{"n": %d}`, n)})
		}
		b.insert(t, changes...)
	}
	recv := &batchReceiver{failFirst: true, attempts: map[string]int{}}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	cfg := b.config(batchedObserver(srv.URL+"/hook", maxEvents, 300*time.Millisecond,
		retryPolicy(10, 50*time.Millisecond, 50*time.Millisecond, "fixed")))
	cfg.Delivery.Log = config.DeliveryLogAll
	cfg.Delivery.BreakerFailures = 0 // every batch fails once: the breaker is not under test
	app := b.start(t, cfg)
	defer app.stop(t)

	delivered := func() map[string][]int {
		out := map[string][]int{}
		for _, r := range recv.all() {
			if r.Status != http.StatusNoContent {
				continue
			}
			for _, ev := range r.Events {
				n, _ := strconv.Atoi(fmt.Sprint(ev.Data["n"]))
				out[ev.EntityID] = append(out[ev.EntityID], n)
			}
		}
		return out
	}
	waitFor(t, "every event delivered", func() bool {
		n := 0
		for _, ns := range delivered() {
			n += len(ns)
		}
		return n >= entities*perEntity
	})
	for e, id := range ids {
		got := delivered()[id]
		if len(got) != perEntity {
			t.Errorf("entity %d: delivered %v, want each of its %d events once", e, got, perEntity)
			continue
		}
		for n, v := range got {
			if v != n {
				t.Errorf("entity %d: delivered in the order %v, want change-log order", e, got)
				break
			}
		}
	}
	first := map[string][]string{} // webhook-id → event ids of its failed first request
	resent := 0
	for _, r := range recv.all() {
		seen := map[string]bool{}
		var evs []string
		for _, ev := range r.Events {
			if seen[ev.EntityID] {
				t.Errorf("batch %s holds two events of entity %s", r.WebhookID, ev.EntityID)
			}
			seen[ev.EntityID] = true
			evs = append(evs, ev.ID)
		}
		if len(evs) > maxEvents {
			t.Errorf("batch %s holds %d events, over max_events %d", r.WebhookID, len(evs), maxEvents)
		}
		if r.Attempt == 1 {
			first[r.WebhookID] = evs
			continue
		}
		resent++
		if fmt.Sprint(first[r.WebhookID]) != fmt.Sprint(evs) {
			t.Errorf("batch %s resent with %v, first sent with %v: one id, one set of events", r.WebhookID, evs, first[r.WebhookID])
		}
	}
	recv.mu.Lock()
	attempts := maps.Clone(recv.attempts)
	recv.mu.Unlock()
	for id := range first {
		if attempts[id] < 2 {
			t.Errorf("failed batch %s was not sent again with its webhook-id", id)
		}
	}
	t.Logf("%d requests, %d batches resent with their webhook-id", len(recv.all()), resent)

	waitFor(t, "the delivery log of every event", func() bool {
		var missing int
		if err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM (
			SELECT event_id FROM observer.deliveries WHERE observer = 'batched' GROUP BY event_id
			HAVING count(*) FILTER (WHERE outcome = 'succeeded' AND status_code = 204) = 1
			   AND count(*) FILTER (WHERE outcome = 'transient' AND status_code = 503) >= 1) ok`).Scan(&missing); err != nil {
			t.Fatal(err)
		}
		return missing == entities*perEntity
	})
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Errorf("dead letters = %v, want none", dl)
	}
}

// BenchmarkBatchedDrain drains the same backlog as
// BenchmarkDrainBacklog twice per run, one event per request and then in
// batches of 100 (max_events 100, the other batch keys at their
// defaults), to a receiver that answers at once: events/s, and the CPU
// time of the test process (the service and the receiver; PostgreSQL not
// included) per 10 000 events. On a loaded machine run the variants in
// turn, so the load weighs on both alike:
//
//	for i in 1 2 3; do for v in one-per-request batches-of-100; do
//	  go test -run '^$' -bench "BatchedDrain/$v\$" -benchtime 1x ./integration/
//	done; done
func BenchmarkBatchedDrain(b *testing.B) {
	b.Run("one-per-request", func(b *testing.B) { drainBatched(b, 0) })
	b.Run("batches-of-100", func(b *testing.B) { drainBatched(b, 100) })
}

func drainBatched(b *testing.B, maxEvents int) {
	rows := benchRows(b)
	total := 0
	var cpu time.Duration
	for range b.N {
		b.StopTimer()
		bundle := setup(b)
		var events atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			n := int64(1)
			if maxEvents > 0 {
				// The document's count, read from its head (the receiver
				// shares the machine: it parses no more than it needs).
				_, rest, ok := bytes.Cut(body[:min(len(body), 128)], []byte(`"count":`))
				end := bytes.IndexByte(rest, ',')
				if !ok || end < 0 {
					http.Error(w, "bad batch", http.StatusBadRequest)
					return
				}
				if n, err = strconv.ParseInt(string(rest[:end]), 10, 64); err != nil {
					http.Error(w, "bad batch count", http.StatusBadRequest)
					return
				}
			}
			events.Add(n)
			w.WriteHeader(http.StatusNoContent)
		}))
		insertBacklog(b, bundle.pool, rows)
		cfg := benchConfig(bundle, srv.URL+"/hook")
		if maxEvents > 0 {
			cfg.Observers[0].Actions[0].Batch = &config.BatchConfig{MaxEvents: &maxEvents}
		}

		cpu += timedDrain(b, bundle, cfg, func() {
			waitCounter(b, &events, int64(rows), time.Duration(rows)*time.Millisecond+time.Minute, "delivered")
		})
		srv.Close()
		total += rows
	}
	reportDrain(b, total, cpu)
}

// TestBatchedWebhookInEveryTopology drains a backlog to a batched webhook
// in postgres-redis (dedup and caching on: each event gets its own dedup
// mark and cached result) and in nats-distributed (bridge and worker in
// one process): every event delivered once, in batches of more than one.
func TestBatchedWebhookInEveryTopology(t *testing.T) {
	t.Parallel()
	const n = 300
	for _, topo := range []string{"postgres-redis", "nats-distributed"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			recv := &batchReceiver{attempts: map[string]int{}}
			srv := httptest.NewServer(recv)
			t.Cleanup(srv.Close)
			obs := batchedObserver(srv.URL+"/hook", 50, 100*time.Millisecond, nil)
			cfg := b.config(obs)
			var rd *redisEnv
			if topo == "postgres-redis" {
				rd = newRedisEnv(t, "")
				rd.configure(&cfg)
			} else {
				newJSEnv(t).configure(&cfg, "all")
			}
			app := b.start(t, cfg)
			defer app.stop(t)
			b.insert(t, orders(n)...)
			ids := b.eventIDs(t)
			delivered := func() (map[string]int, int) {
				got, largest := map[string]int{}, 0
				for _, r := range recv.all() {
					largest = max(largest, len(r.Events))
					for _, ev := range r.Events {
						got[ev.ID]++
					}
				}
				return got, largest
			}
			waitFor(t, "every event delivered", func() bool { got, _ := delivered(); return len(got) >= n })
			got, largest := delivered()
			for _, id := range ids {
				if got[id] != 1 {
					t.Errorf("event %s delivered %d times, want once", id, got[id])
				}
			}
			if largest < 2 {
				t.Errorf("largest batch holds %d events: nothing was batched", largest)
			}
			if rd != nil {
				waitFor(t, "a done mark per event", func() bool {
					for _, id := range ids {
						if rd.value(t, dedupKey(id)) != "done" {
							return false
						}
					}
					return true
				})
				// The done mark covers the batch's success (cache_ttl is
				// within dedup_window): no result is stored.
				for _, id := range ids {
					if rd.exists(t, resultKey(id, "batched", actionIdentity(t, obs, 0))) {
						t.Errorf("event %s: a result is cached although its done mark covers it", id)
					}
				}
			}
		})
	}
}
