package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// ChangeLogPruner deletes change-log rows that every reader has passed
// (ports.Pruner): rows at or before the cutoff's position, in reading
// order (txid, pk), and created before its time. Each Prune is one short
// DELETE among the first limit rows in that order, found through the
// (txid, pk) index.
type ChangeLogPruner struct {
	pool  *pgxpool.Pool
	table string
}

var _ ports.Pruner = (*ChangeLogPruner)(nil)

// NewChangeLogPruner returns a pruner of table ("" means
// "core.tb_entity_change_log").
func NewChangeLogPruner(pool *pgxpool.Pool, table string) (*ChangeLogPruner, error) {
	if pool == nil {
		return nil, errors.New("postgres: new change log pruner: nil pool")
	}
	if table == "" {
		table = DefaultChangeLogTable
	}
	tbl, err := parseTableName("change_log_table", table)
	if err != nil {
		return nil, fmt.Errorf("postgres: new change log pruner: %w", err)
	}
	return &ChangeLogPruner{pool: pool, table: tbl.Sanitize()}, nil
}

const changeLogPrunable = `(txid, pk_entity_change_log) <= ($1::text::xid8, $2::bigint) AND created_at < $3`

func changeLogArgs(cut ports.Cutoff) ([]any, error) {
	if cut.UpTo == nil {
		return nil, errors.New("a change log is pruned only up to a position every reader has passed")
	}
	return []any{strconv.FormatUint(cut.UpTo.TxID, 10), cut.UpTo.Seq, cut.Before}, nil
}

// Prune deletes up to limit prunable rows, oldest first in reading order.
func (p *ChangeLogPruner) Prune(ctx context.Context, cut ports.Cutoff, limit int) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "prune change log"
	args, err := changeLogArgs(cut)
	if err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	// The first limit rows in reading order up to the position, of which
	// those old enough go: the scan reads at most limit index entries.
	// Filtering by age inside the scan read every row up to the position
	// (most of the table) once the old ones were gone: each pass ended
	// with a scan of the whole change log. A row younger than the cutoff
	// ahead of older ones (a long transaction's) holds them until it ages.
	tag, err := p.pool.Exec(ctx, changeLogPruneSQL(p.table), append(args, limit)...)
	if err != nil {
		return 0, interpretError(op, err)
	}
	return tag.RowsAffected(), nil
}

// changeLogPruneSQL is Prune's statement on table (quoted): $1 and $2 the
// position, $3 the time, $4 the limit.
func changeLogPruneSQL(table string) string {
	return `DELETE FROM ` + table + ` WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM (
			SELECT ctid, created_at FROM ` + table + ` WHERE (txid, pk_entity_change_log) <= ($1::text::xid8, $2::bigint)
			ORDER BY txid, pk_entity_change_log LIMIT $4) AS head
		WHERE created_at < $3))`
}

// CountPrunable counts the rows Prune would delete.
func (p *ChangeLogPruner) CountPrunable(ctx context.Context, cut ports.Cutoff) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "count prunable change log rows"
	args, err := changeLogArgs(cut)
	if err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	var n int64
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM `+p.table+` WHERE `+changeLogPrunable, args...).Scan(&n); err != nil {
		return 0, interpretError(op, err)
	}
	return n, nil
}

var _ ports.Pruner = (*DeadLetters)(nil)

// A dead letter's age is that of its last retry, or of its parking.
const deadLetterPrunable = `coalesce(last_retry_at, created_at) < $1`

func deadLetterCutoff(op string, cut ports.Cutoff) error {
	if cut.UpTo != nil {
		return fmt.Errorf("postgres: %s: dead letters have no position", op)
	}
	return nil
}

// Prune deletes up to limit dead letters not retried since the cutoff,
// oldest first (ports.Pruner).
func (s *DeadLetters) Prune(ctx context.Context, cut ports.Cutoff, limit int) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "prune dead letters"
	if err := deadLetterCutoff(op, cut); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM `+s.table+` WHERE id = ANY(ARRAY(
		SELECT id FROM `+s.table+` WHERE `+deadLetterPrunable+` ORDER BY id LIMIT $2))`, cut.Before, limit)
	if err != nil {
		return 0, interpretError(op, err)
	}
	return tag.RowsAffected(), nil
}

// CountPrunable counts the dead letters Prune would delete.
func (s *DeadLetters) CountPrunable(ctx context.Context, cut ports.Cutoff) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "count prunable dead letters"
	if err := deadLetterCutoff(op, cut); err != nil {
		return 0, err
	}
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+s.table+` WHERE `+deadLetterPrunable, cut.Before).Scan(&n); err != nil {
		return 0, interpretError(op, err)
	}
	return n, nil
}

// DeliveryLogPruner prunes the delivery log by age for retention
// (ports.Pruner): a record's age is that of its attempt.
type DeliveryLogPruner struct{ log *DeliveryLog }

var _ ports.Pruner = DeliveryLogPruner{}

// Pruner returns the retention pruner of the log.
func (l *DeliveryLog) Pruner() DeliveryLogPruner { return DeliveryLogPruner{log: l} }

func deliveryCutoff(op string, cut ports.Cutoff) error {
	if cut.UpTo != nil {
		return fmt.Errorf("postgres: %s: delivery records have no position", op)
	}
	return nil
}

// Prune deletes up to limit delivery records older than the cutoff,
// oldest first.
func (p DeliveryLogPruner) Prune(ctx context.Context, cut ports.Cutoff, limit int) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "prune delivery log"
	if err := deliveryCutoff(op, cut); err != nil {
		return 0, err
	}
	t := p.log.table
	tag, err := p.log.pool.Exec(ctx, `DELETE FROM `+t+` WHERE id = ANY(ARRAY(
		SELECT id FROM `+t+` WHERE at < $1 ORDER BY at, id LIMIT $2))`, cut.Before, limit)
	if err != nil {
		return 0, interpretError(op, err)
	}
	return tag.RowsAffected(), nil
}

// CountPrunable counts the delivery records Prune would delete.
func (p DeliveryLogPruner) CountPrunable(ctx context.Context, cut ports.Cutoff) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "count prunable delivery records"
	if err := deliveryCutoff(op, cut); err != nil {
		return 0, err
	}
	var n int64
	if err := p.log.pool.QueryRow(ctx, `SELECT count(*) FROM `+p.log.table+` WHERE at < $1`, cut.Before).Scan(&n); err != nil {
		return 0, interpretError(op, err)
	}
	return n, nil
}
