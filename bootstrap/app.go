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
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// App is the composition root: it builds one topology from a Config, runs
// it and closes what it opened in reverse order. Integration tests start
// the real service through it.
type App struct {
	cfg     Config
	logger  *slog.Logger
	metrics *promadapter.Metrics
	env     func(string) (string, bool)

	db          *postgres.DB
	changeLog   *postgres.ChangeLog
	memSource   *memory.Source
	source      ports.EventSource
	checkpoints ports.CheckpointStore
	deadLetters ports.DeadLetterStore
	dlqCount    func(context.Context) (int64, error)
	lease       ports.Lease

	dispatcher *application.Dispatcher
	processor  *application.Processor
	scheduler  *application.Scheduler
	reader     *application.Reader
	holder     string

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

// New builds the topology cfg names. For topologies with a database it
// connects (retrying with backoff while the database is unreachable, until
// ctx ends), migrates when database.migrate_on_start is set, and opens the
// admin HTTP listener. The returned App must be closed.
func New(ctx context.Context, cfg Config, opts Options) (_ *App, err error) {
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
	observers, err := LoadObservers(cfg, opts.LookupEnv)
	if err != nil {
		return nil, err
	}
	if len(observers) == 0 {
		a.logger.Warn("no observers configured: events will be read and checkpointed without actions")
	}

	switch cfg.Topology {
	case TopologyMemory:
		if err := a.openMemory(ctx); err != nil {
			return nil, err
		}
	case TopologyPostgresOnly:
		if err := a.openPostgres(ctx); err != nil {
			return nil, err
		}
	default:
		return nil, &ConfigError{Key: "topology", Msg: fmt.Sprintf("%q is not available in this build", cfg.Topology)}
	}

	dispatcher, err := a.executors()
	if err != nil {
		return nil, err
	}
	a.dispatcher = dispatcher
	if err := a.checkSupported(observers); err != nil {
		return nil, err
	}
	a.processor, err = application.NewProcessor(domain.NewMatcher(observers), application.ProcessorConfig{
		Executor: dispatcher, DeadLetters: a.deadLetters, Metrics: a.metrics, Logger: a.logger,
	})
	if err != nil {
		return nil, err
	}
	a.scheduler, err = application.NewScheduler(a.processor, application.SchedulerConfig{
		MaxConcurrent: cfg.Performance.MaxConcurrentActions, Logger: a.logger,
	})
	if err != nil {
		return nil, err
	}
	a.reader, err = application.NewReader(a.source, a.checkpoints, a.scheduler, application.ReaderConfig{
		Name:               cfg.Reader.Name,
		BatchSize:          cfg.Reader.BatchSize,
		MaxInFlight:        cfg.Reader.MaxInFlight,
		CheckpointInterval: cfg.Reader.CheckpointInterval,
		Logger:             a.logger,
		Metrics:            a.metrics,
	})
	if err != nil {
		return nil, err
	}
	if err := a.listenHTTP(); err != nil {
		return nil, err
	}
	return a, nil
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
			return &ConfigError{Key: "memory.events_file", Msg: err.Error()}
		}
		defer fh.Close()
		n, err := a.memSource.LoadJSONLines(ctx, fh)
		if err != nil {
			return &ConfigError{File: f, Msg: err.Error()}
		}
		a.logger.Info("events loaded", slog.String("file", f), slog.Int("events", n))
	}
	return nil
}

