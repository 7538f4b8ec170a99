package ports

import (
	"context"
	"time"
)

// Cutoff says which rows a retention rule lets go: those created before
// Before and, for a source ordered by position (the change log), at or
// before UpTo as well. A change log is never pruned without UpTo: rows a
// reader has not passed yet are not the store's to delete.
type Cutoff struct {
	Before time.Time
	UpTo   *Position
}

// Pruner deletes the rows of one table that a retention rule lets go.
//
// Prune deletes at most limit rows that the cutoff lets go, oldest first,
// in one short statement, and returns how many it deleted: fewer than
// limit means none are left. CountPrunable counts the rows Prune would
// delete, without a limit, and deletes nothing. A store without positions
// refuses a cutoff with UpTo; a change log refuses one without. Safe for
// concurrent use (two pruners at once delete each row once).
type Pruner interface {
	Prune(ctx context.Context, cut Cutoff, limit int) (int64, error)
	CountPrunable(ctx context.Context, cut Cutoff) (int64, error)
}

// RetentionMetrics counts what retention deleted. Safe for concurrent
// use.
type RetentionMetrics interface {
	// Pruned counts rows deleted from table ("change_log",
	// "dead_letters", ...).
	Pruned(table string, rows int64)
}

// NopRetentionMetrics discards the counts.
type NopRetentionMetrics struct{}

func (NopRetentionMetrics) Pruned(string, int64) {}
