package bootstrap

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// This file wires the NATS topologies: bridges (change log to JetStream)
// and the worker (JetStream to actions).

// bridgeUnit is one database's bridge: its change log, state store and
// reader.
type bridgeUnit struct {
	name   string
	db     *postgres.DB
	log    *postgres.ChangeLog
	store  *admin.Store
	reader *application.Reader
	bridge *application.Bridge
	lease  application.LeaseStatus // whether its lease can be asked for (readiness)
}

// buildDistributed sets up what the role runs: the bridges and the worker.
func (a *App) buildDistributed(ctx context.Context) error {
	if a.cfg.Role.RunsBridge() {
		if err := a.buildBridges(ctx); err != nil {
			return err
		}
	}
	if a.cfg.Role.RunsWorker() {
		return a.buildWorker(ctx)
	}
	return nil
}

// buildBridges sets up one bridge per database: nats-distributed reads the
// [database] change log (its checkpoint and lease: bridge:default),
// multi-database each [[databases]] entry (the event's source and the
// bridge's name are the entry's name).
func (a *App) buildBridges(ctx context.Context) error {
	pub := natsadapter.NewPublisher(a.nats)
	if a.cfg.Topology == config.TopologyNATSDistributed {
		return a.addBridge(ctx, "default", "", a.db, a.primary, pub)
	}
	for i, d := range a.cfg.Databases {
		url, err := stores.SourceURL(a.cfg, a.env, i)
		if err != nil {
			return err
		}
		dbCfg := a.cfg.Database
		dbCfg.URL = url
		log := a.logger.With(slog.String("database", d.Name))
		db, err := stores.Connect(ctx, dbCfg, log)
		if err != nil {
			return fmt.Errorf("databases[%d] (%s): %w", i, d.Name, err)
		}
		a.onClose(db.Close)
		if dbCfg.MigrateOnStart {
			if err := stores.MigrateOnStart(ctx, db, dbCfg, true, log); err != nil { // this bridge reads it
				return fmt.Errorf("databases[%d] (%s): %w", i, d.Name, err)
			}
		}
		store, _, err := stores.Source(a.cfg, db, d.Name, url)
		if err != nil {
			return err
		}
		if err := a.addBridge(ctx, d.Name, d.Name, db, store, pub); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) addBridge(ctx context.Context, name, source string, db *postgres.DB, store *admin.Store, pub ports.EventPublisher) error {
	dbc := a.cfg.Database
	log := a.logger.With(slog.String("bridge", name))
	cl, err := postgres.NewChangeLog(ctx, db.Pool, postgres.ChangeLogConfig{
		Table: dbc.ChangeLogTable, Channel: dbc.NotifyChannel, PollInterval: dbc.PollInterval, Source: source,
		MaxEventBytes: a.cfg.Reader.MaxEventBytes, PollOnly: dbc.Wake == config.WakePoll,
	}, log)
	if err != nil {
		return err
	}
	a.onClose(cl.Close)
	bridge, err := application.NewBridge(pub, store.DeadLetters, application.BridgeConfig{Logger: log, Metrics: a.metrics})
	if err != nil {
		return err
	}
	var handler application.Handler = bridge
	if a.tracer != nil {
		if handler, err = application.NewTracedHandler(bridge, a.tracer); err != nil {
			return err
		}
	}
	reader, err := application.NewReader(cl, store.Checkpoints, handler, a.readerConfig("bridge:"+name, "bridge:"+name))
	if err != nil {
		return err
	}
	a.bridges = append(a.bridges, &bridgeUnit{name: name, db: db, log: cl, store: store, reader: reader, bridge: bridge})
	return nil
}

// buildWorker sets up the JetStream consumer and the worker.
func (a *App) buildWorker(ctx context.Context) error {
	maxDeliver := a.cfg.NATS.Consumer.MaxDeliver
	for _, o := range a.processor.Matcher().Observers() {
		if o.Retry.InMemoryAttempts > maxDeliver {
			a.logger.Warn("observer makes more in-memory attempts than the consumer delivers: its unfinished actions are parked for retry at delivery nats.consumer.max_deliver",
				slog.String("observer", o.Name), slog.Int("retry.in_memory_attempts", o.Retry.InMemoryAttempts),
				slog.Int("nats.consumer.max_deliver", maxDeliver))
		}
	}
	consumer, err := natsadapter.NewConsumer(ctx, a.nats)
	if err != nil {
		return err
	}
	a.worker, err = application.NewWorker(consumer, a.runProc, a.primary.DeadLetters, application.WorkerConfig{
		Concurrency:        a.maxConcurrent(),
		Batch:              a.dedupBatch(),
		InProgressInterval: max(a.cfg.NATS.Consumer.AckWait/3, 500*time.Millisecond),
		Unwanted:           a.processor.Unwanted,
		Logger:             a.logger,
		Metrics:            a.metrics,
	})
	return err
}