func (a *App) openPostgres(ctx context.Context) error {
	d, err := Connect(ctx, a.cfg.Database, a.logger)
	if err != nil {
		return err
	}
	a.db = d
	a.onClose(d.Close)
	pool := d.Pool
	db := a.cfg.Database
	if db.MigrateOnStart {
		if err := postgres.Migrate(ctx, pool, postgres.MigrateConfig{
			ChangeLogTable: db.ChangeLogTable, Channel: db.NotifyChannel, ObserverSchema: db.ObserverSchema,
		}); err != nil {
			return fmt.Errorf("migrate on start: %w", err)
		}
		a.logger.Info("database migrated", slog.String("change_log_table", db.ChangeLogTable), slog.String("observer_schema", db.ObserverSchema))
	}
	cl, err := postgres.NewChangeLog(pool, postgres.ChangeLogConfig{
		Table: db.ChangeLogTable, Channel: db.NotifyChannel, PollInterval: db.PollInterval,
	}, a.logger)
	if err != nil {
		return err
	}
	a.changeLog = cl
	a.onClose(cl.Close)
	a.source = cl
	if a.checkpoints, err = postgres.NewCheckpoints(pool, db.ObserverSchema); err != nil {
		return err
	}
	dl, err := postgres.NewDeadLetters(pool, db.ObserverSchema)
	if err != nil {
		return err
	}
	a.deadLetters = dl
	a.dlqCount = dl.Count
	if a.lease, err = postgres.NewLease(pool, db.ObserverSchema); err != nil {
		return err
	}
	return nil
}

// Connect opens the database and waits until it answers, retrying with
// backoff (and logging each failure) until ctx ends.
func Connect(ctx context.Context, db DatabaseConfig, logger *slog.Logger) (*postgres.DB, error) {
	d, err := postgres.Open(ctx, postgres.PoolConfig{URL: db.URL, MaxConns: db.MaxConnections, ConnectTimeout: db.ConnectTimeout}, logger)
	var bad *postgres.ErrBadURL
	if errors.As(err, &bad) {
		return nil, &ConfigError{Key: "database.url", Msg: "cannot parse the connection string"}
	}
	return d, err
}

// checkSupported refuses observers whose actions have no executor in this
// topology (a cache action without Redis, say) at load time rather than
// dead-lettering every event at run time.
func (a *App) checkSupported(obs []domain.Observer) error {
	for _, o := range obs {
		for i, act := range o.Actions {
			if !a.dispatcher.Supports(act.Type) {
				return &ConfigError{File: a.cfg.File, Key: fmt.Sprintf("observers (%q).actions[%d]", o.Name, i),
					Msg: fmt.Sprintf("action type %s is not available in topology %s%s", act.Type, a.cfg.Topology, needs(act.Type))}
			}
		}
	}
	return nil
}

func needs(t domain.ActionType) string {
	if t == domain.ActionCache {
		return " without Redis (set redis.url)"
	}
	return ""
}

func (a *App) executors() (*application.Dispatcher, error) {
	policy, err := httpguard.ParsePolicy(a.cfg.Security.AllowPrivateNetworks, a.cfg.Security.AllowedNetworks)
	if err != nil {
		return nil, &ConfigError{Key: "security.allowed_networks", Msg: err.Error()}
	}
	wh, err := webhook.NewExecutor(webhook.Config{Policy: policy}, a.logger)
	if err != nil {
		return nil, err
	}
	a.onClose(wh.Close)
	return application.NewDispatcher(map[domain.ActionType]ports.ActionExecutor{
		domain.ActionWebhook: wh,
		domain.ActionLog:     logaction.NewExecutor(a.logger),
	}), nil
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

	err := application.RunWithLease(ctx, a.lease, application.LeaseConfig{
		Name: "reader:" + a.cfg.Reader.Name, Holder: a.holder, TTL: a.cfg.Reader.LeaseTTL, Logger: a.logger,
	}, a.reader.Run)

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
		if n, err := a.dlqCount(qctx); err == nil {
			a.metrics.SetDLQItems(n)
		}
		if a.changeLog != nil {
			if n, err := a.changeLog.Backlog(qctx, a.reader.Status().Saved); err == nil {
				a.metrics.SetBacklog(n)
			}
			if d, err := a.changeLog.OldestTransactionAge(qctx); err == nil {
				a.metrics.SetOldestTransactionAge(d)
			}
		}
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
