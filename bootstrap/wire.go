package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	redisadapter "github.com/fraiseql/fraiseql-observer/adapters/redis"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// This file wires what every topology shares: the state store, Redis,
// NATS, the action executors and the processor stack.

// primaryReaders are the readers whose checkpoints the state store keeps:
// the local reader, or nats-distributed's bridge. (Multi-database bridges
// keep theirs in their source databases.)
func primaryReaders(cfg config.Config) []admin.Reader {
	switch {
	case !cfg.Topology.Distributed():
		return []admin.Reader{admin.ReaderOf(cfg.Reader.Name)}
	case cfg.Topology == config.TopologyNATSDistributed:
		return []admin.Reader{admin.ReaderOf("bridge:default")}
	}
	return nil
}

func (a *App) openMemory(ctx context.Context) error {
	src, err := memory.NewSource(time.Now, memory.SourceConfig{PollInterval: a.cfg.Database.PollInterval, MaxEventBytes: a.cfg.Reader.MaxEventBytes})
	if err != nil {
		return err
	}
	a.memSource, a.source = src, src
	dl := memory.NewDeadLetters(time.Now)
	retries := memory.NewRetries(dl, time.Now)
	a.retries, a.deliveryLog = retries, memory.NewDeliveryLog(0)
	leases := memory.NewLease(time.Now)
	a.primary = &admin.Store{Name: "memory", Checkpoints: memory.NewCheckpointsWithLease(leases), Leases: leases,
		DeadLetters: dl, ChangeLog: src, Retries: retries, Endpoints: memory.NewEndpointStates(), Readers: primaryReaders(a.cfg)}
	a.dlqCount = dl
	if f := a.cfg.Memory.EventsFile; f != "" {
		fh, err := os.Open(f)
		if err != nil {
			return &config.ConfigError{Key: "memory.events_file", Msg: err.Error()}
		}
		defer fh.Close()
		n, err := src.LoadJSONLines(ctx, fh)
		if err != nil {
			return &config.ConfigError{File: f, Msg: err.Error()}
		}
		a.logger.Info("events loaded", slog.String("file", f), slog.Int("events", n))
	}
	return nil
}

// openStateDB opens the observer's own database: migrations, checkpoints,
// dead letters and the reader lease.
func (a *App) openStateDB(ctx context.Context) error {
	d, err := Connect(ctx, a.cfg.Database, a.logger)
	if err != nil {
		return err
	}
	a.db = d
	a.onClose(d.Close)
	db := a.cfg.Database
	if db.MigrateOnStart {
		if err := migrateDB(ctx, d, db, a.logger); err != nil {
			return err
		}
		a.logger.Info("database migrated", slog.String("change_log_table", db.ChangeLogTable), slog.String("observer_schema", db.ObserverSchema))
	}
	var dl *postgres.DeadLetters
	a.primary, dl, err = postgresStore(a.cfg, d, "database", db.URL, primaryReaders(a.cfg))
	a.dlqCount = dl
	if err != nil {
		return err
	}
	if a.retries, err = postgres.NewRetries(d.Pool, db.ObserverSchema); err != nil {
		return err
	}
	a.deliveryLog, err = postgres.NewDeliveryLog(d.Pool, db.ObserverSchema)
	return err
}

