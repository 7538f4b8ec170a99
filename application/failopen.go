package application

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// failOpen reports that a component went on without its backing service:
// a metric on every occurrence, a warning at most once per interval.
type failOpen struct {
	component string
	logger    *slog.Logger
	metrics   ports.Metrics
	interval  time.Duration

	mu         sync.Mutex
	lastWarn   time.Time
	suppressed int
}

func newFailOpen(component string, logger *slog.Logger, metrics ports.Metrics) *failOpen {
	return &failOpen{component: component, logger: logger, metrics: metrics, interval: 10 * time.Second}
}

func (f *failOpen) report(ctx context.Context, op string, err error) {
	f.metrics.FailOpen(f.component)
	f.mu.Lock()
	now := time.Now()
	if !f.lastWarn.IsZero() && now.Sub(f.lastWarn) < f.interval {
		f.suppressed++
		f.mu.Unlock()
		return
	}
	suppressed := f.suppressed
	f.lastWarn, f.suppressed = now, 0
	f.mu.Unlock()
	f.logger.LogAttrs(ctx, slog.LevelWarn, f.component+" unavailable, continuing without it (fail-open)",
		slog.String("operation", op), slog.String("error", err.Error()), slog.Int("suppressed_since_last_warning", suppressed))
}
