package application

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// EndpointPolicy is how an endpoint is protected.
type EndpointPolicy struct {
	// BreakerFailures is how many consecutive transient failures open the
	// endpoint's circuit (0: it never opens).
	BreakerFailures int
	// ProbeInterval is, while the circuit is open, the time between two
	// probes (default 30s).
	ProbeInterval time.Duration
	// Rate bounds attempts per second (0: unlimited), with bursts of
	// Burst (at least 1).
	Rate  float64
	Burst int
	// MaxConcurrent bounds attempts in flight (0: unlimited).
	MaxConcurrent int
}

// The circuit states.
const (
	CircuitClosed   = "closed"    // attempts run
	CircuitOpen     = "open"      // no attempt until the next probe
	CircuitHalfOpen = "half_open" // one probe is in flight
)

// EndpointStatus is an endpoint's health, for status and the admin API.
type EndpointStatus struct {
	Endpoint            string     `json:"endpoint"`
	State               string     `json:"state"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	Since               time.Time  `json:"since"` // of the current state
	NextProbe           *time.Time `json:"next_probe,omitempty"`
	InFlight            int        `json:"in_flight"`
	LastError           string     `json:"last_error,omitempty"`
	Succeeded           int64      `json:"succeeded"`
	Failed              int64      `json:"failed"`
	Deferred            int64      `json:"deferred"`
	BreakerFailures     int        `json:"breaker_failures"`
	RateLimit           float64    `json:"rate_limit,omitempty"`
	RateBurst           int        `json:"rate_burst,omitempty"`
	MaxConcurrent       int        `json:"max_concurrent,omitempty"`
}

// EndpointGuardConfig configures the EndpointGuard.
type EndpointGuardConfig struct {
	// Default applies to every endpoint without an override.
	Default EndpointPolicy
	// Overrides are per endpoint (as Endpoint names them).
	Overrides map[string]EndpointPolicy
	// Endpoint names where an action delivers (default domain.Endpoint).
	Endpoint func(obs *domain.Observer, act *domain.Action) string
	// OnRecover is called when an endpoint's circuit closes again (the
	// composition root makes its parked backlog due at once).
	OnRecover func(ctx context.Context, endpoint string)
	// OnChange is told each circuit transition (called with the
	// endpoint's lock held: it must not block; EndpointReporter.Changed).
	OnChange func(EndpointStatus)
	// ConcurrencyWait is how long an attempt over the concurrency cap is
	// deferred (default 50ms).
	ConcurrencyWait time.Duration
	Logger          *slog.Logger
	Metrics         ports.DeliveryMetrics
	Now             func() time.Time
}

// EndpointGuard is an ActionExecutor decorator that protects endpoints:
// a circuit breaker per endpoint (it opens after BreakerFailures
// consecutive transient failures; while open no attempt is made, one
// probe goes out per ProbeInterval, and a probe that succeeds closes it
// and calls OnRecover), a rate limit and a concurrency cap. The first
// success of an endpoint in this process calls OnRecover too: retries
// parked before a restart need not wait out their backoff. An action it
// does not run gets a *domain.DeferredError: not an attempt, and nothing
// blocks, so the caller's goroutine moves on. An answer of the endpoint,
// even a permanent failure (4xx), counts as the endpoint working.
type EndpointGuard struct {
	next ports.ActionExecutor
	cfg  EndpointGuardConfig

	names sync.Map // *domain.Action -> endpoint name (actions are immutable once loaded)

	mu  sync.RWMutex
	eps map[string]*endpointState
}

type endpointState struct {
	mu       sync.Mutex // guards the fields below
	name     string
	policy   EndpointPolicy
	state    string
	since    time.Time
	failures int
	probe    time.Time // while open: when the next probe may go
	inFlight int
	bucket   domain.TokenBucket
	lastErr  string
	answered bool // the endpoint answered once in this process

	succeeded, failed, deferred int64
}

var _ ports.ActionExecutor = (*EndpointGuard)(nil)

// NewEndpointGuard wraps next.
func NewEndpointGuard(next ports.ActionExecutor, cfg EndpointGuardConfig) (*EndpointGuard, error) {
	if next == nil || cfg.Logger == nil {
		return nil, errors.New("endpoint guard: executor and logger are required")
	}
	if cfg.Endpoint == nil {
		cfg.Endpoint = domain.Endpoint
	}
	if cfg.OnRecover == nil {
		cfg.OnRecover = func(context.Context, string) {}
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(EndpointStatus) {}
	}
	cfg.ConcurrencyWait = cmp.Or(cfg.ConcurrencyWait, 50*time.Millisecond)
	cfg.Metrics = cmp.Or[ports.DeliveryMetrics](cfg.Metrics, ports.NopDeliveryMetrics{})
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &EndpointGuard{next: next, cfg: cfg, eps: map[string]*endpointState{}}, nil
}

// nameOf names act's endpoint, parsing its URL once.
func (g *EndpointGuard) nameOf(obs *domain.Observer, act *domain.Action) string {
	if n, ok := g.names.Load(act); ok {
		return n.(string)
	}
	n := g.cfg.Endpoint(obs, act)
	g.names.Store(act, n)
	return n
}

// endpoint returns the state of name, creating it.
func (g *EndpointGuard) endpoint(name string, now time.Time) *endpointState {
	g.mu.RLock()
	e, ok := g.eps[name]
	g.mu.RUnlock()
	if ok {
		return e
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok = g.eps[name]
	if !ok {
		p, over := g.cfg.Overrides[name]
		if !over {
			p = g.cfg.Default
		}
		p.ProbeInterval = cmp.Or(p.ProbeInterval, 30*time.Second)
		e = &endpointState{name: name, policy: p, state: CircuitClosed, since: now,
			bucket: domain.TokenBucket{Rate: p.Rate, Burst: p.Burst}}
		g.eps[name] = e
		g.cfg.Metrics.EndpointState(name, CircuitClosed)
	}
	return e
}

// Execute runs act unless its endpoint cannot take it now.
func (g *EndpointGuard) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	name := g.nameOf(obs, act)
	now := g.cfg.Now()
	e := g.endpoint(name, now)
	e.mu.Lock()
	probe, deferral := g.admit(e, now)
	e.mu.Unlock()
	if deferral != nil {
		g.cfg.Metrics.EndpointDeferred(name, string(deferral.Reason))
		return deferral
	}
	err := g.next.Execute(ctx, ev, obs, act)
	e.mu.Lock()
	recovered := g.record(ctx, e, probe, err)
	e.mu.Unlock()
	if recovered {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		g.cfg.OnRecover(rctx, name)
		cancel()
	}
	return err
}

// admit decides whether an attempt runs now; e.mu must be held.
func (g *EndpointGuard) admit(e *endpointState, now time.Time) (probe bool, d *domain.DeferredError) {
	defer func() {
		if d != nil {
			e.deferred++
		}
	}()
	switch e.state {
	case CircuitOpen:
		if now.Before(e.probe) {
			return false, &domain.DeferredError{Endpoint: e.name, Reason: domain.DeferOpen, Until: e.probe}
		}
		probe = true
	case CircuitHalfOpen: // a probe is in flight
		until := e.probe
		if !until.After(now) {
			until = now.Add(e.policy.ProbeInterval)
		}
		return false, &domain.DeferredError{Endpoint: e.name, Reason: domain.DeferOpen, Until: until}
	}
	if e.policy.MaxConcurrent > 0 && e.inFlight >= e.policy.MaxConcurrent {
		return false, &domain.DeferredError{Endpoint: e.name, Reason: domain.DeferConcurrency, Until: now.Add(g.cfg.ConcurrencyWait)}
	}
	if wait := e.bucket.Take(now); wait > 0 {
		return false, &domain.DeferredError{Endpoint: e.name, Reason: domain.DeferRate, Until: now.Add(wait)}
	}
	if probe {
		e.probe = now.Add(e.policy.ProbeInterval)
		g.transition(e, CircuitHalfOpen, now)
	}
	e.inFlight++
	return probe, nil
}

// record counts an attempt's outcome and moves the circuit; it reports
// whether the endpoint recovered. e.mu must be held.
func (g *EndpointGuard) record(ctx context.Context, e *endpointState, probe bool, err error) (recovered bool) {
	e.inFlight--
	now := g.cfg.Now()
	switch {
	case err != nil && ctx.Err() != nil: // interrupted: says nothing about the endpoint
		if probe {
			e.probe = now
			g.transition(e, CircuitOpen, now)
		}
		return false
	case err == nil || domain.IsPermanent(err): // the endpoint answered
		if err == nil {
			e.succeeded++
		} else {
			e.failed++
		}
		e.failures = 0
		first := !e.answered
		e.answered = true
		if e.state == CircuitClosed {
			return first
		}
		g.transition(e, CircuitClosed, now)
		g.cfg.Logger.Info("endpoint recovered, circuit closed: its parked retries are due now",
			slog.String("endpoint", e.name), slog.Bool("probe", probe))
		return true
	}
	e.failed++
	e.failures++
	e.lastErr = err.Error()
	switch {
	case probe || e.state == CircuitHalfOpen:
		e.probe = now.Add(e.policy.ProbeInterval)
		g.transition(e, CircuitOpen, now)
		g.cfg.Logger.Debug("endpoint probe failed, circuit stays open", slog.String("endpoint", e.name),
			slog.Time("next_probe", e.probe), slog.String("error", e.lastErr))
	case e.state == CircuitClosed && e.policy.BreakerFailures > 0 && e.failures >= e.policy.BreakerFailures:
		e.probe = now.Add(e.policy.ProbeInterval)
		g.transition(e, CircuitOpen, now)
		g.cfg.Logger.Warn("endpoint circuit opened: no attempts until a probe succeeds; new events park without an attempt",
			slog.String("endpoint", e.name), slog.Int("consecutive_failures", e.failures),
			slog.Duration("probe_interval", e.policy.ProbeInterval), slog.String("error", e.lastErr))
	}
	return false
}

// transition moves e to state to and reports it; e.mu must be held.
func (g *EndpointGuard) transition(e *endpointState, to string, now time.Time) {
	if e.state == to {
		return
	}
	e.state, e.since = to, now
	g.cfg.Metrics.EndpointState(e.name, to)
	g.cfg.OnChange(e.status())
}

// Skip lists the endpoints whose parked items need not be claimed now:
// open circuits whose next probe is not due, those probing, and those at
// their rate limit or concurrency cap (claiming their items would only
// reschedule them); until is the earliest time one of them may take an
// attempt again (zero when none is skipped).
func (g *EndpointGuard) Skip() (skip []string, until time.Time) {
	now := g.cfg.Now()
	later := func(t time.Time) {
		if until.IsZero() || t.Before(until) {
			until = t
		}
	}
	for _, e := range g.all() {
		e.mu.Lock()
		switch wait := e.bucket.Wait(now); {
		case e.state == CircuitHalfOpen:
			skip = append(skip, e.name)
			later(now.Add(g.cfg.ConcurrencyWait))
		case e.state == CircuitOpen && now.Before(e.probe):
			skip = append(skip, e.name)
			later(e.probe)
		case wait > 0:
			skip = append(skip, e.name)
			later(now.Add(wait))
		case e.policy.MaxConcurrent > 0 && e.inFlight >= e.policy.MaxConcurrent:
			skip = append(skip, e.name)
			later(now.Add(g.cfg.ConcurrencyWait))
		}
		e.mu.Unlock()
	}
	return skip, until
}

// all returns every endpoint's state.
func (g *EndpointGuard) all() []*endpointState {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]*endpointState, 0, len(g.eps))
	for _, e := range g.eps {
		out = append(out, e)
	}
	return out
}

// Status reports every endpoint seen, in name order.
func (g *EndpointGuard) Status() []EndpointStatus {
	eps := g.all()
	out := make([]EndpointStatus, 0, len(eps))
	for _, e := range eps {
		e.mu.Lock()
		out = append(out, e.status())
		e.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b EndpointStatus) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
	return out
}

// status snapshots e; e.mu must be held.
func (e *endpointState) status() EndpointStatus {
	st := EndpointStatus{Endpoint: e.name, State: e.state, ConsecutiveFailures: e.failures, Since: e.since,
		InFlight: e.inFlight, LastError: e.lastErr, Succeeded: e.succeeded, Failed: e.failed, Deferred: e.deferred,
		BreakerFailures: e.policy.BreakerFailures, RateLimit: e.policy.Rate, RateBurst: e.bucket.Burst, MaxConcurrent: e.policy.MaxConcurrent}
	if e.state != CircuitClosed {
		p := e.probe
		st.NextProbe = &p
	}
	return st
}

// Retain forgets what the guard knows of the endpoints no action of
// observers uses any more (a reload removed them): their circuit, limits
// and state gauge, which would otherwise report, say, an open circuit for
// ever. An endpoint with attempts in flight is kept until a later Retain.
// The remembered endpoint names of actions no longer configured go too.
func (g *EndpointGuard) Retain(observers []*domain.Observer) {
	keep := map[string]bool{}
	current := map[*domain.Action]bool{}
	for _, o := range observers {
		for i := range o.Actions {
			act := &o.Actions[i]
			current[act] = true
			keep[g.cfg.Endpoint(o, act)] = true
		}
	}
	g.names.Range(func(k, _ any) bool {
		if !current[k.(*domain.Action)] {
			g.names.Delete(k)
		}
		return true
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, e := range g.eps {
		if keep[name] {
			continue
		}
		e.mu.Lock()
		busy := e.inFlight > 0
		e.mu.Unlock()
		if !busy {
			delete(g.eps, name)
			g.cfg.Metrics.EndpointRemoved(name)
		}
	}
}