// postgresStore is the state kept in database d: its checkpoints, leases,
// dead letters and change log.
func postgresStore(cfg config.Config, d *postgres.DB, name, url string, readers []admin.Reader) (*admin.Store, *postgres.DeadLetters, error) {
	schema := cfg.Database.ObserverSchema
	s := &admin.Store{Name: name, URL: postgres.Redact(url), Readers: readers}
	var err error
	if s.Checkpoints, err = postgres.NewCheckpoints(d.Pool, schema); err != nil {
		return nil, nil, err
	}
	if s.Leases, err = postgres.NewLease(d.Pool, schema); err != nil {
		return nil, nil, err
	}
	dl, err := postgres.NewDeadLetters(d.Pool, schema)
	if err != nil {
		return nil, nil, err
	}
	s.DeadLetters = dl
	if s.Retries, err = postgres.NewRetries(d.Pool, schema); err != nil {
		return nil, nil, err
	}
	if s.Endpoints, err = postgres.NewEndpointStates(d.Pool, schema); err != nil {
		return nil, nil, err
	}
	stats, err := postgres.NewChangeLogStats(d.Pool, cfg.Database.ChangeLogTable)
	if err != nil {
		return nil, nil, &config.ConfigError{File: cfg.File, Key: "database.change_log_table", Msg: err.Error()}
	}
	s.ChangeLog = stats
	if source, ok := strings.CutPrefix(name, "databases."); ok {
		s.ChangeLog = stats.WithSource(source) // events read from it carry the source's name, as its bridge publishes them
	}
	return s, dl, nil
}

func migrateDB(ctx context.Context, d *postgres.DB, db config.DatabaseConfig, logger *slog.Logger) error {
	if err := postgres.Migrate(ctx, d.Pool, postgres.MigrateConfig{
		ChangeLogTable: db.ChangeLogTable, Channel: db.NotifyChannel, ObserverSchema: db.ObserverSchema, Logger: logger,
	}); err != nil {
		return fmt.Errorf("migrate on start: %w", err)
	}
	return nil
}

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

// connectRedis connects to Redis. An unreachable Redis at start is not
// fatal: dedup and caching fail open until it answers.
func connectRedis(ctx context.Context, cfg config.Config, env func(string) (string, bool), logger *slog.Logger) (*redisadapter.Client, error) {
	r := cfg.Redis
	password := ""
	if r.PasswordEnv != "" {
		v, ok := env(r.PasswordEnv)
		if !ok {
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
		return nil, &config.ConfigError{File: cfg.File, Key: "redis.url", Msg: err.Error()}
	}
	pctx, cancel := context.WithTimeout(ctx, r.ConnectTimeout)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		logger.Warn("redis unreachable at start; dedup and caching fail open until it answers", slog.String("error", err.Error()))
	}
	return c, nil
}

func natsConfig(cfg config.Config, holder string) natsadapter.Config {
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
		},
	}
}

// openNATS connects (starting the in-process server when nats.embedded)
// and creates or updates the stream with every configured setting.
func (a *App) openNATS(ctx context.Context) error {
	cfg := natsConfig(a.cfg, a.holder)
	var err error
	if a.cfg.NATS.Embedded {
		dir, derr := filepath.Abs(a.cfg.NATS.StoreDir)
		if derr != nil {
			return &config.ConfigError{File: a.cfg.File, Key: "nats.store_dir", Msg: derr.Error()}
		}
		embedded, eerr := natsadapter.StartEmbedded(natsadapter.EmbeddedConfig{StoreDir: dir, Port: -1}, a.logger)
		if eerr != nil {
			return fmt.Errorf("start embedded nats: %w", eerr)
		}
		a.onClose(embedded.Shutdown)
		a.nats, err = natsadapter.ConnectEmbedded(ctx, embedded, cfg, a.logger)
	} else {
		a.nats, err = natsadapter.Connect(ctx, cfg, a.logger)
	}
	if err != nil {
		return err
	}
	a.onClose(a.nats.Close)
	return a.nats.EnsureStream(ctx)
}

