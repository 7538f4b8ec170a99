package stores

import (
	"log/slog"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// RetentionScope says which of a database's tables are this deployment's
// to prune.
type RetentionScope struct {
	// ChangeLog: this deployment reads the database's change log (rows go
	// behind every checkpoint stored there).
	ChangeLog bool
	// State: the database holds the deployment's state (the delivery log).
	State bool
}

// RetentionRules are the rules ([retention], and delivery.log_retention
// for the delivery log) for the database db holding store.
func RetentionRules(cfg config.Config, db *postgres.DB, store *admin.Store, scope RetentionScope) ([]admin.RetentionRule, error) {
	r := cfg.Retention
	var rules []admin.RetentionRule
	if r.ChangeLog > 0 && scope.ChangeLog {
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
	if scope.State && cfg.Delivery.Log != config.DeliveryLogOff {
		log, err := postgres.NewDeliveryLog(db.Pool, cfg.Database.ObserverSchema)
		if err != nil {
			return nil, err
		}
		rules = append(rules, admin.RetentionRule{Table: admin.TableDeliveryLog, Where: store.Name,
			Age: cfg.Delivery.LogRetention, Pruner: log.Pruner()})
	}
	return rules, nil
}

// NewRetention prunes by rules in batches of retention.batch_size.
func NewRetention(cfg config.Config, rules []admin.RetentionRule, logger *slog.Logger, m ports.RetentionMetrics) (*admin.Retention, error) {
	return admin.NewRetention(admin.RetentionConfig{
		Rules: rules, BatchSize: cfg.Retention.BatchSize, Logger: logger, Metrics: m,
	})
}
