// Package bootstrap is the composition root: it builds one topology from a
// configuration (App: New, Run, Close), and holds the migrate and watch
// commands. Its subpackages are the root's other rooms: the state stores
// (stores), the action executors and previewers (actions), the one-shot
// commands (operate), observability (telemetry) and the configuration
// (config). Only the composition root knows which adapters make up a
// topology.
package bootstrap

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	oteladapter "github.com/fraiseql/fraiseql-observer/adapters/otel"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	redisadapter "github.com/fraiseql/fraiseql-observer/adapters/redis"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
	"github.com/fraiseql/fraiseql-observer/bootstrap/telemetry"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// App is the composition root: it builds one topology from a Config, runs
// it and closes what it opened in reverse order. Integration tests start
// the real service through it.
type App struct {
	cfg    config.Config
	logger *slog.Logger
	// reloadMu makes reloads one at a time; startObservers are the
	// observers the workers were sized for (maxConcurrent).
	reloadMu       sync.Mutex
	startObservers []domain.Observer
	metrics        *promadapter.Metrics
	env            func(string) (string, bool)
	holder         string
	readiness      *telemetry.Readiness // /readyz's check of the dependencies

	db          *postgres.DB // the observer's own database (state, dead letters)
	changeLog   *postgres.ChangeLog
	memSource   *memory.Source
	source      ports.EventSource
	primary     *admin.Store // the state store: checkpoints, leases, dead letters
	dlqCount    ports.DeadLetterCounter
	redis       *redisadapter.Client
	nats        *natsadapter.Conn
	dispatcher  *application.Dispatcher
	exec        ports.ActionExecutor // the processor's executor stack
	processor   *application.Processor
	runProc     application.RunProcessor
	reader      *application.Reader
	readerLease application.LeaseStatus // whether the reader's lease can be asked for (readiness)
	pauser      *application.Pauser     // memory topology: replay pauses the reader
	bridges     []*bridgeUnit
	worker      *application.Worker
	retention   []retentionJob
	tracer      *oteladapter.Tracer // nil when tracing is off
	state       *admin.State
	deadLetters *admin.DeadLetters

	// durable delivery (durable.go)
	retries     ports.RetryStore
	blocked     *application.BlockedKeys
	guard       *application.EndpointGuard
	deliveryLog ports.DeliveryLog
	writer      *application.DeliveryWriter
	reporter    *application.EndpointReporter
	deliveries  *admin.Deliveries
	resend      *admin.Resend
	delivery    *promadapter.DeliveryMetrics
	runner      *application.RetryRunner
	maintenance *application.Maintenance

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
	// Version is the build's version (fraiseql_observer_build_info, the
	// traces' service.version).
	Version string
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
	a := &App{cfg: cfg, logger: opts.Logger, metrics: promadapter.New(promadapter.BuildInfo{Version: opts.Version}), env: opts.LookupEnv, holder: stores.HolderName(),
		readiness: telemetry.NewReadiness(opts.Logger)}
	a.delivery = promadapter.NewDeliveryMetrics(a.metrics.Registry())
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	observers, err := actions.LoadObservers(cfg, opts.LookupEnv)
	if err != nil {
		return nil, err
	}
	if len(observers) == 0 && cfg.Role.RunsWorker() {
		a.logger.Warn("no observers configured: events will be consumed without actions")
	}
	a.warnUnusedOverrides(observers)

	if err := a.startTracing(ctx, opts.Version); err != nil {
		return nil, err
	}
	switch {
	case cfg.Topology == config.TopologyMemory:
		err = a.useState(stores.OpenMemory(ctx, cfg, a.logger))
	case cfg.Topology == config.TopologyMultiDatabase && cfg.Role == config.RoleBridge:
		// A bridge-only process keeps its state in the source databases.
	default:
		err = a.useState(stores.OpenDatabase(ctx, cfg, a.logger))
	}
	if err != nil {
		return nil, err
	}
	if cfg.Redis.Configured() {
		if a.redis, err = stores.ConnectRedis(ctx, cfg, a.env, a.logger); err != nil {
			return nil, err
		}
		a.onClose(func() { _ = a.redis.Close() })
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
	if cfg.Topology.Distributed() {
		err = a.buildDistributed(ctx)
	} else {
		err = a.buildLocalReader(ctx)
	}
	if err != nil {
		return nil, err
	}
	if err := a.buildRetention(); err != nil {
		return nil, err
	}
	a.buildAdmin()
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

// Run runs the service until ctx ends: the reader (under the lease, so one
// replica reads at a time), the admin HTTP server and the gauges' poller.
// On shutdown it stops reading, lets in-flight actions finish (bounded),
// saves the checkpoint and returns.
func (a *App) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	// The admin requests' context ends when the workloads have stopped,
	// right before the server's Shutdown: during the drain the admin API
	// still serves (status, dlq list), and a request still in progress
	// then (a retry-all, replay or resend) stops and answers with what it
	// did instead of running on while the stores close under it.
	reqCtx, endRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer endRequests()
	if a.httpSrv != nil {
		a.httpSrv.BaseContext = func(net.Listener) context.Context { return reqCtx }
		wg.Go(func() {
			if err := a.httpSrv.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.logger.Error("admin http server stopped", slog.String("error", err.Error()))
			}
		})
		a.logger.Info("admin http listening", slog.String("addr", a.HTTPAddr()))
	}
	wg.Go(func() { a.gauges().Run(ctx) })

	// The workloads of this topology and role run side by side; the first
	// error stops them all.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 4+len(a.bridges)+len(a.retention))
	stopWriter := a.startWriter(ctx)
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
		lease, work := ports.Lease(a.primary.Leases), a.leaseWork
		if a.pauser != nil {
			lease, work = a.pauser.Lease(), a.pauser.Work(work)
		}
		run(func(ctx context.Context) error {
			return application.RunWithLease(ctx, lease, application.LeaseConfig{
				Name: "reader:" + a.cfg.Reader.Name, Holder: a.holder, TTL: a.cfg.Reader.LeaseTTL, Logger: a.logger,
				Status: &a.readerLease,
			}, work)
		})
	}
	for _, b := range a.bridges {
		run(func(ctx context.Context) error {
			return application.RunWithLease(ctx, b.store.Leases, application.LeaseConfig{
				Name: "bridge:" + b.name, Holder: a.holder, TTL: a.cfg.Reader.LeaseTTL, Logger: a.logger,
				Status: &b.lease,
			}, b.reader.Run)
		})
	}
	if a.worker != nil {
		run(a.worker.Run)
		a.runDistributedRetries(run)
	}
	a.runRetention(run)
	runners.Wait()
	stopWriter() // after the workloads: their last attempts are recorded
	var err error
	select {
	case err = <-errs:
	default:
	}

	if a.httpSrv != nil {
		endRequests()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = a.httpSrv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	return err
}
