package bootstrap

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
	"github.com/fraiseql/fraiseql-observer/bootstrap/telemetry"
)

// Preflight runs the checks of cfg that run makes with the adapters'
// own parsers before it connects to anything (config.Load made the
// others): the outbound network policy, the tracing endpoint and the
// memory topology's events file (every line decoded), so that
// validate-config refuses what run would.
func Preflight(ctx context.Context, cfg config.Config) error {
	if _, err := actions.Policy(cfg); err != nil {
		return err
	}
	if err := telemetry.CheckTracing(cfg); err != nil {
		return err
	}
	return stores.CheckEventsFile(ctx, cfg)
}

// Migrate creates or adapts the change-log table and the observer schema
// named in cfg. The warnings are about the existing table, for the
// operator to see (e.g. contract columns that allow NULL); they are
// returned, not logged, so that the operator sees each once.
func Migrate(ctx context.Context, cfg config.Config, logger *slog.Logger, database string) (warnings []string, _ error) {
	c, name, err := TargetDatabase(cfg, database, false)
	if err != nil {
		return nil, err
	}
	db, err := stores.ConnectOnce(ctx, c, name, logger)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := postgres.Migrate(ctx, db.Pool, postgres.MigrateConfig{
		ChangeLogTable: c.ChangeLogTable, Channel: c.NotifyChannel, ObserverSchema: c.ObserverSchema, Logger: logger,
		Trigger: stores.TriggerPolicy(c), Warn: func(w string) { warnings = append(warnings, w) },
	}); err != nil {
		return nil, err
	}
	return warnings, nil
}

// Watch installs (on) or removes (!on) the capture trigger of an ordinary
// table; entity names the events' entity type (default: the table name).
func Watch(ctx context.Context, cfg config.Config, logger *slog.Logger, on bool, table, entity, database string) error {
	c, name, err := TargetDatabase(cfg, database, true)
	if err != nil {
		return err
	}
	db, err := stores.ConnectOnce(ctx, c, name, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	pool := db.Pool
	wc := postgres.WatchConfig{
		Table: table, Entity: entity, ChangeLogTable: c.ChangeLogTable, ObserverSchema: c.ObserverSchema,
		Logger: logger,
	}
	if on {
		return postgres.Watch(ctx, pool, wc)
	}
	return postgres.Unwatch(ctx, pool, wc)
}

// TargetDatabase is the database migrate, watch and unwatch work on, and
// its name in errors: [database], or with name (--database) that
// [[databases]] entry of the multi-database topology, whose bridge reads
// its change log. The memory topology has no database; watch in
// multi-database needs a name, since [database] there holds only the
// workers' state and no bridge reads its change log.
func TargetDatabase(cfg config.Config, name string, watch bool) (config.DatabaseConfig, string, error) {
	c := cfg.Database
	switch {
	case cfg.Topology == config.TopologyMemory:
		return c, "", &config.ConfigError{File: cfg.File, Key: "topology", Msg: "the memory topology reads no database: there is no change log to set up"}
	case name != "" && cfg.Topology != config.TopologyMultiDatabase:
		return c, "", &config.ConfigError{File: cfg.File, Key: "topology",
			Msg: fmt.Sprintf("--database %q names a [[databases]] entry, which only the multi-database topology has (this is %s)", name, cfg.Topology)}
	case name == "" && watch && cfg.Topology == config.TopologyMultiDatabase:
		return c, "", &config.ConfigError{File: cfg.File, Key: "databases",
			Msg: "in the multi-database topology the bridges read the change logs of the [[databases]]: name one with --database (" + strings.Join(sourceNames(cfg), ", ") + ")"}
	case name == "":
		return c, "database", nil
	}
	for i, d := range cfg.Databases {
		if d.Name != name {
			continue
		}
		url, err := stores.SourceURL(cfg, os.LookupEnv, i)
		if err != nil {
			return c, "", err
		}
		c.URL = url
		return c, "databases." + name, nil
	}
	return c, "", &config.ConfigError{File: cfg.File, Key: "databases",
		Msg: fmt.Sprintf("--database %q is not a [[databases]] name (%s)", name, strings.Join(sourceNames(cfg), ", "))}
}

func sourceNames(cfg config.Config) []string {
	names := make([]string, 0, len(cfg.Databases))
	for _, d := range cfg.Databases {
		names = append(names, d.Name)
	}
	return names
}

// EffectiveConfig is config.Effective with the adapters' redaction of
// connection strings (NATS server lists, which may carry a token as the
// user or several URLs, by the NATS adapter's; the others by
// PostgreSQL's): the configuration as validate-config --print shows it,
// secrets redacted.
func EffectiveConfig(cfg config.Config) (map[string]any, error) {
	return config.Effective(cfg, redactConn)
}

// redactConn picks the redaction by the URL's scheme: a NATS server list
// starts with nats://, tls://, ws:// or wss:// (whose user may be a
// token); anything else (PostgreSQL URLs and
// keyword/value strings, whose host lists hold commas too, Redis URLs)
// goes through PostgreSQL's.
func redactConn(s string) string {
	if strings.HasPrefix(s, "nats://") || strings.HasPrefix(s, "tls://") || strings.HasPrefix(s, "ws://") || strings.HasPrefix(s, "wss://") {
		return natsadapter.RedactURLs(s)
	}
	return postgres.Redact(s)
}
