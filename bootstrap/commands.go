package bootstrap

import (
	"context"
	"log/slog"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
	"github.com/fraiseql/fraiseql-observer/bootstrap/telemetry"
)

// Preflight runs the checks of cfg that run makes with the adapters'
// own parsers before it connects to anything (config.Load made the
// others): the outbound network policy and the tracing endpoint, so that
// validate-config refuses what run would.
func Preflight(cfg config.Config) error {
	if _, err := actions.Policy(cfg); err != nil {
		return err
	}
	return telemetry.CheckTracing(cfg)
}

// Migrate creates or adapts the change-log table and the observer schema
// named in cfg. The warnings are about the existing table, for the
// operator (e.g. contract columns that allow NULL); Migrate also logs
// them.
func Migrate(ctx context.Context, cfg config.Config, logger *slog.Logger) (warnings []string, _ error) {
	db, err := stores.ConnectOnce(ctx, cfg.Database, "database", logger)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	pool := db.Pool
	c := cfg.Database
	if err := postgres.Migrate(ctx, pool, postgres.MigrateConfig{
		ChangeLogTable: c.ChangeLogTable, Channel: c.NotifyChannel, ObserverSchema: c.ObserverSchema, Logger: logger,
		Trigger: stores.TriggerPolicy(c),
	}); err != nil {
		return nil, err
	}
	warn, err := postgres.NullableContractColumns(ctx, pool, c.ChangeLogTable)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		warnings = append(warnings, warn)
	}
	return warnings, nil
}

// Watch installs (on) or removes (!on) the capture trigger of an ordinary
// table; entity names the events' entity type (default: the table name).
func Watch(ctx context.Context, cfg config.Config, logger *slog.Logger, on bool, table, entity string) error {
	db, err := stores.ConnectOnce(ctx, cfg.Database, "database", logger)
	if err != nil {
		return err
	}
	defer db.Close()
	pool := db.Pool
	wc := postgres.WatchConfig{
		Table: table, Entity: entity, ChangeLogTable: cfg.Database.ChangeLogTable, ObserverSchema: cfg.Database.ObserverSchema,
		Logger: logger,
	}
	if on {
		return postgres.Watch(ctx, pool, wc)
	}
	return postgres.Unwatch(ctx, pool, wc)
}

// EffectiveConfig is config.Effective with PostgreSQL's redaction of
// connection strings: the configuration as validate-config --print shows
// it, secrets redacted.
func EffectiveConfig(cfg config.Config) (map[string]any, error) {
	return config.Effective(cfg, postgres.Redact)
}
