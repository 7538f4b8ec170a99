package application

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// MaintenanceConfig tunes Maintenance.
type MaintenanceConfig struct {
	// Retries is repaired each round (nil: none).
	Retries ports.RetryStore
	// Deliveries loses its records older than Retention each round (nil:
	// none).
	Deliveries ports.DeliveryLog
	Retention  time.Duration
	// Interval is the time between rounds (default 1m).
	Interval time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// Maintenance keeps the durable delivery state healthy, from one process
// at a time (it runs under a lease): a key of the retry store whose first
// item waits is released (Repair, a safety net), and the delivery log
// loses the records older than its retention.
type Maintenance struct{ cfg MaintenanceConfig }

// NewMaintenance builds the maintenance loop.
func NewMaintenance(cfg MaintenanceConfig) (*Maintenance, error) {
	if cfg.Logger == nil {
		return nil, errors.New("maintenance: logger is required")
	}
	cfg.Interval = cmp.Or(cfg.Interval, time.Minute)
	if cfg.Deliveries != nil && cfg.Retention <= 0 {
		return nil, errors.New("maintenance: a delivery log needs a positive retention")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Maintenance{cfg: cfg}, nil
}

// Run does a round now and then every Interval until ctx ends.
func (m *Maintenance) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.Once(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once does one round; failures are logged and left for the next round.
func (m *Maintenance) Once(ctx context.Context) {
	if m.cfg.Retries != nil {
		n, err := m.cfg.Retries.Repair(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			m.cfg.Logger.Warn("cannot repair the retry store", slog.String("error", err.Error()))
		case n > 0:
			m.cfg.Logger.Warn("retry store repaired: keys whose first item was waiting are due again", slog.Int64("keys", n))
		}
	}
	if m.cfg.Deliveries != nil {
		n, err := m.cfg.Deliveries.Prune(ctx, m.cfg.Now().Add(-m.cfg.Retention))
		switch {
		case err != nil && ctx.Err() == nil:
			m.cfg.Logger.Warn("cannot prune the delivery log", slog.String("error", err.Error()))
		case n > 0:
			m.cfg.Logger.Debug("delivery log pruned", slog.Int64("records", n), slog.Duration("retention", m.cfg.Retention))
		}
	}
}
