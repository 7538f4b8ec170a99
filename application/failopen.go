package application

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// logLimiter lets a repeated warning through at most once per interval,
// judged by its clock, and counts the ones it held back.
type logLimiter struct {
	interval time.Duration
	now      func() time.Time // nil means time.Now

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now and how many were held back since the
// last one logged.
func (l *logLimiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	clock := l.now
	if clock == nil {
		clock = time.Now
	}
	now := clock()
	if !l.last.IsZero() && now.Sub(l.last) < l.interval {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

// failOpen reports that a component went on without its backing service:
// a metric on every occurrence, a warning at most once per interval.
type failOpen struct {
	component string
	logger    *slog.Logger
	metrics   ports.Metrics
	limit     logLimiter
}

// failOpenInterval is the least time between two fail-open warnings of one
// component.
const failOpenInterval = 10 * time.Second

// newFailOpen reports for component; now is the clock of the warnings'
// rate limit.
func newFailOpen(component string, logger *slog.Logger, metrics ports.Metrics, now func() time.Time) *failOpen {
	return &failOpen{component: component, logger: logger, metrics: metrics, limit: logLimiter{interval: failOpenInterval, now: now}}
}

func (f *failOpen) report(ctx context.Context, op string, err error) {
	f.metrics.FailOpen(f.component)
	ok, suppressed := f.limit.allow()
	if !ok {
		return
	}
	f.logger.LogAttrs(ctx, slog.LevelWarn, f.component+" unavailable, continuing without it (fail-open)",
		slog.String("operation", op), slog.String("error", err.Error()), slog.Int("suppressed_since_last_warning", suppressed))
}
