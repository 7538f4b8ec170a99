package bootstrap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/httpguard"
	"github.com/fraiseql/fraiseql-observer/adapters/logaction"
	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	redisadapter "github.com/fraiseql/fraiseql-observer/adapters/redis"
	"github.com/fraiseql/fraiseql-observer/adapters/slack"
	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// App is the composition root: it builds one topology from a config.Config, runs
// it and closes what it opened in reverse order. Integration tests start
// the real service through it.
type App struct {
	cfg     config.Config
	logger  *slog.Logger
	metrics *promadapter.Metrics
	env     func(string) (string, bool)
	holder  string

	db          *postgres.DB // the observer's own database (state, dead letters)
	changeLog   *postgres.ChangeLog
	memSource   *memory.Source
	source      ports.EventSource
	checkpoints ports.CheckpointStore
	deadLetters ports.DeadLetterStore
	dlqCount    func(context.Context) (int64, error)
	lease       ports.Lease

	redis    *redisadapter.Client
	nats     *natsadapter.Conn
	embedded *natsadapter.Embedded

	dispatcher *application.Dispatcher
	processor  *application.Processor
	runProc    application.RunProcessor
	reader     *application.Reader
	bridges    []*bridgeUnit
	worker     *application.Worker

	httpLn  net.Listener
	httpSrv *http.Server

	mu      sync.Mutex
	closers []func()
}

// Options carries what the process hands the composition root.
type Options struct {
	Logger *slog.Logger
	// LookupEnv resolves *_env secrets (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
}

