package operate

import (
	"context"
	"fmt"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// Prune applies [retention] once to every database of the configuration
// (the prune command); with dryRun it only counts. progress hears each
// batch.
func (o *Operator) Prune(ctx context.Context, dryRun bool, progress func(admin.PruneProgress)) (admin.PruneReport, error) {
	if !o.cfg.Prunes() {
		return admin.PruneReport{}, &config.ConfigError{File: o.cfg.File, Key: "retention",
			Msg: "sets no age and delivery.log is off: nothing to prune (set retention.change_log and/or retention.dead_letters)"}
	}
	if o.primary == nil {
		return admin.PruneReport{}, &config.ConfigError{File: o.cfg.File, Key: "topology",
			Msg: "the memory topology keeps nothing across restarts: there is nothing to prune"}
	}
	rules, err := stores.RetentionRules(o.cfg, o.primaryDB, o.primary,
		stores.RetentionScope{ChangeLog: o.cfg.Topology != config.TopologyMultiDatabase, State: true})
	if err != nil {
		return admin.PruneReport{}, err
	}
	if o.cfg.Topology == config.TopologyMultiDatabase {
		sources, err := o.openSources(ctx)
		if err != nil {
			return admin.PruneReport{}, err
		}
		for _, s := range sources {
			more, err := stores.RetentionRules(o.cfg, o.dbOf(s), s, stores.RetentionScope{ChangeLog: true})
			if err != nil {
				return admin.PruneReport{}, err
			}
			rules = append(rules, more...)
		}
	}
	r, err := stores.NewRetention(o.cfg, rules, o.logger, ports.NopRetentionMetrics{})
	if err != nil {
		return admin.PruneReport{}, err
	}
	rep, err := r.Prune(ctx, dryRun, progress)
	if err != nil {
		return rep, fmt.Errorf("%w (after %d rows)", err, rep.Total)
	}
	return rep, nil
}
