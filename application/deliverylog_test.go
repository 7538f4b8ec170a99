package application_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// dropCounter counts the delivery-log metrics.
type dropCounter struct {
	ports.NopDeliveryMetrics
	mu              sync.Mutex
	logged, dropped int
}

func (d *dropCounter) DeliveriesLogged(n int)  { d.mu.Lock(); d.logged += n; d.mu.Unlock() }
func (d *dropCounter) DeliveriesDropped(n int) { d.mu.Lock(); d.dropped += n; d.mu.Unlock() }
func (d *dropCounter) get() (int, int)         { d.mu.Lock(); defer d.mu.Unlock(); return d.logged, d.dropped }

func newWriter(t testing.TB, log ports.DeliveryLog, cfg application.DeliveryWriterConfig) *application.DeliveryWriter {
	t.Helper()
	cfg.Logger = discardLogger()
	w, err := application.NewDeliveryWriter(log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// answering is an executor that notes an answer and returns err.
func answering(status int, body string, err error) ports.ActionExecutorFunc {
	return func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		if status != 0 {
			ports.NoteResponse(ctx, status, []byte(body))
		}
		return err
	}
}

func TestDeliveryRecorderThroughTheProcessor(t *testing.T) {
	t.Parallel()
	for _, all := range []bool{false, true} {
		t.Run(map[bool]string{false: "failures", true: "all"}[all], func(t *testing.T) {
			t.Parallel()
			log := memory.NewDeliveryLog(0)
			w := newWriter(t, log, application.DeliveryWriterConfig{})
			clock := newClock()
			calls := 0
			exec := ports.ActionExecutorFunc(func(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
				calls++
				clock.Advance(30 * time.Millisecond)
				if calls == 1 {
					return answering(503, "bu\xffsy", domain.Transient(errors.New("status 503"), 0))(ctx, ev, obs, act)
				}
				return answering(201, "created", nil)(ctx, ev, obs, act)
			})
			rec, err := application.NewDeliveryRecorder(exec, w, all, nil, clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			obs := observer("hooks", "Order", "a")
			obs.Actions[0].Webhook = &domain.WebhookAction{URL: "https://hooks.example.com/x"}
			p := newProcessor(t, []domain.Observer{obs}, rec, memory.NewDeadLetters(nil), application.ProcessorConfig{Now: clock.Now})
			run := p.Start(t.Context(), record(1, event("e1", "Order", "1", nil)))
			for range 5 {
				next, done := p.Step(t.Context(), run)
				if done {
					break
				}
				clock.Set(next)
			}
			w.Flush(t.Context())
			got, err := log.List(t.Context(), ports.DeliveryFilter{})
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if all {
				want = 2
			}
			if len(got) != want {
				t.Fatalf("%d records, want %d", len(got), want)
			}
			failed := got[len(got)-1]
			if failed.Outcome != ports.DeliveryTransient || failed.StatusCode != 503 || failed.Response != "bu\uFFFDsy" ||
				failed.Attempt != 1 || failed.Trigger != application.TriggerLive || failed.Endpoint != "https://hooks.example.com:443" ||
				failed.Latency != 30*time.Millisecond || failed.EventID != "e1" || failed.Observer != "hooks" || failed.Action != "a" || failed.Error == "" {
				t.Errorf("failed attempt recorded as %+v", failed)
			}
			if all && (got[0].Outcome != ports.DeliverySucceeded || got[0].StatusCode != 201 || got[0].Attempt != 2) {
				t.Errorf("successful attempt recorded as %+v", got[0])
			}
		})
	}
}

func TestDeliveryRecorderSkipsDeferralsAndShutdown(t *testing.T) {
	t.Parallel()
	log := memory.NewDeliveryLog(0)
	w := newWriter(t, log, application.DeliveryWriterConfig{})
	obs, act := hookAction(hook)
	ev := event("e", "Order", "1", nil)
	deferred := answering(0, "", &domain.DeferredError{Reason: domain.DeferRate, Until: time.Now()})
	rec, _ := application.NewDeliveryRecorder(deferred, w, true, nil, nil)
	if err := rec.Execute(t.Context(), &ev, obs, act); err == nil {
		t.Fatal("the deferral was swallowed")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rec, _ = application.NewDeliveryRecorder(answering(0, "", context.Canceled), w, true, nil, nil)
	_ = rec.Execute(ctx, &ev, obs, act)
	rec, _ = application.NewDeliveryRecorder(answering(0, "", nil), w, true, nil, nil)
	_ = rec.Execute(application.WithTrigger(t.Context(), application.TriggerResend, 0), &ev, obs, act)
	w.Flush(t.Context())
	got, _ := log.List(t.Context(), ports.DeliveryFilter{})
	if len(got) != 1 || got[0].Trigger != application.TriggerResend {
		t.Fatalf("records %+v, want only the resend (no deferral, no interrupted attempt)", got)
	}
}

// blockingLog is a delivery log whose Append waits until released.
type blockingLog struct {
	ports.DeliveryLog
	release chan struct{}
}

func (b *blockingLog) Append(ctx context.Context, recs []ports.DeliveryRecord) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.DeliveryLog.Append(ctx, recs)
}

// TestDeliveryWriterNeverBlocksAndDropsWhenFull: with the log stuck,
// recording stays instant; past the bound records are dropped and
// counted; once the log answers the queued ones are written.
func TestDeliveryWriterNeverBlocksAndDropsWhenFull(t *testing.T) {
	t.Parallel()
	log := &blockingLog{DeliveryLog: memory.NewDeliveryLog(0), release: make(chan struct{})}
	m := &dropCounter{}
	w := newWriter(t, log, application.DeliveryWriterConfig{MaxRecords: 100, BatchSize: 10, FlushInterval: time.Millisecond, Metrics: m})
	bg := runInBackground(t, w.Run)
	start := time.Now()
	for i := range 1000 {
		w.Record(ports.DeliveryRecord{EventID: string(rune(i)), Outcome: ports.DeliveryTransient})
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("recording 1000 records took %v with the log stuck: it must not block", took)
	}
	if _, dropped := m.get(); dropped < 1000-110 {
		t.Errorf("%d records dropped, want at least %d (bound 100, one batch in flight)", dropped, 1000-110)
	}
	close(log.release)
	eventually(t, "queued records written", func() bool { logged, dropped := m.get(); return logged+dropped == 1000 })
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
	bytesBound := newWriter(t, memory.NewDeliveryLog(0), application.DeliveryWriterConfig{MaxBytes: 4096, Metrics: m})
	_, droppedBefore := m.get()
	for range 10 {
		bytesBound.Record(ports.DeliveryRecord{Response: string(make([]byte, 1000))})
	}
	if _, dropped := m.get(); dropped-droppedBefore != 7 {
		t.Errorf("%d of 10 records of ~1.1 KiB dropped with a 4 KiB bound, want 7", dropped-droppedBefore)
	}
}

func TestDeliveryWriterFlushesAtShutdown(t *testing.T) {
	t.Parallel()
	log := memory.NewDeliveryLog(0)
	w := newWriter(t, log, application.DeliveryWriterConfig{FlushInterval: time.Hour})
	bg := runInBackground(t, w.Run)
	w.Record(ports.DeliveryRecord{EventID: "last"})
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
	if got, _ := log.List(t.Context(), ports.DeliveryFilter{}); len(got) != 1 {
		t.Fatalf("%d records after shutdown, want the queued one written", len(got))
	}
}
