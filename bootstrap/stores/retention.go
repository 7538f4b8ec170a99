package stores

import (
	"log/slog"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// RetentionRules are the rules ([retention]) for the database db holding
// store; the change log is pruned only where this deployment reads it
// (changeLog), behind every checkpoint stored there.
func RetentionRules(cfg config.Config, db *postgres.DB, store *admin.Store, changeLog bool) ([]admin.RetentionRule, error) {
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

// NewRetention prunes by rules in batches of retention.batch_size.
func NewRetention(cfg config.Config, rules []admin.RetentionRule, logger *slog.Logger, m ports.RetentionMetrics) (*admin.Retention, error) {
	return admin.NewRetention(admin.RetentionConfig{
		Rules: rules, BatchSize: cfg.Retention.BatchSize, Logger: logger, Metrics: m,
	})
}
