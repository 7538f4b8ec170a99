package bootstrap

import (
	"context"
	"log/slog"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
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

// buildRetention sets up the service's prune of each database this
// process keeps state in: the state database (its change log unless the
// sources are elsewhere) and, for multi-database bridges, each source.
func (a *App) buildRetention() error {
	if !a.cfg.Prunes() {
		return nil
	}
	metrics := promadapter.NewRetentionMetrics(a.metrics, admin.TableChangeLog, admin.TableDeadLetters, admin.TableDeliveryLog)
	add := func(db *postgres.DB, store *admin.Store, scope stores.RetentionScope) error {
		rules, err := stores.RetentionRules(a.cfg, db, store, scope)
		if err != nil || len(rules) == 0 {
			return err
		}
		r, err := stores.NewRetention(a.cfg, rules, a.logger.With(slog.String("database", store.Name)), metrics)
		if err != nil {
			return err
		}
		a.retention = append(a.retention, retentionJob{store: store, retention: r})
		return nil
	}
	if a.db != nil && a.primary != nil {
		scope := stores.RetentionScope{ChangeLog: a.cfg.Topology != config.TopologyMultiDatabase, State: true}
		if err := add(a.db, a.primary, scope); err != nil {
			return err
		}
	}
	for _, b := range a.bridges {
		if b.store != a.primary {
			if err := add(b.db, b.store, stores.RetentionScope{ChangeLog: true}); err != nil {
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
