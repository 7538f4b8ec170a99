package bootstrap

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// This file wires durable delivery: the retry store behind the
// processor, the retry runner and the maintenance loop.

// durable adds durable retries to the processor's configuration: after
// their in-memory attempts, unfinished actions park in the state store.
// In the local topologies the processor also holds an entity's later
// events behind its parked ones (the NATS topologies keep no order per
// entity).
func (a *App) durable(pc *application.ProcessorConfig) {
	if a.retries == nil {
		return
	}
	pc.Retries = a.retries
	if !a.cfg.Topology.Distributed() {
		a.blocked = application.NewBlockedKeys()
		pc.Blocked = a.blocked
	}
	pc.OnPark = a.wakeRunner
	pc.Endpoint = a.endpointOf
	pc.Delivery = a.delivery
}

// endpointOf names where an action delivers (actions.EndpointOf).
func (a *App) endpointOf(obs *domain.Observer, act *domain.Action) string {
	return actions.EndpointOf(a.cfg, obs, act)
}

// guarded puts the endpoint guard ([delivery]: circuit breaker, rate
// limit, concurrency cap per endpoint) in front of next.
func (a *App) guarded(next ports.ActionExecutor) (ports.ActionExecutor, error) {
	d := a.cfg.Delivery
	over := map[string]application.EndpointPolicy{}
	for name, l := range d.Overrides() {
		over[name] = endpointPolicy(l)
	}
	var onChange func(application.EndpointStatus)
	if a.primary != nil && a.primary.Endpoints != nil {
		r, err := application.NewEndpointReporter(a.primary.Endpoints, a.holder, a.logger, nil)
		if err != nil {
			return nil, err
		}
		a.reporter, onChange = r, r.Changed
	}
	var err error
	a.guard, err = application.NewEndpointGuard(next, application.EndpointGuardConfig{
		Default: endpointPolicy(d.Defaults()), Overrides: over, Endpoint: a.endpointOf,
		OnRecover: a.recovered, OnChange: onChange, Logger: a.logger, Metrics: a.delivery,
	})
	return a.guard, err
}

func endpointPolicy(l config.EndpointLimits) application.EndpointPolicy {
	return application.EndpointPolicy{BreakerFailures: l.BreakerFailures, ProbeInterval: l.ProbeInterval,
		Rate: float64(l.RateLimit), Burst: l.RateBurst, MaxConcurrent: l.MaxConcurrent}
}

// recovered makes the parked backlog of an endpoint that answers again
// (its circuit closed, or its first answer in this process) due now,
// whatever its backoff had reached, and wakes the runner.
func (a *App) recovered(ctx context.Context, endpoint string) {
	if a.retries == nil {
		return
	}
	n, err := a.retries.MakeDue(ctx, endpoint, time.Now())
	if err != nil {
		a.logger.Warn("cannot make the parked retries of a recovered endpoint due; they run at their own times",
			slog.String("endpoint", endpoint), slog.String("error", err.Error()))
		return
	}
	if n > 0 {
		a.logger.Info("parked retries of the recovered endpoint are due now", slog.String("endpoint", endpoint), slog.Int64("items", n))
		a.wakeRunner()
	}
}

// endpointHealth is the admin API's endpoint report (nil in a process
// that runs no actions).
func (a *App) endpointHealth() *admin.Endpoints {
	if a.guard == nil {
		return nil
	}
	e := &admin.Endpoints{Live: a.guard.Status}
	if a.primary != nil {
		e.Retries = a.primary.Retries
	}
	return e
}

func (a *App) wakeRunner() {
	if a.runner != nil {
		a.runner.Wake()
	}
}

// buildRunner builds the retry runner over the processor's executor stack
// and the maintenance loop.
func (a *App) buildRunner() error {
	if a.retries == nil || a.processor == nil {
		return nil
	}
	r := a.cfg.Retry
	var err error
	a.runner, err = application.NewRetryRunner(a.retries, a.exec, a.processor.Matcher, application.RetryRunnerConfig{
		Holder: a.holder, Concurrency: r.RunnerConcurrency, PollInterval: r.PollInterval, ClaimTTL: r.ClaimTTL,
		Blocked: a.blocked, Logger: a.logger, Metrics: a.metrics, Delivery: a.delivery, Skip: a.guard.Skip,
	})
	if err != nil {
		return err
	}
	mc := application.MaintenanceConfig{Retries: a.retries, Logger: a.logger}
	if a.deliveryLog != nil && a.db == nil {
		// The memory topology's delivery log; a database's is pruned by
		// retention (buildRetention), counted and shown by prune.
		mc.Deliveries, mc.Retention = a.deliveryLog, a.cfg.Delivery.LogRetention
	}
	a.maintenance, err = application.NewMaintenance(mc)
	return err
}

