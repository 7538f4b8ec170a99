package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// The tables retention prunes (the metric's table label).
const (
	TableChangeLog   = "change_log"
	TableDeadLetters = "dead_letters"
	TableDeliveryLog = "delivery_log"
)

// RetentionRule is one table's retention: rows older than Age go.
type RetentionRule struct {
	// Table names what is pruned (TableChangeLog, TableDeadLetters,
	// TableDeliveryLog).
	Table string
	// Where names the database, for progress and logs.
	Where string
	// Age is how long rows are kept.
	Age    time.Duration
	Pruner ports.Pruner
	// Checkpoints, set for a change log, are the readers' stored
	// checkpoints in that database: rows go only once every stored
	// checkpoint (each reader, each bridge, any other) has passed them.
	Checkpoints ports.CheckpointLister
	// Readers are the checkpoint names this deployment reads the change
	// log with. While one has no stored checkpoint it will read from the
	// start, so nothing is pruned.
	Readers []string
}

// RetentionConfig tunes Retention.
type RetentionConfig struct {
	Rules []RetentionRule
	// BatchSize bounds the rows one statement deletes (default 1000).
	BatchSize int
	// Pause is the wait between two batches (default 100ms), so that
	// pruning never holds the database for long.
	Pause   time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics ports.RetentionMetrics
}

// Retention deletes what the retention rules let go, in small batches:
// Prune once (the prune command), or Run on an interval (the service,
// under a lease of its own so that one replica prunes).
type Retention struct {
	cfg RetentionConfig
}

// NewRetention builds the use case.
func NewRetention(cfg RetentionConfig) (*Retention, error) {
	if cfg.Logger == nil {
		return nil, errors.New("retention: logger is required")
	}
	for _, r := range cfg.Rules {
		if r.Table == "" || r.Pruner == nil || r.Age <= 0 {
			return nil, fmt.Errorf("retention: rule %q of %s: table, pruner and a positive age are required", r.Table, r.Where)
		}
	}
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 1000)
	cfg.Pause = cmp.Or(cfg.Pause, 100*time.Millisecond)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Metrics = cmp.Or[ports.RetentionMetrics](cfg.Metrics, ports.NopRetentionMetrics{})
	return &Retention{cfg: cfg}, nil
}

// PruneProgress reports one step of a prune: a batch deleted (Batch rows,
// Total so far for the rule), the rule's end (Done), or why a rule
// deletes nothing (Note).
type PruneProgress struct {
	Table string
	Where string
	Batch int64
	Total int64
	Done  bool
	Note  string
}

// PruneCount is what one rule deleted, or with a dry run would delete.
type PruneCount struct {
	Table string `json:"table"`
	Where string `json:"where"`
	Rows  int64  `json:"rows"`
	// Note says why nothing is prunable (a reader without a checkpoint).
	Note string `json:"note,omitempty"`
}

// PruneReport is what a prune did.
type PruneReport struct {
	DryRun bool         `json:"dry_run"`
	Rules  []PruneCount `json:"rules"`
	Total  int64        `json:"total"`
}

// Prune applies every rule once: it deletes, batch after batch, until a
// batch comes back short, pausing between batches; with dryRun it only
// counts. progress (may be nil) hears each batch. A rule that fails stops
// the prune with its error (what was deleted stays deleted).
func (r *Retention) Prune(ctx context.Context, dryRun bool, progress func(PruneProgress)) (PruneReport, error) {
	if progress == nil {
		progress = func(PruneProgress) {}
	}
	rep := PruneReport{DryRun: dryRun, Rules: []PruneCount{}}
	for _, rule := range r.cfg.Rules {
		count, err := r.prune(ctx, rule, dryRun, progress)
		rep.Rules = append(rep.Rules, count)
		rep.Total += count.Rows
		if err != nil {
			return rep, fmt.Errorf("prune %s of %s: %w", rule.Table, rule.Where, err)
		}
	}
	return rep, nil
}

func (r *Retention) prune(ctx context.Context, rule RetentionRule, dryRun bool, progress func(PruneProgress)) (PruneCount, error) {
	count := PruneCount{Table: rule.Table, Where: rule.Where}
	cut := ports.Cutoff{Before: r.cfg.Now().Add(-rule.Age)}
	if rule.Checkpoints != nil {
		upTo, note, err := r.passedByAll(ctx, rule)
		if err != nil {
			return count, err
		}
		if note != "" {
			count.Note = note
			progress(PruneProgress{Table: rule.Table, Where: rule.Where, Done: true, Note: note})
			return count, nil
		}
		cut.UpTo = &upTo
	}
	if dryRun {
		n, err := rule.Pruner.CountPrunable(ctx, cut)
		count.Rows = n
		if err == nil {
			progress(PruneProgress{Table: rule.Table, Where: rule.Where, Total: n, Done: true})
		}
		return count, err
	}
	for {
		n, err := rule.Pruner.Prune(ctx, cut, r.cfg.BatchSize)
		if err != nil {
			return count, err
		}
		count.Rows += n
		if n > 0 {
			r.cfg.Metrics.Pruned(rule.Table, n)
		}
		if n < int64(r.cfg.BatchSize) {
			progress(PruneProgress{Table: rule.Table, Where: rule.Where, Batch: n, Total: count.Rows, Done: true})
			return count, nil
		}
		progress(PruneProgress{Table: rule.Table, Where: rule.Where, Batch: n, Total: count.Rows})
		if !pause(ctx, r.cfg.Pause) {
			return count, ctx.Err()
		}
	}
}

// passedByAll returns the lowest stored checkpoint of rule's database: the
// position every reader and bridge has passed. note is set when nothing
// may be pruned.
func (r *Retention) passedByAll(ctx context.Context, rule RetentionRule) (ports.Position, string, error) {
	recs, err := rule.Checkpoints.List(ctx)
	if err != nil {
		return ports.Position{}, "", fmt.Errorf("list checkpoints: %w", err)
	}
	if len(recs) == 0 {
		return ports.Position{}, "no reader has stored a checkpoint yet: nothing is behind every reader", nil
	}
	for _, name := range rule.Readers {
		if !slices.ContainsFunc(recs, func(c ports.CheckpointRecord) bool { return c.Name == name }) {
			return ports.Position{}, fmt.Sprintf("reader %s has no checkpoint yet (it reads from the start): nothing is pruned", name), nil
		}
	}
	low := recs[0].Position
	for _, c := range recs[1:] {
		if c.Position.Less(low) {
			low = c.Position
		}
	}
	return low, "", nil
}

// Run prunes every interval until ctx ends (the first pass at once). A
// failed pass is logged and the next one tries again.
func (r *Retention) Run(ctx context.Context, interval time.Duration) error {
	for {
		rep, err := r.Prune(ctx, false, nil)
		switch {
		case ctx.Err() != nil:
			// The lease was lost or the service stops: not a failure.
		case err != nil:
			r.cfg.Logger.Warn("retention: prune failed, next pass in "+interval.String(), slog.String("error", err.Error()))
		case rep.Total > 0:
			attrs := []any{slog.Int64("rows", rep.Total)}
			for _, c := range rep.Rules {
				attrs = append(attrs, slog.Int64(c.Table+"@"+c.Where, c.Rows))
			}
			r.cfg.Logger.Info("retention: pruned", attrs...)
		}
		if !pause(ctx, interval) {
			return nil
		}
	}
}

// pause waits d, or until ctx ends (false).
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
