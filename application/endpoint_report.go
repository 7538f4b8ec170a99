package application

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// EndpointReporter stores the endpoints' circuit states (for status): it
// keeps the latest state of each endpoint the guard reports and writes
// them from its own goroutine (Run), so reporting never blocks an action.
// Memory: one entry per endpoint.
type EndpointReporter struct {
	store  ports.EndpointStates
	holder string
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	pending map[string]EndpointStatus
	wake    chan struct{}
	warn    logLimiter
}

// NewEndpointReporter reports to store as holder; now is the clock (nil:
// time.Now).
func NewEndpointReporter(store ports.EndpointStates, holder string, logger *slog.Logger, now func() time.Time) (*EndpointReporter, error) {
	if store == nil || logger == nil || holder == "" {
		return nil, errors.New("endpoint reporter: store, holder and logger are required")
	}
	if now == nil {
		now = time.Now
	}
	return &EndpointReporter{store: store, holder: holder, logger: logger, now: now,
		pending: map[string]EndpointStatus{}, wake: make(chan struct{}, 1), warn: logLimiter{interval: 10 * time.Second, now: now}}, nil
}

// Changed queues st; it never blocks.
func (r *EndpointReporter) Changed(st EndpointStatus) {
	r.mu.Lock()
	r.pending[st.Endpoint] = st
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run writes queued states until ctx ends, then what is left.
func (r *EndpointReporter) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.Flush(fctx)
			cancel()
			return nil
		case <-r.wake:
			r.Flush(ctx)
		}
	}
}

// Flush writes the queued states; one that fails is queued again unless
// a newer one arrived.
func (r *EndpointReporter) Flush(ctx context.Context) {
	r.mu.Lock()
	batch := r.pending
	r.pending = map[string]EndpointStatus{}
	r.mu.Unlock()
	for name, st := range batch {
		err := r.store.Report(ctx, ports.EndpointState{Endpoint: name, Holder: r.holder, State: st.State,
			ConsecutiveFailures: st.ConsecutiveFailures, Since: st.Since, NextProbe: st.NextProbe, LastError: st.LastError,
			ReportedAt: r.now()})
		if err == nil {
			continue
		}
		r.mu.Lock()
		if _, newer := r.pending[name]; !newer {
			r.pending[name] = st
		}
		r.mu.Unlock()
		if ok, suppressed := r.warn.allow(); ok && ctx.Err() == nil {
			r.logger.Warn("cannot store an endpoint's circuit state; status may show an older one", slog.String("endpoint", name),
				slog.String("error", err.Error()), slog.Int("suppressed_since_last_warning", suppressed))
		}
	}
}
