package application_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// pickyStore refuses for good, as PostgreSQL does, dead letters it cannot
// hold: a \u0000 in the event's JSON (jsonb, SQLSTATE 22P05), a NUL byte
// or invalid UTF-8 in a text field (22021). Raw is bytea: anything goes.
// Everything else goes to a memory store.
type pickyStore struct {
	*memory.DeadLetters
	adds    atomic.Int32
	refused atomic.Int32
}

func newPickyStore() *pickyStore { return &pickyStore{DeadLetters: memory.NewDeadLetters(nil)} }

func (s *pickyStore) Add(ctx context.Context, d ports.DeadLetter) (int64, error) {
	s.adds.Add(1)
	env, err := d.Event.Envelope()
	if err != nil {
		s.refused.Add(1)
		return 0, err
	}
	bad := bytes.Contains(env, []byte(`\u0000`))
	for _, f := range []string{d.Error, d.Observer, d.Action, d.Event.ID, d.Event.EntityType, d.Event.EntityID} {
		bad = bad || strings.ContainsRune(f, 0) || !utf8.ValidString(f)
	}
	if bad {
		s.refused.Add(1)
		return 0, fmt.Errorf("picky store: unsupported Unicode escape sequence (SQLSTATE 22P05): %w", domain.ErrPermanent)
	}
	return s.DeadLetters.Add(ctx, d)
}

func onlyDeadLetter(t *testing.T, s *pickyStore) ports.DeadLetter {
	t.Helper()
	items, err := s.List(t.Context(), ports.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(items))
	}
	return items[0]
}

// TestProcessorStoresRefusedDeadLettersInFallbackForm: a dead letter the
// store refuses for good (an event with a \u0000, invalid input whose
// error text holds a NUL byte) is stored in the fallback form at once
// (the raw original, the reason, the position) and the event is
// finished. Before, the write was retried every second for ever and the
// checkpoint froze.
func TestProcessorStoresRefusedDeadLettersInFallbackForm(t *testing.T) {
	t.Parallel()
	nul := event("e-nul", "Order", "o-1", map[string]any{"note": "a\x00b"})
	tests := []struct {
		name    string
		rec     ports.Record
		wantRaw func(t *testing.T, raw []byte)
	}{
		{
			name: "action failed for good, event with a NUL",
			rec:  ports.Record{Position: ports.Position{TxID: 7, Seq: 42}, Event: nul},
			wantRaw: func(t *testing.T, raw []byte) {
				got, err := domain.DecodeEvent(raw)
				if err != nil {
					t.Fatalf("raw is not the event's envelope: %v", err)
				}
				if got.ID != nul.ID || got.Data["note"] != "a\x00b" {
					t.Fatalf("raw event = %+v, want the original", got)
				}
			},
		},
		{
			// An event no JSON can hold (time formats zone offsets under 24
			// hours only): its encoding fails for good, and the fallback
			// form leaves the timestamp out.
			name: "event whose timestamp JSON cannot hold",
			rec: ports.Record{Position: ports.Position{TxID: 7, Seq: 44}, Event: func() domain.Event {
				ev := event("e-tz", "Order", "o-2", nil)
				ev.Timestamp = time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600))
				return ev
			}()},
			wantRaw: func(t *testing.T, raw []byte) {
				if !strings.Contains(string(raw), "e-tz") {
					t.Fatalf("raw = %q, want the event in text", raw)
				}
			},
		},
		{
			name: "invalid input whose error holds a NUL byte",
			rec: ports.Record{Position: ports.Position{TxID: 7, Seq: 43}, Event: domain.Event{ID: "bad\x00id"},
				Err: fmt.Errorf("row 43: %w: byte \x00 here", domain.ErrInvalidEvent), Raw: []byte("raw \x00 bytes")},
			wantRaw: func(t *testing.T, raw []byte) {
				if string(raw) != "raw \x00 bytes" {
					t.Fatalf("raw = %q, want the input's bytes", raw)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store := newPickyStore()
			exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
				return domain.Permanent(errors.New("400 bad request"))
			})
			proc := newProcessor(t, []domain.Observer{observer("obs", "*", "act")}, exec, store, application.ProcessorConfig{})
			run := proc.Start(t.Context(), tt.rec)
			if _, done := proc.Step(t.Context(), run); !done {
				t.Fatal("the run is not finished: the refused dead letter is being retried")
			}
			if store.adds.Load() != 2 || store.refused.Load() != 1 {
				t.Fatalf("store saw %d writes (%d refused), want the original refused once and the fallback stored", store.adds.Load(), store.refused.Load())
			}
			d := onlyDeadLetter(t, store)
			if !strings.Contains(d.Error, "fallback form") || !strings.Contains(d.Error, "7/4") {
				t.Errorf("error %q does not give the reason and the position", d.Error)
			}
			tt.wantRaw(t, d.Raw)
		})
	}
}

