package bootstrap

import (
	"context"
	"log/slog"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// connectOnce opens the configured database for a one-shot command: it
// retries while the database is unreachable, but gives up after a bounded
// wait instead of retrying forever.
func connectOnce(ctx context.Context, cfg config.Config, logger *slog.Logger) (*postgres.DB, error) {
	cctx, cancel := context.WithTimeout(ctx, max(3*cfg.Database.ConnectTimeout, 15*time.Second))
	defer cancel()
	return Connect(cctx, cfg.Database, logger)
}

// Migrate creates or adapts the change-log table and the observer schema
// named in cfg.
func Migrate(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	db, err := connectOnce(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	pool := db.Pool
	c := cfg.Database
	return postgres.Migrate(ctx, pool, postgres.MigrateConfig{
		ChangeLogTable: c.ChangeLogTable, Channel: c.NotifyChannel, ObserverSchema: c.ObserverSchema, Logger: logger,
	})
}

// Watch installs (on) or removes (!on) the capture trigger of an ordinary
// table; entity names the events' entity type (default: the table name).
func Watch(ctx context.Context, cfg config.Config, logger *slog.Logger, on bool, table, entity string) error {
	db, err := connectOnce(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	pool := db.Pool
	wc := postgres.WatchConfig{
		Table: table, Entity: entity, ChangeLogTable: cfg.Database.ChangeLogTable, ObserverSchema: cfg.Database.ObserverSchema,
	}
	if on {
		return postgres.Watch(ctx, pool, wc)
	}
	return postgres.Unwatch(ctx, pool, wc)
}

// DebugEvent dry-runs input (an event envelope as JSON) against the
// observers of cfg, resolving *_env values through lookupEnv: each action
// is described by its adapter's previewer, without side effects.
func DebugEvent(cfg config.Config, lookupEnv func(string) (string, bool), input []byte) (admin.DebugReport, error) {
	ev, computed, err := admin.DecodeEvent(input)
	if err != nil {
		return admin.DebugReport{}, err
	}
	observers, err := LoadObservers(cfg, lookupEnv)
	if err != nil {
		return admin.DebugReport{}, err
	}
	return admin.DryRun{Previewers: previewers(cfg)}.Run(ev, computed, observers), nil
}
