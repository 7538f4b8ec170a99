package application_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// countingLease counts Acquire calls.
type countingLease struct {
	ports.Lease
	acquires atomic.Int32
}

func (l *countingLease) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	l.acquires.Add(1)
	return l.Lease.Acquire(ctx, name, holder, ttl)
}

// Pause ends the reader's term and releases its lease, so the checkpoint
// can be moved; no term starts while paused; after Resume the reader
// reads from the moved checkpoint.
func TestPauserLetsTheCheckpointMove(t *testing.T) {
	t.Parallel()
	src, cps := newMemorySource(t), memory.NewCheckpoints()
	exec, calls := recording(nil)
	p := newPipeline(t, pipelineSetup{source: src, checkpoints: cps, exec: exec})
	mem := memory.NewLease(nil)
	pauser := application.NewPauser(mem)
	attempts := &countingLease{Lease: pauser.Lease()}
	if err := pauser.Pause(t.Context()); err != nil {
		t.Fatalf("Pause with no term running: %v", err)
	}
	pauser.Resume()
	run := runInBackground(t, func(ctx context.Context) error {
		return application.RunWithLease(ctx, attempts, application.LeaseConfig{
			Name: "reader:default", Holder: "me", TTL: 300 * time.Millisecond, Logger: discardLogger(),
		}, pauser.Work(p.reader.Run))
	})
	ids := appendEvents(t, src, "a", "b")
	eventually(t, "both events delivered", savedAt(t, cps, 2))

	if err := pauser.Pause(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, _ := mem.State(t.Context(), "reader:default"); st.Holder != "" || p.reader.Status().Running {
		t.Fatalf("after Pause: lease %+v, reader running %v; want released and stopped", st, p.reader.Status().Running)
	}
	// While paused, RunWithLease keeps asking without getting a term.
	before := attempts.acquires.Load()
	eventually(t, "RunWithLease asks twice while paused", func() bool { return attempts.acquires.Load() >= before+2 })
	if st, _ := mem.State(t.Context(), "reader:default"); st.Holder != "" || p.reader.Status().Running {
		t.Fatalf("while paused: lease %+v, reader running %v; want free and stopped", st, p.reader.Status().Running)
	}
	if held, err := mem.Acquire(t.Context(), "reader:default", "replay", time.Minute); err != nil || !held {
		t.Fatalf("the replay could not take the lease: %v %v", held, err)
	}
	if err := cps.Save(t.Context(), "default", ports.Position{}); err != nil {
		t.Fatal(err)
	}
	if err := mem.Release(t.Context(), "reader:default", "replay"); err != nil {
		t.Fatal(err)
	}
	pauser.Resume()
	eventually(t, "the events replayed after Resume", func() bool { return calls.count(ids[0]) == 2 && calls.count(ids[1]) == 2 })
	if err := run.Stop(t); err != nil {
		t.Fatalf("RunWithLease = %v", err)
	}
}

func TestPauserGivesUpWithItsContext(t *testing.T) {
	t.Parallel()
	mem := memory.NewLease(nil)
	pauser := application.NewPauser(mem)
	// A term that ignores its context keeps the lease.
	stuck := make(chan struct{})
	run := runInBackground(t, func(ctx context.Context) error {
		return application.RunWithLease(ctx, pauser.Lease(), application.LeaseConfig{
			Name: "r", Holder: "me", TTL: 3 * time.Second, Logger: discardLogger(),
		}, pauser.Work(func(context.Context) error { <-stuck; return nil }))
	})
	eventually(t, "the term holds the lease", func() bool { st, _ := mem.State(t.Context(), "r"); return st.Holder == "me" })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := pauser.Pause(ctx); err == nil {
		t.Fatal("Pause of a term that does not end returned nil")
	}
	close(stuck)
	// Resumed: the next term begins.
	eventually(t, "a new term after the failed pause", func() bool { st, _ := mem.State(t.Context(), "r"); return st.Holder == "me" })
	if err := run.Stop(t); err != nil {
		t.Fatal(err)
	}
}
