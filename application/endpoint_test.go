package application_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// guardBundle is an endpoint guard over a scripted executor on a
// settable clock.
type guardBundle struct {
	clock     *testsupport.Clock
	guard     *application.EndpointGuard
	answer    *switchable
	calls     *callLog
	mu        sync.Mutex
	recovered []string
}

func newGuard(t testing.TB, def application.EndpointPolicy, overrides map[string]application.EndpointPolicy) *guardBundle {
	t.Helper()
	b := &guardBundle{clock: newClock(), answer: &switchable{}}
	var exec ports.ActionExecutorFunc
	exec, b.calls = recording(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return b.answer.get() })
	var err error
	b.guard, err = application.NewEndpointGuard(exec, application.EndpointGuardConfig{
		Default: def, Overrides: overrides, Logger: discardLogger(), Now: b.clock.Now,
		OnRecover: func(_ context.Context, ep string) { b.mu.Lock(); b.recovered = append(b.recovered, ep); b.mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hookAction(url string) (*domain.Observer, *domain.Action) {
	obs := &domain.Observer{Name: "hooks"}
	return obs, &domain.Action{Name: "webhook-x", Type: domain.ActionWebhook, Webhook: &domain.WebhookAction{URL: url}}
}

func (b *guardBundle) exec(t testing.TB, url string) error {
	t.Helper()
	obs, act := hookAction(url)
	ev := event("e", "Order", "1", nil)
	return b.guard.Execute(t.Context(), &ev, obs, act)
}

// deferral checks that err defers for reason and returns until when.
func deferral(t testing.TB, err error, reason domain.DeferReason) time.Time {
	t.Helper()
	d, ok := domain.AsDeferred(err)
	if !ok || d.Reason != reason {
		t.Fatalf("error %v, want a deferral (%s)", err, reason)
	}
	return d.Until
}

func (b *guardBundle) state(t testing.TB, endpoint string) application.EndpointStatus {
	t.Helper()
	for _, st := range b.guard.Status() {
		if st.Endpoint == endpoint {
			return st
		}
	}
	t.Fatalf("endpoint %s unknown to the guard", endpoint)
	return application.EndpointStatus{}
}

const hook = "https://hooks.example.com/orders"
const hookEndpoint = "https://hooks.example.com:443"

func TestEndpointBreakerOpensProbesAndCloses(t *testing.T) {
	t.Parallel()
	b := newGuard(t, application.EndpointPolicy{BreakerFailures: 3, ProbeInterval: 10 * time.Second}, nil)
	down := domain.Transient(errors.New("connection refused"), 0)
	b.answer.set(down)
	for i := range 3 {
		if err := b.exec(t, hook); !errors.Is(err, down) {
			t.Fatalf("attempt %d = %v, want the failure itself", i+1, err)
		}
	}
	if st := b.state(t, hookEndpoint); st.State != application.CircuitOpen || st.NextProbe == nil || !st.NextProbe.Equal(b.clock.Now().Add(10*time.Second)) {
		t.Fatalf("after 3 consecutive failures: %+v, want open with the next probe in 10s", st)
	}
	// While open no attempt is made: the caller is told when to come back.
	until := deferral(t, b.exec(t, hook), domain.DeferOpen)
	if !until.Equal(b.clock.Now().Add(10*time.Second)) || b.calls.len() != 3 {
		t.Fatalf("deferral until %v after %d calls, want the probe time and no new call", until, b.calls.len())
	}
	if skip, until := b.guard.Skip(); !slices.Equal(skip, []string{hookEndpoint}) || !until.Equal(b.clock.Now().Add(10*time.Second)) {
		t.Errorf("Skip = %v until %v, want the open endpoint until its probe", skip, until)
	}
	// Another endpoint is not affected.
	b.answer.set(nil)
	if err := b.exec(t, "https://other.example.com/x"); err != nil {
		t.Fatalf("another endpoint: %v", err)
	}
	// At the probe time one probe goes out; it fails: open again.
	b.answer.set(down)
	b.clock.Advance(10 * time.Second)
	if skip, _ := b.guard.Skip(); len(skip) != 0 {
		t.Errorf("Skip at the probe time = %v, want none (a probe is due)", skip)
	}
	if err := b.exec(t, hook); !errors.Is(err, down) {
		t.Fatalf("probe = %v, want the failure", err)
	}
	deferral(t, b.exec(t, hook), domain.DeferOpen)
	// The next probe succeeds: closed, and the backlog is woken once.
	b.clock.Advance(10 * time.Second)
	b.answer.set(nil)
	if err := b.exec(t, hook); err != nil {
		t.Fatalf("successful probe = %v", err)
	}
	if st := b.state(t, hookEndpoint); st.State != application.CircuitClosed || st.ConsecutiveFailures != 0 {
		t.Fatalf("after a successful probe: %+v, want closed", st)
	}
	b.mu.Lock()
	recovered := slices.Clone(b.recovered)
	b.mu.Unlock()
	// The other endpoint's first answer counts as a recovery too (retries
	// parked before a restart need not wait out their backoff).
	if want := []string{"https://other.example.com:443", hookEndpoint}; !slices.Equal(recovered, want) {
		t.Errorf("OnRecover calls = %v, want %v", recovered, want)
	}
	if err := b.exec(t, hook); err != nil {
		t.Fatalf("after recovery = %v", err)
	}
}

func TestEndpointBreakerOnlyOneProbeAtATime(t *testing.T) {
	t.Parallel()
	clock := newClock()
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	var mu sync.Mutex
	failing := true
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
		mu.Lock()
		f := failing
		mu.Unlock()
		if f {
			return domain.Transient(errors.New("503"), 0)
		}
		started <- struct{}{}
		<-release
		return nil
	})
	g, err := application.NewEndpointGuard(exec, application.EndpointGuardConfig{
		Default: application.EndpointPolicy{BreakerFailures: 1, ProbeInterval: time.Second}, Logger: discardLogger(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	obs, act := hookAction(hook)
	ev := event("e", "Order", "1", nil)
	_ = g.Execute(t.Context(), &ev, obs, act) // opens
	mu.Lock()
	failing = false
	mu.Unlock()
	clock.Advance(time.Second)
	done := make(chan error, 1)
	go func() { done <- g.Execute(context.Background(), &ev, obs, act) }()
	<-started // the probe is in flight
	for range 5 {
		deferral(t, g.Execute(t.Context(), &ev, obs, act), domain.DeferOpen)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("probe = %v", err)
	}
}

func TestEndpointBreakerIgnoresPermanentFailuresAndResetsOnSuccess(t *testing.T) {
	t.Parallel()
	b := newGuard(t, application.EndpointPolicy{BreakerFailures: 2}, nil)
	b.answer.set(domain.Transient(errors.New("503"), 0))
	_ = b.exec(t, hook)
	b.answer.set(nil)
	_ = b.exec(t, hook) // resets the count
	b.answer.set(domain.Transient(errors.New("503"), 0))
	_ = b.exec(t, hook)
	b.answer.set(domain.Permanent(errors.New("status 400")))
	for range 5 {
		_ = b.exec(t, hook) // the endpoint answers: not a reason to open
	}
	if st := b.state(t, hookEndpoint); st.State != application.CircuitClosed {
		t.Fatalf("state %+v, want closed: no two consecutive transient failures", st)
	}
	off := newGuard(t, application.EndpointPolicy{}, nil) // breaker_failures = 0: never opens
	off.answer.set(domain.Transient(errors.New("503"), 0))
	for range 50 {
		if err := off.exec(t, hook); err == nil || errors.As(err, new(*domain.DeferredError)) {
			t.Fatalf("attempt = %v, want the failure: the breaker is off", err)
		}
	}
}

func TestEndpointRateLimitDefersWithoutBlocking(t *testing.T) {
	t.Parallel()
	b := newGuard(t, application.EndpointPolicy{}, map[string]application.EndpointPolicy{
		hookEndpoint: {Rate: 10, Burst: 2},
	})
	for range 2 {
		if err := b.exec(t, hook); err != nil {
			t.Fatalf("burst attempt = %v", err)
		}
	}
	until := deferral(t, b.exec(t, hook), domain.DeferRate)
	if want := b.clock.Now().Add(100 * time.Millisecond); !until.Equal(want) {
		t.Errorf("deferred until %v, want %v (one token at 10/s)", until, want)
	}
	if b.calls.len() != 2 {
		t.Errorf("%d calls, want 2: a deferred attempt must not run", b.calls.len())
	}
	for range 20 { // the default has no limit
		if err := b.exec(t, "https://unlimited.example.com/x"); err != nil {
			t.Fatalf("unlimited endpoint = %v", err)
		}
	}
	if skip, until := b.guard.Skip(); !slices.Equal(skip, []string{hookEndpoint}) || !until.Equal(b.clock.Now().Add(100*time.Millisecond)) {
		t.Errorf("Skip at the rate limit = %v until %v, want %s until the next token (its parked items would only be rescheduled)", skip, until, hookEndpoint)
	}
	b.clock.Advance(100 * time.Millisecond)
	if skip, _ := b.guard.Skip(); len(skip) != 0 {
		t.Errorf("Skip with a token available = %v, want none", skip)
	}
	if err := b.exec(t, hook); err != nil {
		t.Fatalf("after the wait = %v", err)
	}
	if st := b.state(t, hookEndpoint); st.Deferred != 1 || st.Succeeded != 3 || st.RateLimit != 10 {
		t.Errorf("status %+v", st)
	}
}

func TestEndpointConcurrencyCap(t *testing.T) {
	t.Parallel()
	clock := newClock()
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
		started <- struct{}{}
		<-release
		return nil
	})
	g, err := application.NewEndpointGuard(exec, application.EndpointGuardConfig{
		Default: application.EndpointPolicy{MaxConcurrent: 2}, Logger: discardLogger(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	obs, act := hookAction(hook)
	ev := event("e", "Order", "1", nil)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _ = g.Execute(context.Background(), &ev, obs, act) })
		<-started
	}
	until := deferral(t, g.Execute(t.Context(), &ev, obs, act), domain.DeferConcurrency)
	if !until.After(clock.Now()) {
		t.Errorf("concurrency deferral until %v, want later than now", until)
	}
	close(release)
	wg.Wait()
	if err := g.Execute(t.Context(), &ev, obs, act); err != nil {
		t.Fatalf("after the others finished = %v", err)
	}
}

// TestEndpointGuardDoesNotCountShutdown: an attempt interrupted by the
// end of its context says nothing about the endpoint.
func TestEndpointGuardDoesNotCountShutdown(t *testing.T) {
	t.Parallel()
	b := newGuard(t, application.EndpointPolicy{BreakerFailures: 1}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b.answer.set(context.Canceled)
	obs, act := hookAction(hook)
	ev := event("e", "Order", "1", nil)
	_ = b.guard.Execute(ctx, &ev, obs, act)
	if st := b.state(t, hookEndpoint); st.State != application.CircuitClosed || st.ConsecutiveFailures != 0 {
		t.Fatalf("after an interrupted attempt: %+v, want closed, no failure counted", st)
	}
}

func TestEndpointFirstAnswerWakesTheBacklogOnce(t *testing.T) {
	t.Parallel()
	b := newGuard(t, application.EndpointPolicy{BreakerFailures: 5}, nil)
	b.answer.set(domain.Transient(errors.New("503"), 0))
	_ = b.exec(t, hook) // a failure is no answer
	b.answer.set(domain.Permanent(errors.New("status 404")))
	_ = b.exec(t, hook) // the endpoint answers: its backlog may go
	b.answer.set(nil)
	for range 3 {
		_ = b.exec(t, hook)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Equal(b.recovered, []string{hookEndpoint}) {
		t.Errorf("OnRecover calls = %v, want one, at the first answer", b.recovered)
	}
}

// removedEndpoints records the endpoints a guard forgets.
type removedEndpoints struct {
	ports.NopDeliveryMetrics
	mu      sync.Mutex
	removed []string
}

func (r *removedEndpoints) EndpointRemoved(ep string) {
	r.mu.Lock()
	r.removed = append(r.removed, ep)
	r.mu.Unlock()
}

// Retain forgets an endpoint that no configured action uses any more (a
// reload removed it) with its open circuit and its state series; the
// endpoints still used keep their state.
func TestEndpointGuardRetainForgetsRemovedEndpoints(t *testing.T) {
	t.Parallel()
	m := &removedEndpoints{}
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
		return domain.Transient(errors.New("connection refused"), 0)
	})
	g, err := application.NewEndpointGuard(exec, application.EndpointGuardConfig{
		Default: application.EndpointPolicy{BreakerFailures: 1}, Logger: discardLogger(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	kept := &domain.Observer{Name: "kept", Actions: []domain.Action{{Name: "a", Type: domain.ActionWebhook, Webhook: &domain.WebhookAction{URL: "https://kept.example:443/h"}}}}
	gone := &domain.Observer{Name: "gone", Actions: []domain.Action{{Name: "b", Type: domain.ActionWebhook, Webhook: &domain.WebhookAction{URL: "https://gone.example:443/h"}}}}
	ev := event("e", "Order", "1", nil)
	for _, o := range []*domain.Observer{kept, gone} {
		_ = g.Execute(t.Context(), &ev, o, &o.Actions[0]) // one failure opens each circuit
	}
	if n := len(g.Status()); n != 2 {
		t.Fatalf("%d endpoints known, want 2", n)
	}
	g.Retain([]*domain.Observer{kept})
	st := g.Status()
	if len(st) != 1 || st[0].Endpoint != "https://kept.example:443" || st[0].State != application.CircuitOpen {
		t.Errorf("after Retain: %+v, want only the kept endpoint, still open", st)
	}
	if !slices.Equal(m.removed, []string{"https://gone.example:443"}) {
		t.Errorf("removed %v, want the gone endpoint's series", m.removed)
	}
}
