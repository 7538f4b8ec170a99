package bootstrap

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// This file wires retention ([retention]): the rules of each database, the
// service's periodic prune (one per database, under the lease "retention"
// of that database, so that one replica prunes) and the prune command.

// retentionLease is the lease the service prunes a database under.
const retentionLease = "retention"

// retentionJob prunes one database.
type retentionJob struct {
	store     *admin.Store
	retention *admin.Retention
}

// retentionRules are the rules for the database db holding store; the
// change log is pruned only where this deployment reads it (changeLog),
// behind every checkpoint stored there.
func retentionRules(cfg config.Config, db *postgres.DB, store *admin.Store, changeLog bool) ([]admin.RetentionRule, error) {
	r := cfg.Retention
	var rules []admin.RetentionRule
	if r.ChangeLog > 0 && changeLog {
		p, err := postgres.NewChangeLogPruner(db.Pool, cfg.Database.ChangeLogTable)
		if err != nil {
			return nil, &config.ConfigError{File: cfg.File, Key: "database.change_log_table", Msg: err.Error()}
		}
		readers := make([]string, 0, len(store.Readers))
		for _, rd := range store.Readers {
			readers = append(readers, rd.Checkpoint)
		}
		rules = append(rules, admin.RetentionRule{Table: admin.TableChangeLog, Where: store.Name, Age: r.ChangeLog,
			Pruner: p, Checkpoints: store.Checkpoints, Readers: readers})
	}
	if r.DeadLetters > 0 {
		dl, err := postgres.NewDeadLetters(db.Pool, cfg.Database.ObserverSchema)
		if err != nil {
			return nil, err
		}
		rules = append(rules, admin.RetentionRule{Table: admin.TableDeadLetters, Where: store.Name, Age: r.DeadLetters, Pruner: dl})
	}
	// The delivery log's rule (its own age key and pruner) joins here when
	// the delivery log exists.
	return rules, nil
}

func newRetention(cfg config.Config, rules []admin.RetentionRule, logger *slog.Logger, m ports.RetentionMetrics) (*admin.Retention, error) {
	return admin.NewRetention(admin.RetentionConfig{
		Rules: rules, BatchSize: cfg.Retention.BatchSize, Logger: logger, Metrics: m,
	})
}

// buildRetention sets up the service's prune of each database this
// process keeps state in: the state database (its change log unless the
// sources are elsewhere) and, for multi-database bridges, each source.
func (a *App) buildRetention() error {
	if !a.cfg.Retention.Enabled() {
		return nil
	}
	metrics := promadapter.NewRetentionMetrics(a.metrics, admin.TableChangeLog, admin.TableDeadLetters)
	add := func(db *postgres.DB, store *admin.Store, changeLog bool) error {
		rules, err := retentionRules(a.cfg, db, store, changeLog)
		if err != nil || len(rules) == 0 {
			return err
		}
		r, err := newRetention(a.cfg, rules, a.logger.With(slog.String("database", store.Name)), metrics)
		if err != nil {
			return err
		}
		a.retention = append(a.retention, retentionJob{store: store, retention: r})
		return nil
	}
	if a.db != nil && a.primary != nil {
		if err := add(a.db, a.primary, a.cfg.Topology != config.TopologyMultiDatabase); err != nil {
			return err
		}
	}
	for _, b := range a.bridges {
		if b.store != a.primary {
			if err := add(b.db, b.store, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// runRetention starts each database's periodic prune under its lease.
func (a *App) runRetention(run func(func(context.Context) error)) {
	for _, job := range a.retention {
		run(func(ctx context.Context) error {
			return application.RunWithLease(ctx, job.store.Leases, application.LeaseConfig{
				Name: retentionLease, Holder: a.holder, TTL: a.cfg.Reader.LeaseTTL, Logger: a.logger,
			}, func(ctx context.Context) error { return job.retention.Run(ctx, a.cfg.Retention.Interval) })
		})
	}
}

// Prune applies [retention] once to every database of the configuration
// (the prune command); with dryRun it only counts. progress hears each
// batch.
func (o *Operator) Prune(ctx context.Context, dryRun bool, progress func(admin.PruneProgress)) (admin.PruneReport, error) {
	if !o.cfg.Retention.Enabled() {
		return admin.PruneReport{}, &config.ConfigError{File: o.cfg.File, Key: "retention",
			Msg: "sets no age: nothing to prune (set retention.change_log and/or retention.dead_letters)"}
	}
	if o.primary == nil {
		return admin.PruneReport{}, &config.ConfigError{File: o.cfg.File, Key: "topology",
			Msg: "the memory topology keeps nothing across restarts: there is nothing to prune"}
	}
	rules, err := retentionRules(o.cfg, o.primaryDB, o.primary, o.cfg.Topology != config.TopologyMultiDatabase)
	if err != nil {
		return admin.PruneReport{}, err
	}
	if o.cfg.Topology == config.TopologyMultiDatabase {
		sources, err := o.openSources(ctx)
		if err != nil {
			return admin.PruneReport{}, err
		}
		for _, s := range sources {
			more, err := retentionRules(o.cfg, o.dbOf(s), s, true)
			if err != nil {
				return admin.PruneReport{}, err
			}
			rules = append(rules, more...)
		}
	}
	r, err := newRetention(o.cfg, rules, o.logger, ports.NopRetentionMetrics{})
	if err != nil {
		return admin.PruneReport{}, err
	}
	rep, err := r.Prune(ctx, dryRun, progress)
	if err != nil {
		return rep, fmt.Errorf("%w (after %d rows)", err, rep.Total)
	}
	return rep, nil
}