// New builds the topology cfg names. It connects to the databases
// (retrying with backoff while one is unreachable, until ctx ends),
// migrates when database.migrate_on_start is set, connects to Redis and
// NATS when the topology uses them, and opens the admin HTTP listener. The
// returned App must be closed.
func New(ctx context.Context, cfg config.Config, opts Options) (_ *App, err error) {
	if opts.Logger == nil {
		return nil, errors.New("bootstrap: logger is required")
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	a := &App{cfg: cfg, logger: opts.Logger, metrics: promadapter.New(), env: opts.LookupEnv, holder: holderName()}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	observers, err := config.LoadObservers(cfg, opts.LookupEnv)
	if err != nil {
		return nil, err
	}
	if len(observers) == 0 && a.runsWorker() {
		a.logger.Warn("no observers configured: events will be consumed without actions")
	}

	switch {
	case cfg.Topology == config.TopologyMemory:
		if err := a.openMemory(ctx); err != nil {
			return nil, err
		}
	case cfg.Topology == config.TopologyMultiDatabase && cfg.Role == config.RoleBridge:
		// A bridge-only process keeps its state in the source databases.
	default:
		if err := a.openStateDB(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Redis.Configured() {
		if err := a.openRedis(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Topology.Distributed() {
		// Before the executors: nats actions publish on this connection.
		if err := a.openNATS(ctx); err != nil {
			return nil, err
		}
	}
	if err := a.buildProcessor(observers); err != nil {
		return nil, err
	}

	switch cfg.Topology {
	case config.TopologyMemory, config.TopologyPostgresOnly, config.TopologyPostgresRedis:
		if a.source == nil {
			if err := a.openChangeLog(); err != nil {
				return nil, err
			}
		}
		if err := a.buildLocalReader(); err != nil {
			return nil, err
		}
	case config.TopologyNATSDistributed, config.TopologyMultiDatabase:
		if a.runsBridge() {
			if err := a.buildBridges(ctx); err != nil {
				return nil, err
			}
		}
		if a.runsWorker() {
			if err := a.buildWorker(ctx); err != nil {
				return nil, err
			}
		}
	}
	if err := a.listenHTTP(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *App) runsBridge() bool {
	return a.cfg.Role.RunsBridge()
}

func (a *App) runsWorker() bool {
	return a.cfg.Role.RunsWorker()
}

// buildProcessor stacks executors and processor decorators from config:
// Dedup(Processor(CachingExecutor(Dispatcher))).
func (a *App) buildProcessor(observers []domain.Observer) error {
	if a.deadLetters == nil {
		return nil // a bridge-only process runs no actions
	}
	dispatcher, err := a.executors()
	if err != nil {
		return err
	}
	a.dispatcher = dispatcher
	if err := a.checkSupported(observers); err != nil {
		return err
	}
	var exec ports.ActionExecutor = dispatcher
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
	a.processor, err = application.NewProcessor(domain.NewMatcher(observers), application.ProcessorConfig{
		Executor: exec, DeadLetters: a.deadLetters, Metrics: a.metrics, Logger: a.logger,
	})
	if err != nil {
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
	return nil
}

func (a *App) maxConcurrent() int {
	if !a.cfg.Performance.EnableConcurrent {
		return 1
	}
	return a.cfg.Performance.MaxConcurrentActions
}

func (a *App) buildLocalReader() error {
	scheduler, err := application.NewScheduler(a.runProc, application.SchedulerConfig{
		MaxConcurrent: a.maxConcurrent(), Logger: a.logger,
	})
	if err != nil {
		return err
	}
	a.reader, err = application.NewReader(a.source, a.checkpoints, scheduler, a.readerConfig(a.cfg.Reader.Name))
	return err
}

func (a *App) readerConfig(name string) application.ReaderConfig {
	return application.ReaderConfig{
		Name:               name,
		BatchSize:          a.cfg.Reader.BatchSize,
		MaxInFlight:        a.cfg.Reader.MaxInFlight,
		CheckpointInterval: a.cfg.Reader.CheckpointInterval,
		Logger:             a.logger,
		Metrics:            a.metrics,
	}
}

func (a *App) onClose(f func()) {
	a.mu.Lock()
	a.closers = append(a.closers, f)
	a.mu.Unlock()
}

// Close releases everything New opened, in reverse order. Safe to call
// more than once.
func (a *App) Close() {
	a.mu.Lock()
	closers := a.closers
	a.closers = nil
	a.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}

// Processor exposes the processor (the admin API and tests use it).
func (a *App) Processor() *application.Processor { return a.processor }

// Reader exposes the reader's status.
func (a *App) Reader() *application.Reader { return a.reader }

// HTTPAddr is the admin server's address ("" when disabled).
func (a *App) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// MemorySource is the in-memory source of the memory topology (nil
// otherwise).
func (a *App) MemorySource() *memory.Source { return a.memSource }

func (a *App) openMemory(ctx context.Context) error {
	src, err := memory.NewSource(time.Now, memory.SourceConfig{PollInterval: a.cfg.Database.PollInterval})
	if err != nil {
		return err
	}
	a.memSource = src
	a.source = src
	a.checkpoints = memory.NewCheckpoints()
	dl := memory.NewDeadLetters(time.Now)
	a.deadLetters = dl
	a.dlqCount = dl.Count
	a.lease = memory.NewLease(time.Now)
	if f := a.cfg.Memory.EventsFile; f != "" {
		fh, err := os.Open(f)
		if err != nil {
			return &config.ConfigError{Key: "memory.events_file", Msg: err.Error()}
		}
		defer fh.Close()
		n, err := a.memSource.LoadJSONLines(ctx, fh)
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
	if a.checkpoints, err = postgres.NewCheckpoints(d.Pool, db.ObserverSchema); err != nil {
		return err
	}
	dl, err := postgres.NewDeadLetters(d.Pool, db.ObserverSchema)
	if err != nil {
		return err
	}
	a.deadLetters = dl
	a.dlqCount = dl.Count
	a.lease, err = postgres.NewLease(d.Pool, db.ObserverSchema)
	return err
}

func migrateDB(ctx context.Context, d *postgres.DB, db config.DatabaseConfig, logger *slog.Logger) error {
	if err := postgres.Migrate(ctx, d.Pool, postgres.MigrateConfig{
		ChangeLogTable: db.ChangeLogTable, Channel: db.NotifyChannel, ObserverSchema: db.ObserverSchema, Logger: logger,
	}); err != nil {
		return fmt.Errorf("migrate on start: %w", err)
	}
	return nil
}

// openChangeLog makes the state database's change log the event source.
func (a *App) openChangeLog() error {
	db := a.cfg.Database
	cl, err := postgres.NewChangeLog(a.db.Pool, postgres.ChangeLogConfig{
		Table: db.ChangeLogTable, Channel: db.NotifyChannel, PollInterval: db.PollInterval,
	}, a.logger)
	if err != nil {
		return err
	}
	a.changeLog = cl
	a.onClose(cl.Close)
	a.source = cl
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

// checkSupported refuses observers whose actions have no executor in this
// process. config.LoadObservers already refused actions whose service the
// configuration lacks (checkAvailable), with the key to set; this catches
// an executor that the wiring below failed to register.
func (a *App) checkSupported(obs []domain.Observer) error {
	for _, o := range obs {
		for i, act := range o.Actions {
			if !a.dispatcher.Supports(act.Type) {
				return &config.ConfigError{File: a.cfg.File, Key: fmt.Sprintf("observers (%q).actions[%d]", o.Name, i),
					Msg: fmt.Sprintf("action type %s is not available in topology %s", act.Type, a.cfg.Topology)}
			}
		}
	}
	return nil
}

func (a *App) executors() (*application.Dispatcher, error) {
	policy, err := httpguard.ParsePolicy(a.cfg.Security.AllowPrivateNetworks, a.cfg.Security.AllowedNetworks)
	if err != nil {
		return nil, &config.ConfigError{Key: "security.allowed_networks", Msg: err.Error()}
	}
	wh, err := webhook.NewExecutor(webhook.Config{Policy: policy}, a.logger)
	if err != nil {
		return nil, err
	}
	a.onClose(wh.Close)
	executors := map[domain.ActionType]ports.ActionExecutor{
		domain.ActionWebhook: wh,
		domain.ActionLog:     logaction.NewExecutor(a.logger),
		domain.ActionSlack:   slack.NewExecutor(wh, a.logger),
	}
	if a.redis != nil {
		executors[domain.ActionCache] = redisadapter.NewInvalidator(a.redis, a.logger)
	}
	if a.db != nil {
		executors[domain.ActionDatabase] = postgres.NewFunctionCaller(a.db.Pool)
	}
	if a.nats != nil {
		executors[domain.ActionNATS] = natsadapter.NewActionPublisher(a.nats)
	}
	return application.NewDispatcher(executors), nil
}

// Run runs the service until ctx ends: the reader (under the lease, so one
// replica reads at a time), the admin HTTP server and the gauges' poller.
// On shutdown it stops reading, lets in-flight actions finish (bounded),
// saves the checkpoint and returns.
func (a *App) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if a.httpSrv != nil {
		wg.Go(func() {
			if err := a.httpSrv.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.logger.Error("admin http server stopped", slog.String("error", err.Error()))
			}
		})
		a.logger.Info("admin http listening", slog.String("addr", a.HTTPAddr()))
	}
	wg.Go(func() { a.pollGauges(ctx) })

	// The workloads of this topology and role run side by side; the first
	// error stops them all.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2+len(a.bridges))
	var runners sync.WaitGroup
	run := func(f func(context.Context) error) {
		runners.Go(func() {
			if err := f(rctx); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	if a.reader != nil {
		run(func(ctx context.Context) error {
			return application.RunWithLease(ctx, a.lease, application.LeaseConfig{
				Name: "reader:" + a.cfg.Reader.Name, Holder: a.holder, TTL: a.cfg.Reader.LeaseTTL, Logger: a.logger,
			}, a.reader.Run)
		})
	}
	for _, b := range a.bridges {
		run(func(ctx context.Context) error {
			return application.RunWithLease(ctx, b.lease, application.LeaseConfig{
				Name: "bridge:" + b.name, Holder: a.holder, TTL: a.cfg.Reader.LeaseTTL, Logger: a.logger,
			}, b.reader.Run)
		})
	}
	if a.worker != nil {
		run(a.worker.Run)
	}
	runners.Wait()
	var err error
	select {
	case err = <-errs:
	default:
	}

	if a.httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = a.httpSrv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	return err
}

// pollGauges refreshes the gauges that need a query: backlog, dead-letter
// count and the oldest open transaction.
func (a *App) pollGauges(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if a.dlqCount != nil {
			if n, err := a.dlqCount(qctx); err == nil {
				a.metrics.SetDLQItems(n)
			}
		}
		var backlog int64
		var oldest time.Duration
		for _, src := range a.changeLogs() {
			if n, err := src.log.Backlog(qctx, src.reader.Status().Saved); err == nil {
				backlog += n
			}
			if d, err := src.log.OldestTransactionAge(qctx); err == nil {
				oldest = max(oldest, d)
			}
		}
		a.metrics.SetBacklog(backlog)
		a.metrics.SetOldestTransactionAge(oldest)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func holderName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Reload re-reads the observers (main file's inline observers as loaded at
// start, plus observers_file as it is now) and swaps them in. Events
// already started keep the observers they matched; nothing is dropped. On
// error the running observers stay.
func (a *App) Reload() error {
	if a.processor == nil {
		a.logger.Info("reload: this process runs no observers (bridge role)")
		return nil
	}
	obs, err := config.LoadObservers(a.cfg, a.env)
	if err == nil {
		err = a.checkSupported(obs)
	}
	if err != nil {
		a.logger.Error("observer reload failed; keeping the running observers", slog.String("error", err.Error()))
		return err
	}
	a.processor.SetMatcher(domain.NewMatcher(obs))
	a.logger.Info("observers reloaded", slog.Int("observers", len(obs)))
	return nil
}
