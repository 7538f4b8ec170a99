package stores

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	redisadapter "github.com/fraiseql/fraiseql-observer/adapters/redis"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// Connect opens the database and waits until it answers, retrying with
// backoff (and logging each failure) until ctx ends.
func Connect(ctx context.Context, db config.DatabaseConfig, logger *slog.Logger) (*postgres.DB, error) {
	d, err := postgres.Open(ctx, postgres.PoolConfig{URL: db.URL, MaxConns: db.MaxConnections, ConnectTimeout: db.ConnectTimeout}, logger)
	var bad *postgres.ErrBadURL
	if errors.As(err, &bad) {
		return nil, &config.ConfigError{Key: "database.url", Msg: "cannot parse the connection string"}
	}
	return d, err
}

// ConnectOnce opens db for a one-shot command in one attempt, bounded by
// database.connect_timeout; the error names what (the configuration key)
// and where (the address, password redacted).
func ConnectOnce(ctx context.Context, db config.DatabaseConfig, what string, logger *slog.Logger) (*postgres.DB, error) {
	d, err := postgres.Open(ctx, postgres.PoolConfig{
		URL: db.URL, MaxConns: db.MaxConnections, ConnectTimeout: db.ConnectTimeout, Once: true,
	}, logger)
	var bad *postgres.ErrBadURL
	switch {
	case errors.As(err, &bad):
		return nil, &config.ConfigError{Key: what + ".url", Msg: "cannot parse the connection string"}
	case err != nil:
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return d, nil
}

// MigrateOnStart migrates database d (database.migrate_on_start). The
// notify trigger follows database.wake only when reads says this process
// reads d's change log; otherwise it is left as it is, so that a process
// that does not read it (a NATS worker) never decides how its readers are
// woken.
func MigrateOnStart(ctx context.Context, d *postgres.DB, db config.DatabaseConfig, reads bool, logger *slog.Logger) error {
	trigger := postgres.TriggerKeep
	if reads {
		trigger = TriggerPolicy(db)
	}
	if err := postgres.Migrate(ctx, d.Pool, postgres.MigrateConfig{
		ChangeLogTable: db.ChangeLogTable, Channel: db.NotifyChannel, ObserverSchema: db.ObserverSchema, Logger: logger,
		Trigger: trigger,
	}); err != nil {
		return fmt.Errorf("migrate on start: %w", err)
	}
	return nil
}

// TriggerPolicy is what migrating with db does with the notify trigger:
// install it under database.wake = "notify", drop it under "poll".
func TriggerPolicy(db config.DatabaseConfig) postgres.TriggerPolicy {
	if db.Wake == config.WakePoll {
		return postgres.TriggerDrop
	}
	return postgres.TriggerInstall
}

// ReadsPrimaryChangeLog reports whether a process of cfg reads the
// change log of [database]: every topology's but multi-database's (whose
// bridges read [[databases]]), and for nats-distributed only the roles
// that run the bridge.
func ReadsPrimaryChangeLog(cfg config.Config) bool {
	switch cfg.Topology {
	case config.TopologyMultiDatabase:
		return false
	case config.TopologyNATSDistributed:
		return cfg.Role.RunsBridge()
	}
	return true
}

// ConnectRedis connects to Redis. An unreachable Redis at start is not
// fatal: dedup and caching fail open until it answers.
func ConnectRedis(ctx context.Context, cfg config.Config, env func(string) (string, bool), logger *slog.Logger) (*redisadapter.Client, error) {
	r := cfg.Redis
	password := ""
	if r.PasswordEnv != "" {
		v, ok := env(r.PasswordEnv)
		if !ok || v == "" {
			return nil, &config.ConfigError{File: cfg.File, Key: "redis.password_env", Msg: "environment variable " + r.PasswordEnv + " is not set"}
		}
		password = v
	}
	redisadapter.SetLogger(logger)
	c, err := redisadapter.New(redisadapter.Config{
		URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName, Cluster: r.Cluster,
		Username: r.Username, Password: password, PoolSize: r.PoolSize,
		ConnectTimeout: r.ConnectTimeout, CommandTimeout: r.CommandTimeout, KeyPrefix: r.KeyPrefix,
	})
	if err != nil {
		key := "redis.url"
		if len(r.Addrs) > 0 {
			key = "redis.addrs"
		}
		return nil, &config.ConfigError{File: cfg.File, Key: key, Msg: err.Error()}
	}
	pctx, cancel := context.WithTimeout(ctx, r.ConnectTimeout)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		logger.Warn("redis unreachable at start; dedup and caching fail open until it answers", slog.String("error", err.Error()))
	}
	return c, nil
}

// NATSConfig is the NATS connection, stream and consumer of cfg for the
// process named holder.
func NATSConfig(cfg config.Config, holder string) natsadapter.Config {
	n := cfg.NATS
	return natsadapter.Config{
		URL:        n.URL,
		ClientName: "fraiseql-observer " + holder,
		MaxPending: n.MaxPendingPublishes,
		Stream: natsadapter.StreamConfig{
			Name: n.Stream.Name, SubjectPrefix: n.SubjectPrefix, Storage: n.Stream.Storage,
			Retention: n.Stream.Retention, MaxAge: n.Stream.MaxAge, MaxMsgs: n.Stream.MaxMsgs,
			MaxBytes: n.Stream.MaxBytes, DuplicateWindow: n.Stream.DuplicateWindow, Replicas: n.Stream.Replicas,
		},
		Consumer: natsadapter.ConsumerConfig{
			Durable: n.Consumer.Durable, AckWait: n.Consumer.AckWait,
			MaxDeliver: n.Consumer.MaxDeliver, MaxAckPending: n.Consumer.MaxAckPending,
			MaxBytesInHand: cfg.Reader.MaxInFlightBytes, // a worker holds what it received as a reader holds what it read
		},
	}
}

// OpenNATS connects (starting the in-process server when nats.embedded)
// and creates or updates the stream with every configured setting.
// onClose is handed what to close as it is opened (the caller closes in
// reverse order), failure or not.
func OpenNATS(ctx context.Context, cfg config.Config, holder string, logger *slog.Logger, onClose func(func())) (*natsadapter.Conn, error) {
	ncfg := NATSConfig(cfg, holder)
	var (
		conn *natsadapter.Conn
		err  error
	)
	if cfg.NATS.Embedded {
		dir, derr := filepath.Abs(cfg.NATS.StoreDir)
		if derr != nil {
			return nil, &config.ConfigError{File: cfg.File, Key: "nats.store_dir", Msg: derr.Error()}
		}
		embedded, eerr := natsadapter.StartEmbedded(natsadapter.EmbeddedConfig{StoreDir: dir, Port: -1}, logger)
		if eerr != nil {
			return nil, fmt.Errorf("start embedded nats: %w", eerr)
		}
		onClose(embedded.Shutdown)
		conn, err = natsadapter.ConnectEmbedded(ctx, embedded, ncfg, logger)
	} else {
		conn, err = natsadapter.Connect(ctx, ncfg, logger)
	}
	if err != nil {
		return nil, err
	}
	onClose(conn.Close)
	return conn, conn.EnsureStream(ctx)
}