// recorded puts the delivery recorder (delivery.log = "failures" or
// "all") in front of next; its records are written in batches by the
// writer, which runs for the whole life of the process (startWriter).
func (a *App) recorded(next ports.ActionExecutor) (ports.ActionExecutor, error) {
	mode := a.cfg.Delivery.Log
	if mode == config.DeliveryLogOff || a.deliveryLog == nil {
		return next, nil
	}
	if a.writer == nil {
		var err error
		if a.writer, err = application.NewDeliveryWriter(a.deliveryLog, application.DeliveryWriterConfig{
			Logger: a.logger, Metrics: a.delivery,
		}); err != nil {
			return nil, err
		}
	}
	return application.NewDeliveryRecorder(next, a.writer, mode == config.DeliveryLogAll, a.endpointOf, nil)
}

// operatorExecutor runs what an operator asks for (dlq retry, resend):
// the dispatcher without the endpoint guard, its attempts recorded.
func (a *App) operatorExecutor() ports.ActionExecutor {
	exec, err := a.recorded(a.dispatcher)
	if err != nil {
		return a.dispatcher
	}
	return exec
}

// resender re-runs events for the admin API's resend, with the running
// observers and executors (ErrNoActions in a bridge-only process).
func (a *App) resender(context.Context) (*application.Resender, error) {
	if a.dispatcher == nil || a.processor == nil {
		return nil, admin.ErrNoActions
	}
	return &application.Resender{Executor: a.operatorExecutor(), Matcher: a.processor.Matcher}, nil
}

// startWriter runs the delivery-log writer and the endpoint reporter
// until the returned function is called (they then write what is queued
// and return).
func (a *App) startWriter(ctx context.Context) func() {
	var runs []func(context.Context) error
	if a.writer != nil {
		runs = append(runs, a.writer.Run)
	}
	if a.reporter != nil {
		runs = append(runs, a.reporter.Run)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = runAll(wctx, runs...)
	}()
	return func() {
		cancel()
		<-done
	}
}

// leaseWork is what a local topology runs while it holds the reader's
// lease: the parked keys are loaded first (the reader must not run an
// event ahead of its entity's parked ones), then the reader, the retry
// runner and the maintenance loop run side by side until ctx ends or one
// fails.
func (a *App) leaseWork(ctx context.Context) error {
	if a.blocked != nil {
		backoff := 100 * time.Millisecond
		for {
			err := a.blocked.Load(ctx, a.retries)
			if err == nil {
				break
			}
			a.logger.Warn("cannot load the parked keys, retrying before reading", slog.String("error", err.Error()))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}
	fns := []func(context.Context) error{a.reader.Run}
	if a.runner != nil {
		fns = append(fns, a.runner.Run, a.maintenance.Run)
	}
	return runAll(ctx, fns...)
}

// runAll runs fns side by side until ctx ends or one of them fails; the
// first error stops the others and is returned.
func runAll(ctx context.Context, fns ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, f := range fns {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				once.Do(func() { first = err })
				cancel()
			}
		})
	}
	wg.Wait()
	return first
}

// runDistributedRetries runs, in a NATS worker, the retry runner (workers
// share the parked items by claim) and the maintenance loop (one worker at
// a time, under the "maintenance" lease).
func (a *App) runDistributedRetries(run func(func(context.Context) error)) {
	if a.runner == nil {
		return
	}
	run(a.runner.Run)
	run(func(ctx context.Context) error {
		return application.RunWithLease(ctx, a.primary.Leases, application.LeaseConfig{
			Name: "maintenance", Holder: a.holder, TTL: a.cfg.Reader.LeaseTTL, Logger: a.logger,
		}, a.maintenance.Run)
	})
}
