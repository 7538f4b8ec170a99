package application_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// flakyStates is an endpoint-state store that fails while fail is set.
type flakyStates struct {
	*memory.EndpointStates
	fail atomic.Bool
}

func (f *flakyStates) Report(ctx context.Context, s ports.EndpointState) error {
	if f.fail.Load() {
		return ports.ErrUnavailable
	}
	return f.EndpointStates.Report(ctx, s)
}

// TestEndpointTransitionsAreReported: each circuit transition reaches the
// store with its next probe, through the reporter's own goroutine; a
// failed write is tried again with the latest state.
func TestEndpointTransitionsAreReported(t *testing.T) {
	t.Parallel()
	clock := newClock()
	store := &flakyStates{EndpointStates: memory.NewEndpointStates()}
	rep, err := application.NewEndpointReporter(store, "proc-1", discardLogger(), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	answer := &switchable{err: domain.Transient(errors.New("503"), 0)}
	g, err := application.NewEndpointGuard(ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
		return answer.get()
	}), application.EndpointGuardConfig{Default: application.EndpointPolicy{BreakerFailures: 2, ProbeInterval: time.Minute},
		OnChange: rep.Changed, Logger: discardLogger(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	obs, act := hookAction(hook)
	ev := event("e", "Order", "1", nil)
	store.fail.Store(true)
	for range 2 {
		_ = g.Execute(t.Context(), &ev, obs, act)
	}
	rep.Flush(t.Context()) // fails: kept for later
	if got, _ := store.List(t.Context()); len(got) != 0 {
		t.Fatalf("stored %+v while the store failed", got)
	}
	store.fail.Store(false)
	rep.Flush(t.Context())
	got, _ := store.List(t.Context())
	if len(got) != 1 || got[0].State != application.CircuitOpen || got[0].Holder != "proc-1" || got[0].ConsecutiveFailures != 2 ||
		got[0].NextProbe == nil || !got[0].NextProbe.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("stored %+v, want open with the next probe in a minute", got)
	}
	clock.Advance(time.Minute)
	answer.set(nil)
	bg := runInBackground(t, rep.Run)
	_ = g.Execute(t.Context(), &ev, obs, act) // the probe closes it
	eventually(t, "the closed state stored", func() bool {
		got, _ := store.List(t.Context())
		return len(got) == 1 && got[0].State == application.CircuitClosed
	})
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
}
