package operate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
)

// stateDatabases lists the databases a one-shot command of cfg talks to:
// the state database (none in the memory topology) and the
// multi-database sources, or of those only the ones named in only
// ("database", "databases.NAME"; none: all). The URLs of sources given by
// url_env are looked up in env.
func stateDatabases(cfg config.Config, env func(string) (string, bool), only []string) (map[string]config.DatabaseConfig, error) {
	out := map[string]config.DatabaseConfig{}
	if cfg.Topology == config.TopologyMemory {
		return out, nil
	}
	wanted := func(key string) bool { return len(only) == 0 || slices.Contains(only, key) }
	if wanted("database") {
		out["database"] = cfg.Database
	}
	for i, d := range cfg.Databases {
		if !wanted("databases." + d.Name) {
			continue
		}
		url, err := stores.SourceURL(cfg, env, i)
		if err != nil {
			return nil, err
		}
		db := cfg.Database
		db.URL = url
		out["databases."+d.Name] = db
	}
	return out, nil
}

// WaitForDatabases waits up to wait for the databases of cfg a command
// uses to answer (the one-shot commands' --wait): those only names
// ("database", "databases.NAME"), or every one when only is empty,
// logging each failure; it returns the last error when one still does
// not answer. (Waiting for all failed a command on a database it does
// not use.)
func WaitForDatabases(ctx context.Context, cfg config.Config, wait time.Duration, logger *slog.Logger, only ...string) error {
	dbs, err := stateDatabases(cfg, os.LookupEnv, only)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for _, what := range slices.Sorted(maps.Keys(dbs)) {
		db := dbs[what]
		d, err := postgres.Open(wctx, postgres.PoolConfig{URL: db.URL, MaxConns: 1, ConnectTimeout: db.ConnectTimeout}, logger)
		var bad *postgres.ErrBadURL
		switch {
		case errors.As(err, &bad):
			return &config.ConfigError{Key: what + ".url", Msg: "cannot parse the connection string"}
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			return fmt.Errorf("%s: waited %s: %w", what, wait, err)
		}
		d.Close()
	}
	return nil
}