// buildProcessor stacks executors and processor decorators from config:
// Dedup(Processor(CachingExecutor(DeliveryRecorder(EndpointGuard(
// Dispatcher))))), and the retry runner over the same executors.
func (a *App) buildProcessor(observers []domain.Observer) error {
	if a.primary == nil {
		return nil // a bridge-only process runs no actions
	}
	dispatcher, closeExec, err := actions.Build(a.cfg, a.env, a.logger, actions.Deps{DB: a.db, Redis: a.redis, NATS: a.nats, Propagate: a.propagate(), EmailServer: &a.emailServer})
	if err != nil {
		return err
	}
	a.onClose(closeExec)
	a.dispatcher = dispatcher
	if err := actions.CheckSupported(a.cfg, dispatcher, observers); err != nil {
		return err
	}
	exec, err := a.guarded(dispatcher)
	if err != nil {
		return err
	}
	if exec, err = a.recorded(exec); err != nil {
		return err
	}
	perf := a.cfg.Performance
	if perf.EnableCaching {
		var cache ports.ResultCache = memory.NewResultCache(time.Now)
		if a.redis != nil {
			cache = redisadapter.NewResultCache(a.redis)
		}
		if exec, err = application.NewCachingExecutor(exec, cache, application.CacheConfig{
			TTL: a.cfg.Redis.CacheTTL, Logger: a.logger, Metrics: a.metrics,
		}); err != nil {
			return err
		}
	}
	if a.tracer != nil {
		if exec, err = application.NewTracedExecutor(exec, a.tracer); err != nil {
			return err
		}
	}
	a.exec = exec
	pc := application.ProcessorConfig{Executor: exec, DeadLetters: a.primary.DeadLetters, Metrics: a.metrics, Logger: a.logger}
	a.durable(&pc)
	if a.processor, err = application.NewProcessor(domain.NewMatcher(observers), pc); err != nil {
		return err
	}
	if err := a.buildRunner(); err != nil {
		return err
	}
	a.runProc = a.processor
	if perf.EnableDedup {
		var store ports.Deduplicator = memory.NewDeduplicator(time.Now)
		if a.redis != nil {
			store = redisadapter.NewDeduplicator(a.redis)
		}
		if a.runProc, err = application.NewDedup(a.processor, store, application.DedupConfig{
			Window: a.cfg.Redis.DedupWindow, Lease: a.cfg.Redis.DedupLease, Token: a.holder,
			Logger: a.logger, Metrics: a.metrics,
		}); err != nil {
			return err
		}
	}
	if a.tracer != nil {
		if a.runProc, err = application.NewTracedProcessor(a.runProc, a.tracer); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) maxConcurrent() int {
	if !a.cfg.Performance.EnableConcurrent {
		return 1
	}
	return a.cfg.Performance.MaxConcurrentActions
}

// buildLocalReader reads the change log (or the memory source) in this
// process and runs the actions here.
func (a *App) buildLocalReader() error {
	if a.source == nil {
		db := a.cfg.Database
		cl, err := postgres.NewChangeLog(a.db.Pool, postgres.ChangeLogConfig{
			Table: db.ChangeLogTable, Channel: db.NotifyChannel, PollInterval: db.PollInterval,
			MaxEventBytes: a.cfg.Reader.MaxEventBytes,
		}, a.logger)
		if err != nil {
			return err
		}
		a.changeLog, a.source = cl, cl
		a.onClose(cl.Close)
	}
	scheduler, err := application.NewScheduler(a.runProc, application.SchedulerConfig{
		MaxConcurrent: a.maxConcurrent(), Logger: a.logger,
	})
	if err != nil {
		return err
	}
	a.reader, err = application.NewReader(a.source, a.primary.Checkpoints, scheduler, a.readerConfig(a.cfg.Reader.Name, "reader:"+a.cfg.Reader.Name))
	return err
}

// readerConfig is the configuration of the reader with checkpoint name
// that runs under lease (its saves are fenced by it).
func (a *App) readerConfig(name, lease string) application.ReaderConfig {
	return application.ReaderConfig{
		Name:               name,
		Fence:              ports.Fence{Lease: lease, Holder: a.holder},
		BatchSize:          a.cfg.Reader.BatchSize,
		MaxInFlight:        a.cfg.Reader.MaxInFlight,
		MaxInFlightBytes:   a.cfg.Reader.MaxInFlightBytes,
		CheckpointInterval: a.cfg.Reader.CheckpointInterval,
		StallAfter:         a.cfg.Reader.StallAfter,
		Logger:             a.logger,
		Metrics:            a.metrics,
	}
}
