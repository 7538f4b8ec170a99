package bootstrap

import (
	"context"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	redisadapter "github.com/fraiseql/fraiseql-observer/adapters/redis"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// This file wires what every topology shares: the state store, NATS, the
// action executors and the processor stack.

// useState takes the primary state a stores.Open* call opened.
func (a *App) useState(st *stores.State, err error) error {
	if err != nil {
		return err
	}
	if st.DB != nil {
		a.db = st.DB
		a.onClose(st.DB.Close)
	}
	if st.Memory != nil {
		a.memSource, a.source = st.Memory, st.Memory
	}
	a.primary, a.dlqCount, a.retries, a.deliveryLog = st.Store, st.DeadLetters, st.Retries, st.DeliveryLog
	return nil
}

// openNATS connects to NATS (nats actions publish on it, bridges and the
// worker use it); what it opens is closed with the App.
func (a *App) openNATS(ctx context.Context) (err error) {
	a.nats, err = stores.OpenNATS(ctx, a.cfg, a.holder, a.logger, a.onClose)
	return err
}

// buildProcessor stacks executors and processor decorators from config:
// Dedup(Processor(CachingExecutor(DeliveryRecorder(Batcher(EndpointGuard(
// Dispatcher)))))), and the retry runner over the same executors.
func (a *App) buildProcessor(observers []domain.Observer) error {
	if a.primary == nil {
		return nil // a bridge-only process runs no actions
	}
	dispatcher, closeExec, err := actions.Build(a.cfg, a.env, a.logger, actions.Deps{DB: a.db, Redis: a.redis, NATS: a.nats, Propagate: a.propagate()})
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
	// Batched webhook actions: one request per batch, through the guard
	// (one attempt per batch), recorded and cached per event above it.
	if exec, err = application.NewBatcher(exec, application.BatcherConfig{Bodies: dispatcher, Logger: a.logger}); err != nil {
		return err
	}
	if exec, err = a.recorded(exec); err != nil {
		return err
	}
	perf := a.cfg.Performance
	var caching *application.CachingExecutor
	if perf.EnableCaching {
		var cache ports.ResultCache = memory.NewResultCache(time.Now)
		if a.redis != nil {
			cache = redisadapter.NewResultCache(a.redis)
		}
		if caching, err = application.NewCachingExecutor(exec, cache, application.CacheConfig{
			TTL: a.cfg.Redis.CacheTTL, Logger: a.logger, Metrics: a.metrics,
		}); err != nil {
			return err
		}
		exec = caching
	}
	if a.tracer != nil {
		if exec, err = application.NewTracedExecutor(exec, a.tracer); err != nil {
			return err
		}
	}
	a.exec = exec
	pc := application.ProcessorConfig{Executor: exec, DeadLetters: a.primary.DeadLetters, Metrics: a.metrics, Logger: a.logger}
	a.durable(&pc)
	a.startObservers = observers
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
			Window: a.cfg.Redis.DedupWindow, Lease: a.cfg.Redis.DedupLease, Token: a.holder, Cache: caching,
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

// maxConcurrent is how many events run actions at once: the scheduler's
// (or the NATS worker's) workers. Each event in a forming batch holds a
// worker until its batch is answered, so batched actions add their
// max_events (observers as loaded at start), and a batch can fill while
// max_concurrent_actions events run the other actions.
func (a *App) maxConcurrent() int {
	if !a.cfg.Performance.EnableConcurrent {
		return 1
	}
	if a.processor == nil {
		return a.cfg.Performance.MaxConcurrentActions
	}
	return a.cfg.Performance.MaxConcurrentActions + batchWorkers(a.startObservers)
}

// batchWorkers is the workers observers' batched actions add: their
// max_events.
func batchWorkers(observers []domain.Observer) int {
	n := 0
	for _, o := range observers {
		for i := range o.Actions {
			if b := domain.BatchingOf(&o.Actions[i]); b != nil {
				n += b.MaxEvents
			}
		}
	}
	return n
}

// dedupBatchSize is how many events the scheduler (or the NATS worker)
// claims together ahead of their first step, and marks done together
// after their last, when dedup is on.
const dedupBatchSize = 128

// dedupBatch is the scheduler's and the worker's Batch: dedupBatchSize
// with dedup (its claims and done marks are what batching saves), else
// none (nothing to save, and one hand-over less per event).
func (a *App) dedupBatch() int {
	if a.cfg.Performance.EnableDedup {
		return dedupBatchSize
	}
	return 0
}

// observedEntities is what the local change-log reader returns: the
// entity types of the observers, or nil (every row) when one observes
// "*". Rows of other entities would match no observer.
func (a *App) observedEntities() []string {
	entities, every := a.processor.Matcher().Entities()
	if every {
		return nil
	}
	return entities
}

// buildLocalReader reads the change log (or the memory source) in this
// process and runs the actions here.
func (a *App) buildLocalReader(ctx context.Context) error {
	if a.source == nil {
		db := a.cfg.Database
		cl, err := postgres.NewChangeLog(ctx, a.db.Pool, postgres.ChangeLogConfig{
			Table: db.ChangeLogTable, Channel: db.NotifyChannel, PollInterval: db.PollInterval,
			MaxEventBytes: a.cfg.Reader.MaxEventBytes, PollOnly: db.Wake == config.WakePoll,
			Entities: a.observedEntities(),
		}, a.logger)
		if err != nil {
			return err
		}
		a.changeLog, a.source = cl, cl
		a.onClose(cl.Close)
	}
	scheduler, err := application.NewScheduler(a.runProc, application.SchedulerConfig{
		MaxConcurrent: a.maxConcurrent(), Logger: a.logger, Batch: a.dedupBatch(), Unwanted: a.processor.Unwanted,
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
		CoalesceWait:       a.cfg.Reader.CoalesceWait,
		CoalesceWaitMax:    a.cfg.Reader.CoalesceWaitMax,
		Logger:             a.logger,
		Metrics:            a.metrics,
	}
}
