package application_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// lossyLease is a memory lease that refuses every Acquire while lost is
// set: the holder loses it at its next renewal and cannot take it back
// until lost is cleared.
type lossyLease struct {
	mem  *memory.Lease
	lost atomic.Bool
}

func (l *lossyLease) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if l.lost.Load() {
		return false, nil
	}
	return l.mem.Acquire(ctx, name, holder, ttl)
}

func (l *lossyLease) Release(ctx context.Context, name, holder string) error {
	return l.mem.Release(ctx, name, holder)
}

// ctxPublisher refuses publications whose context has ended, as a real
// publisher does, and acknowledges the others.
type ctxPublisher struct{ fakePublisher }

func (p *ctxPublisher) Publish(ctx context.Context, ev domain.Event, hdr ports.Headers, done func(ports.PublishResult)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.fakePublisher.Publish(ctx, ev, hdr, done)
}

// loseAndRegain runs handler behind a reader under a lease for two terms:
// an event is finished in the first, the lease is lost (the term ends) and
// regained, and an event appended then must be finished in the second
// term too. Scheduler and Bridge must both work again after their Run
// returned.
func loseAndRegain(t *testing.T, handler application.Handler, finished func(id string) bool) {
	t.Helper()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	reader, err := application.NewReader(src, cps, handler, application.ReaderConfig{
		CheckpointInterval: 5 * time.Millisecond, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	lease := &lossyLease{mem: memory.NewLease(nil)}
	var terms atomic.Int32
	run := runInBackground(t, func(ctx context.Context) error {
		return application.RunWithLease(ctx, lease, application.LeaseConfig{
			Name: "reader:default", Holder: "me", TTL: 300 * time.Millisecond, Logger: discardLogger(),
		}, func(ctx context.Context) error {
			terms.Add(1)
			return reader.Run(ctx)
		})
	})
	first := appendEvents(t, src, "a")[0]
	eventually(t, "the first term's event finished", func() bool { return finished(first) && savedAt(t, cps, 1)() })

	lease.lost.Store(true)
	eventually(t, "the term ended with the lease", func() bool { return !reader.Status().Running })
	lease.lost.Store(false)
	eventually(t, "a second term", func() bool { return terms.Load() == 2 && reader.Status().Running })

	second := appendEvents(t, src, "b")[0]
	eventually(t, "the second term's event finished", func() bool { return finished(second) && savedAt(t, cps, 2)() })
	if err := run.Stop(t); err != nil {
		t.Fatalf("RunWithLease = %v", err)
	}
}

func TestSchedulerWorksAgainInANewTerm(t *testing.T) {
	t.Parallel()
	exec, calls := recording(nil)
	obs := observer("obs", "*", "act")
	proc := newProcessor(t, []domain.Observer{obs}, exec, memory.NewDeadLetters(nil), application.ProcessorConfig{})
	sched, err := application.NewScheduler(proc, application.SchedulerConfig{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	loseAndRegain(t, sched, func(id string) bool { return calls.count(id) == 1 })
}

func TestBridgeWorksAgainInANewTerm(t *testing.T) {
	t.Parallel()
	pub := &ctxPublisher{fakePublisher{stored: map[string]int{}}}
	bridge, err := application.NewBridge(pub, memory.NewDeadLetters(nil), application.BridgeConfig{RetryDelay: 5 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	loseAndRegain(t, bridge, func(id string) bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return pub.stored[id] == 1
	})
}
