package application_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// loseAndRegain runs handler behind a reader under a lease for four
// terms: an event is finished in the first, then three times the lease is
// lost (the term ends) and regained, and an event appended then must be
// finished in the new term too. Scheduler and Bridge must both work again after their Run
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

	// Lost and regained again and again: every term works.
	for term := int32(2); term <= 4; term++ {
		lease.lost.Store(true)
		eventually(t, "the term ended with the lease", func() bool { return !reader.Status().Running })
		lease.lost.Store(false)
		eventually(t, "another term", func() bool { return terms.Load() == term && reader.Status().Running })

		next := appendEvents(t, src, "e"+strconv.Itoa(int(term)))[0]
		eventually(t, "the new term's event finished", func() bool { return finished(next) && savedAt(t, cps, int64(term))() })
	}
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

// TestReaderSavesAreFencedByTheLease: a reader whose lease another holder
// took cannot overwrite the checkpoint (here one the new holder moved
// back, as an operator's replay does); its term ends with
// ports.ErrLeaseLost. Before, its saves were unconditional: the stale
// reader overwrote the checkpoint with its own position.
func TestReaderSavesAreFencedByTheLease(t *testing.T) {
	t.Parallel()
	clock := newClock()
	leases := memory.NewLease(clock.Now)
	cps := memory.NewCheckpointsWithLease(leases)
	src := newMemorySource(t)
	exec, _ := recording(nil)
	proc := newProcessor(t, []domain.Observer{observer("obs", "*", "act")}, exec, memory.NewDeadLetters(nil), application.ProcessorConfig{})
	sched, err := application.NewScheduler(proc, application.SchedulerConfig{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 15 * time.Second
	if held, err := leases.Acquire(t.Context(), "reader:default", "me", ttl); err != nil || !held {
		t.Fatalf("Acquire = %v, %v", held, err)
	}
	reader, err := application.NewReader(src, cps, sched, application.ReaderConfig{
		CheckpointInterval: 5 * time.Millisecond, Logger: discardLogger(),
		Fence: ports.Fence{Lease: "reader:default", Holder: "me"},
	})
	if err != nil {
		t.Fatal(err)
	}
	run := runInBackground(t, reader.Run)
	appendEvents(t, src, "a", "b")
	eventually(t, "the first events' checkpoint", savedAt(t, cps, 2))

	// The lease runs out (this process's renewals failed) and another
	// replica takes it and moves the checkpoint back.
	clock.Advance(ttl + time.Second)
	if held, err := leases.Acquire(t.Context(), "reader:default", "other", ttl); err != nil || !held {
		t.Fatalf("Acquire(other) = %v, %v", held, err)
	}
	moved := ports.Position{Seq: 1}
	if err := cps.SaveFenced(t.Context(), "default", moved, ports.Fence{Lease: "reader:default", Holder: "other"}); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, src, "c") // the stale reader has progress to save

	err = run.Wait(t)
	if !errors.Is(err, ports.ErrLeaseLost) {
		t.Fatalf("Run = %v, want the term ended with ErrLeaseLost", err)
	}
	if got := loadCheckpoint(t, cps); got != moved {
		t.Fatalf("checkpoint = %+v, want %+v: the stale reader overwrote it", got, moved)
	}
}

// TestRunWithLeaseSeeksTheLeaseAgainAfterAFencedTerm: work that ends with
// ports.ErrLeaseLost (a fenced save refused) ends the term, not the
// service: the lease is sought again and the next term runs.
func TestRunWithLeaseSeeksTheLeaseAgainAfterAFencedTerm(t *testing.T) {
	t.Parallel()
	var terms atomic.Int32
	run := runInBackground(t, func(ctx context.Context) error {
		return application.RunWithLease(ctx, memory.NewLease(nil), leaseConfig("me", 300*time.Millisecond), func(ctx context.Context) error {
			if terms.Add(1) == 1 {
				return fmt.Errorf("reader default: %w", ports.ErrLeaseLost)
			}
			<-ctx.Done()
			return ctx.Err()
		})
	})
	eventually(t, "a second term", func() bool { return terms.Load() == 2 })
	if err := run.Stop(t); err != nil {
		t.Fatalf("RunWithLease = %v, want nil", err)
	}
}

// TestLostTermStopsItsActionsAtOnce: when the lease is lost, the actions
// of the term see their context cancelled at once (here well under the
// 30s shutdown grace), and the event is run again in the next term.
// Before, a process that lost its lease kept running actions for up to
// the grace period, concurrently with the new holder.
func TestLostTermStopsItsActionsAtOnce(t *testing.T) {
	t.Parallel()
	var (
		calls     atomic.Int32
		cancelled = make(chan struct{})
	)
	exec := ports.ActionExecutorFunc(func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		if calls.Add(1) == 1 {
			<-ctx.Done() // a receiver that hangs
			close(cancelled)
			return ctx.Err()
		}
		return nil
	})
	proc := newProcessor(t, []domain.Observer{observer("obs", "*", "act")}, exec, memory.NewDeadLetters(nil), application.ProcessorConfig{})
	sched, err := application.NewScheduler(proc, application.SchedulerConfig{Logger: discardLogger(), ShutdownGrace: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	src, cps, _, lease, run := underLossyLease(t, sched)
	appendEvents(t, src, "a")
	eventually(t, "the action running", func() bool { return calls.Load() == 1 })
	lease.lost.Store(true)
	select {
	case <-cancelled:
	case <-time.After(waitTimeout):
		t.Fatalf("the action of the lost term was not cancelled within %v", waitTimeout)
	}
	lease.lost.Store(false)
	eventually(t, "the event run again and finished in the next term", savedAt(t, cps, 1))
	if err := run.Stop(t); err != nil {
		t.Fatal(err)
	}
}

// underLossyLease runs a reader of a new memory source into handler, under
// a lossy lease (TTL 300ms), until the test ends.
func underLossyLease(t *testing.T, handler application.Handler) (*memory.Source, *memory.Checkpoints, *application.Reader, *lossyLease, *background) {
	t.Helper()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	reader, err := application.NewReader(src, cps, handler, application.ReaderConfig{CheckpointInterval: 5 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	lease := &lossyLease{mem: memory.NewLease(nil)}
	run := runInBackground(t, func(ctx context.Context) error {
		return application.RunWithLease(ctx, lease, leaseConfig("me", 300*time.Millisecond), reader.Run)
	})
	return src, cps, reader, lease, run
}

// hangingPublisher never acknowledges: every publication stays
// outstanding.
type hangingPublisher struct{ published atomic.Int32 }

func (p *hangingPublisher) Publish(context.Context, domain.Event, ports.Headers, func(ports.PublishResult)) error {
	p.published.Add(1)
	return nil
}

// TestLostTermStopsTheBridgeAtOnce: a bridge whose lease is lost does not
// wait out its drain (30s) for acknowledgements: the term ends at once.
func TestLostTermStopsTheBridgeAtOnce(t *testing.T) {
	t.Parallel()
	pub := &hangingPublisher{}
	bridge, err := application.NewBridge(pub, memory.NewDeadLetters(nil), application.BridgeConfig{DrainTimeout: 30 * time.Second, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	src, _, reader, lease, run := underLossyLease(t, bridge)
	appendEvents(t, src, "a")
	eventually(t, "the publication outstanding", func() bool { return pub.published.Load() == 1 })
	lease.lost.Store(true)
	eventually(t, "the term ended", func() bool { return !reader.Status().Running })
	if err := run.Stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestBridgeDrainEndsWhenTheLeaseIsLost: after a shutdown the bridge waits
// for its outstanding acknowledgements (30s here), but not past the loss of
// its lease (the renewals hang from the shutdown on): the new holder
// republishes what is unacknowledged.
func TestBridgeDrainEndsWhenTheLeaseIsLost(t *testing.T) {
	t.Parallel()
	pub := &hangingPublisher{}
	bridge, err := application.NewBridge(pub, memory.NewDeadLetters(nil), application.BridgeConfig{DrainTimeout: 30 * time.Second, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	src := newMemorySource(t)
	reader, err := application.NewReader(src, memory.NewCheckpoints(), bridge, application.ReaderConfig{CheckpointInterval: 5 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var shutdown atomic.Bool
	fake := &lease{
		AcquireFunc: func(ctx context.Context, _, _ string, _ time.Duration) (bool, error) {
			if shutdown.Load() {
				return hang(ctx)
			}
			return true, nil
		},
		ReleaseFunc: func(context.Context, string, string) error { return nil },
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- application.RunWithLease(ctx, fake, leaseConfig("me", 300*time.Millisecond), reader.Run)
	}()
	appendEvents(t, src, "a")
	eventually(t, "the publication outstanding", func() bool { return pub.published.Load() == 1 })
	shutdown.Store(true)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunWithLease = %v", err)
		}
	case <-time.After(waitTimeout): // the drain is 30s
		t.Fatal("the bridge still drains: the lost lease did not end it")
	}
}