// TestDeadLetterRetryOfTheFallbackFormUsesTheWholeEvent: `dlq retry` of
// an item stored in fallback form runs the action on the event kept in
// raw, not on the identity-only event.
func TestDeadLetterRetryOfTheFallbackFormUsesTheWholeEvent(t *testing.T) {
	t.Parallel()
	store := newPickyStore()
	var seen atomic.Value
	fail := atomic.Bool{}
	fail.Store(true)
	exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		seen.Store(fmt.Sprint(ev.Data["note"]))
		if fail.Load() {
			return domain.Permanent(errors.New("400"))
		}
		return nil
	})
	obs := []domain.Observer{observer("obs", "*", "act")}
	proc := newProcessor(t, obs, exec, store, application.ProcessorConfig{})
	run := proc.Start(t.Context(), record(1, event("e-1", "Order", "o-1", map[string]any{"note": "a\x00b"})))
	if _, done := proc.Step(t.Context(), run); !done {
		t.Fatal("not finished")
	}
	fail.Store(false)
	r := &application.DeadLetterRetrier{Store: store, Executor: exec, Matcher: proc.Matcher}
	out, err := r.Retry(t.Context(), onlyDeadLetter(t, store).ID)
	if err != nil || !out.Succeeded {
		t.Fatalf("Retry = %+v, %v", out, err)
	}
	if seen.Load() != "a\x00b" {
		t.Fatalf("retry ran on data note %q, want the original event's", seen.Load())
	}
}

// refusingPublisher refuses for good the events whose id is in refuse (as
// NATS refuses one larger than max_payload) and stores the others.
type refusingPublisher struct {
	fakePublisher
	refuse   map[string]bool
	attempts sync.Map // event id -> *atomic.Int32
}

func (p *refusingPublisher) Publish(ctx context.Context, ev domain.Event, hdr ports.Headers, done func(ports.PublishResult)) error {
	n, _ := p.attempts.LoadOrStore(ev.ID, &atomic.Int32{})
	n.(*atomic.Int32).Add(1)
	if p.refuse[ev.ID] {
		go done(ports.PublishResult{Err: fmt.Errorf("nats: maximum payload exceeded: %w", domain.ErrPermanent)})
		return nil
	}
	return p.fakePublisher.Publish(ctx, ev, hdr, done)
}

