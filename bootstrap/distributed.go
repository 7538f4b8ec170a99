package bootstrap

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	redisadapter "github.com/fraiseql/fraiseql-observer/adapters/redis"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// bridgeUnit is one database's bridge: its change log, cursor and lease.
type bridgeUnit struct {
	name   string
	log    *postgres.ChangeLog
	reader *application.Reader
	lease  ports.Lease
	bridge *application.Bridge
}

type changeLogReader struct {
	log    *postgres.ChangeLog
	reader *application.Reader
}

// changeLogs lists the change logs this process reads, for the gauges.
func (a *App) changeLogs() []changeLogReader {
	var out []changeLogReader
	if a.changeLog != nil && a.reader != nil {
		out = append(out, changeLogReader{a.changeLog, a.reader})
	}
	for _, b := range a.bridges {
		out = append(out, changeLogReader{b.log, b.reader})
	}
	return out
}

// openRedis connects to Redis. An unreachable Redis at start is not fatal:
// dedup and caching fail open until it answers.
func (a *App) openRedis(ctx context.Context) error {
	r := a.cfg.Redis
	password := ""
	if r.PasswordEnv != "" {
		v, ok := a.env(r.PasswordEnv)
		if !ok {
			return &config.ConfigError{File: a.cfg.File, Key: "redis.password_env", Msg: "environment variable " + r.PasswordEnv + " is not set"}
		}
		password = v
	}
	redisadapter.SetLogger(a.logger)
	c, err := redisadapter.New(redisadapter.Config{
		URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName, Cluster: r.Cluster,
		Username: r.Username, Password: password, PoolSize: r.PoolSize,
		ConnectTimeout: r.ConnectTimeout, CommandTimeout: r.CommandTimeout, KeyPrefix: r.KeyPrefix,
	})
	if err != nil {
		return &config.ConfigError{File: a.cfg.File, Key: "redis.url", Msg: err.Error()}
	}
	a.redis = c
	a.onClose(func() { _ = c.Close() })
	pctx, cancel := context.WithTimeout(ctx, r.ConnectTimeout)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		a.logger.Warn("redis unreachable at start; dedup and caching fail open until it answers", slog.String("error", err.Error()))
	}
	return nil
}

func (a *App) natsConfig() natsadapter.Config {
	n := a.cfg.NATS
	return natsadapter.Config{
		URL:        n.URL,
		ClientName: "fraiseql-observer " + a.holder,
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
	cfg := a.natsConfig()
	var err error
	if a.cfg.NATS.Embedded {
		dir, derr := filepath.Abs(a.cfg.NATS.StoreDir)
		if derr != nil {
			return &config.ConfigError{File: a.cfg.File, Key: "nats.store_dir", Msg: derr.Error()}
		}
		if a.embedded, err = natsadapter.StartEmbedded(natsadapter.EmbeddedConfig{StoreDir: dir, Port: -1}, a.logger); err != nil {
			return fmt.Errorf("start embedded nats: %w", err)
		}
		a.onClose(a.embedded.Shutdown)
		a.nats, err = natsadapter.ConnectEmbedded(ctx, a.embedded, cfg, a.logger)
	} else {
		a.nats, err = natsadapter.Connect(ctx, cfg, a.logger)
	}
	if err != nil {
		return err
	}
	a.onClose(a.nats.Close)
	return a.nats.EnsureStream(ctx)
}

// buildBridges sets up one bridge per database: nats-distributed reads the
// [database] change log, multi-database each [[databases]] entry (the
// event's source is the entry's name).
func (a *App) buildBridges(ctx context.Context) error {
	pub := natsadapter.NewPublisher(a.nats)
	if a.cfg.Topology == config.TopologyNATSDistributed {
		return a.addBridge(ctx, "default", "", a.db, pub)
	}
	for i, d := range a.cfg.Databases {
		url := d.URL
		if d.URLEnv != "" {
			v, ok := a.env(d.URLEnv)
			if !ok || v == "" {
				return &config.ConfigError{File: a.cfg.File, Key: fmt.Sprintf("databases[%d].url_env", i), Msg: "environment variable " + d.URLEnv + " is not set"}
			}
			url = v
		}
		dbCfg := a.cfg.Database
		dbCfg.URL = url
		db, err := Connect(ctx, dbCfg, a.logger.With(slog.String("database", d.Name)))
		if err != nil {
			return fmt.Errorf("databases[%d] (%s): %w", i, d.Name, err)
		}
		a.onClose(db.Close)
		if dbCfg.MigrateOnStart {
			if err := migrateDB(ctx, db, dbCfg, a.logger.With(slog.String("database", d.Name))); err != nil {
				return fmt.Errorf("databases[%d] (%s): %w", i, d.Name, err)
			}
		}
		if err := a.addBridge(ctx, d.Name, d.Name, db, pub); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) addBridge(_ context.Context, name, source string, db *postgres.DB, pub ports.EventPublisher) error {
	dbc := a.cfg.Database
	cl, err := postgres.NewChangeLog(db.Pool, postgres.ChangeLogConfig{
		Table: dbc.ChangeLogTable, Channel: dbc.NotifyChannel, PollInterval: dbc.PollInterval, Source: source,
	}, a.logger.With(slog.String("bridge", name)))
	if err != nil {
		return err
	}
	a.onClose(cl.Close)
	cps, err := postgres.NewCheckpoints(db.Pool, dbc.ObserverSchema)
	if err != nil {
		return err
	}
	dlq, err := postgres.NewDeadLetters(db.Pool, dbc.ObserverSchema)
	if err != nil {
		return err
	}
	lease, err := postgres.NewLease(db.Pool, dbc.ObserverSchema)
	if err != nil {
		return err
	}
	bridge, err := application.NewBridge(pub, dlq, application.BridgeConfig{Logger: a.logger.With(slog.String("bridge", name)), Metrics: a.metrics})
	if err != nil {
		return err
	}
	reader, err := application.NewReader(cl, cps, bridge, a.readerConfig("bridge:"+name))
	if err != nil {
		return err
	}
	a.bridges = append(a.bridges, &bridgeUnit{name: name, log: cl, reader: reader, lease: lease, bridge: bridge})
	return nil
}

// buildWorker sets up the JetStream consumer and the worker.
func (a *App) buildWorker(ctx context.Context) error {
	maxDeliver := a.cfg.NATS.Consumer.MaxDeliver
	for _, o := range a.processor.Matcher().Observers() {
		if o.Retry.MaxAttempts > maxDeliver {
			a.logger.Warn("observer retries more often than the consumer delivers: its actions are dead-lettered after nats.consumer.max_deliver deliveries",
				slog.String("observer", o.Name), slog.Int("retry.max_attempts", o.Retry.MaxAttempts),
				slog.Int("nats.consumer.max_deliver", maxDeliver))
		}
	}
	consumer, err := natsadapter.NewConsumer(ctx, a.nats)
	if err != nil {
		return err
	}
	a.worker, err = application.NewWorker(consumer, a.runProc, a.deadLetters, application.WorkerConfig{
		Concurrency:        a.maxConcurrent(),
		InProgressInterval: max(a.cfg.NATS.Consumer.AckWait/3, 500*time.Millisecond),
		Logger:             a.logger,
	})
	return err
}