// TestBridgeDeadLettersEventsTheBusRefuses: an event the bus refuses for
// good is published once, dead-lettered with the reason, and finished: the
// checkpoint passes it and shutdown does not wait a drain out for it.
// Before, it was republished every RetryDelay for ever and the checkpoint
// froze.
func TestBridgeDeadLettersEventsTheBusRefuses(t *testing.T) {
	t.Parallel()
	src := newMemorySource(t)
	ids := appendEvents(t, src, "a", "b", "c")
	pub := &refusingPublisher{fakePublisher: fakePublisher{stored: map[string]int{}}, refuse: map[string]bool{ids[1]: true}}
	store := newPickyStore()
	bm := newMetrics()
	bridge, err := application.NewBridge(pub, store, application.BridgeConfig{RetryDelay: 5 * time.Millisecond, DrainTimeout: time.Minute, Logger: discardLogger(), Metrics: bm})
	if err != nil {
		t.Fatal(err)
	}
	cps := memory.NewCheckpoints()
	reader, err := application.NewReader(src, cps, bridge, application.ReaderConfig{CheckpointInterval: 5 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	run := runInBackground(t, reader.Run)
	eventually(t, "the checkpoint past every event", savedAt(t, cps, 3))
	stopped := time.Now()
	if err := run.Stop(t); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(stopped); took > 10*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	if n, _ := pub.attempts.Load(ids[1]); n.(*atomic.Int32).Load() != 1 {
		t.Errorf("the refused event was published %d times, want once", n.(*atomic.Int32).Load())
	}
	d := onlyDeadLetter(t, store)
	if d.Event.ID != ids[1] || !strings.Contains(d.Error, "bus refused") {
		t.Errorf("dead letter = %+v, want the refused event with the reason", d)
	}
	if events, _, dead, _ := bm.snapshot(); dead != 1 || events["invalid"] != 0 {
		t.Errorf("bridge metrics: %v events, %d dead-lettered; want one dead letter, no invalid input", events, dead)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if pub.stored[ids[0]] != 1 || pub.stored[ids[2]] != 1 {
		t.Errorf("stored %v, want the other two events", pub.stored)
	}
}

// TestWorkerGiveUpHonoursShutdown: on the last delivery, while the
// dead-letter store is down, the worker keeps the message in progress;
// at shutdown it goes on trying for ShutdownGrace (a nak loses a message
// the broker will not deliver again), then naks the message and returns.
// Before, the loop ignored shutdown: it held the consumer slot for ever
// and SIGTERM did not stop the process.
func TestWorkerGiveUpHonoursShutdown(t *testing.T) {
	t.Parallel()
	body, err := event("e-1", "Order", "o-1", nil).Envelope()
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int32
	down := &deadLetterSink{AddFunc: func(context.Context, ports.DeadLetter) (int64, error) {
		writes.Add(1)
		return 0, fmt.Errorf("dead letters: %w", ports.ErrUnavailable)
	}}
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
		return domain.Transient(errors.New("503"), 0)
	})
	proc := newProcessor(t, []domain.Observer{observer("obs", "*", "act")}, exec, down, application.ProcessorConfig{})
	last := &fakeDelivery{data: body, attempt: 3, last: true}
	w, err := application.NewWorker(&fakeConsumer{deliveries: []*fakeDelivery{last}}, proc, down,
		application.WorkerConfig{RetryDelay: 5 * time.Millisecond, ShutdownGrace: 200 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	run := runInBackground(t, w.Run)
	eventually(t, "the give-up retrying", func() bool { return writes.Load() >= 3 })
	run.Cancel()
	atCancel := writes.Load()
	if err := run.Wait(t); err != nil {
		t.Fatal(err)
	}
	last.mu.Lock()
	defer last.mu.Unlock()
	if last.outcome != "nak" {
		t.Fatalf("outcome %q, want the message naked at shutdown", last.outcome)
	}
	if n := writes.Load(); n < atCancel+3 {
		t.Errorf("%d dead-letter writes tried during the grace, want it to go on trying", n-atCancel)
	}
}

// TestWorkerStoresRefusedDeadLettersInFallbackForm: on the last delivery
// of a crafted message (a \u0000 in its data, which the store refuses for
// good), the unfinished action is stored in fallback form and the message
// terminated. Before, GiveUp failed for ever and the message held its
// consumer slot.
func TestWorkerStoresRefusedDeadLettersInFallbackForm(t *testing.T) {
	t.Parallel()
	body, err := event("e-nul", "Order", "o-1", map[string]any{"note": "a\x00b"}).Envelope()
	if err != nil {
		t.Fatal(err)
	}
	store := newPickyStore()
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
		return domain.Transient(errors.New("503"), 0)
	})
	proc := newProcessor(t, []domain.Observer{observer("obs", "*", "act")}, exec, store, application.ProcessorConfig{})
	last := &fakeDelivery{data: body, attempt: 1, last: true}
	w, err := application.NewWorker(&fakeConsumer{deliveries: []*fakeDelivery{last}}, proc, store,
		application.WorkerConfig{RetryDelay: 5 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	run := runInBackground(t, w.Run)
	if err := run.Wait(t); err != nil {
		t.Fatal(err)
	}
	if last.outcome != "term" {
		t.Fatalf("outcome %q, want term", last.outcome)
	}
	d := onlyDeadLetter(t, store)
	if ev, err := domain.DecodeEvent(d.Raw); err != nil || ev.Data["note"] != "a\x00b" {
		t.Fatalf("raw = %q (%v), want the whole event", d.Raw, err)
	}
}
