package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// This file holds the read-mostly queries of the operator use cases
// (status, replay, the admin API): stored checkpoints with their save
// times, lease holders, and positions and counts in the change log.

var (
	_ ports.CheckpointLister   = (*Checkpoints)(nil)
	_ ports.LeaseInspector     = (*Lease)(nil)
	_ ports.ChangeLogInspector = (*ChangeLogStats)(nil)
	_ ports.DeadLetterCounter  = (*DeadLetters)(nil)
)

// List returns every stored checkpoint, in name order, with its last save
// time by the database clock.
func (c *Checkpoints) List(ctx context.Context) ([]ports.CheckpointRecord, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	const op = "list checkpoints"
	rows, err := c.pool.Query(ctx, `SELECT name, txid, seq, updated_at FROM `+c.table+` ORDER BY name`)
	if err != nil {
		return nil, interpretError(op, err)
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ports.CheckpointRecord, error) {
		var (
			r    ports.CheckpointRecord
			txid int64
		)
		if err := row.Scan(&r.Name, &txid, &r.Position.Seq, &r.UpdatedAt); err != nil {
			return r, err
		}
		if txid < 0 {
			return r, fmt.Errorf("checkpoint %q: stored txid %d is negative", r.Name, txid)
		}
		r.Position.TxID = uint64(txid)
		return r, nil
	})
	if err != nil {
		return nil, interpretError(op, err)
	}
	return recs, nil
}

// State reads the lease called name; a name nobody holds has Holder "".
// Expiry is judged by the database clock, as Acquire judges it.
func (l *Lease) State(ctx context.Context, name string) (ports.LeaseState, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	st := ports.LeaseState{Name: name}
	var (
		holder  *string
		expires *time.Time
	)
	err := l.pool.QueryRow(ctx, `SELECT now(), l.holder, l.expires_at
		FROM (SELECT 1) AS one LEFT JOIN `+l.table+` AS l ON l.name = $1`, name).Scan(&st.Now, &holder, &expires)
	if err != nil {
		return st, interpretError(fmt.Sprintf("read lease %q", name), err)
	}
	if holder != nil && expires != nil {
		st.Holder, st.ExpiresAt = *holder, *expires
		st.Active = !st.ExpiresAt.Before(st.Now)
	}
	return st, nil
}

// ChangeLogStats is the ports.ChangeLogInspector of a change-log table: it
// answers questions about the change log without reading events: how many rows lie after a position, where the rows created at or
// after a time begin, and how old the oldest open transaction is. Unlike
// ChangeLog it opens no LISTEN connection. Safe for concurrent use.
type ChangeLogStats struct {
	pool   *pgxpool.Pool
	table  string
	source string // stamped on the events Event returns
	// maxEventBytes is the per-event limit Event weighs rows against (0:
	// DefaultMaxEventBytes).
	maxEventBytes int64
}

// NewChangeLogStats returns the statistics of table ("" means
// "core.tb_entity_change_log"); the table must exist (Migrate creates it).
func NewChangeLogStats(pool *pgxpool.Pool, table string) (*ChangeLogStats, error) {
	if pool == nil {
		return nil, errors.New("postgres: new change log stats: nil pool")
	}
	if table == "" {
		table = DefaultChangeLogTable
	}
	tbl, err := parseTableName("change_log_table", table)
	if err != nil {
		return nil, fmt.Errorf("postgres: new change log stats: %w", err)
	}
	return &ChangeLogStats{pool: pool, table: tbl.Sanitize()}, nil
}

// Backlog counts the committed rows after `after` (what a reader resuming
// there has still to examine), rows held back by open transactions
// included.
func (s *ChangeLogStats) Backlog(ctx context.Context, after ports.Position) (int64, error) {
	return backlog(ctx, s.pool, s.table, after)
}

// CountBetween counts the committed rows after `after` up to and
// including upTo.
func (s *ChangeLogStats) CountBetween(ctx context.Context, after, upTo ports.Position) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+s.table+`
		WHERE (txid, pk_entity_change_log) > ($1::text::xid8, $2::bigint)
		  AND (txid, pk_entity_change_log) <= ($3::text::xid8, $4::bigint)`,
		strconv.FormatUint(after.TxID, 10), after.Seq, strconv.FormatUint(upTo.TxID, 10), upTo.Seq).Scan(&n)
	if err != nil {
		return 0, interpretError("count change log rows", err)
	}
	return n, nil
}

// FirstSince returns the position of the first row, in reading order
// (txid, pk), among the committed rows created at or after since; ok is
// false when there is none. It scans the table (created_at is not
// indexed): it serves the replay command, not a hot path.
func (s *ChangeLogStats) FirstSince(ctx context.Context, since time.Time) (ports.Position, bool, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "find first change log row since"
	var (
		txid string
		pk   int64
	)
	err := s.pool.QueryRow(ctx, `SELECT txid::text, pk_entity_change_log FROM `+s.table+`
		WHERE created_at >= $1
		ORDER BY txid, pk_entity_change_log
		LIMIT 1`, since).Scan(&txid, &pk)
	if errors.Is(err, pgx.ErrNoRows) {
		return ports.Position{}, false, nil
	}
	if err != nil {
		return ports.Position{}, false, interpretError(op, err)
	}
	tx, err := strconv.ParseUint(txid, 10, 64)
	if err != nil {
		return ports.Position{}, false, fmt.Errorf("postgres: %s: txid %q: %w", op, txid, err)
	}
	return ports.Position{TxID: tx, Seq: pk}, true, nil
}

// OldestTransactionAge is the age of the oldest open transaction holding
// an xid anywhere in the cluster (prepared ones included), which holds
// every reader back; 0 when there is none. See ChangeLog.OldestTransactionAge.
func (s *ChangeLogStats) OldestTransactionAge(ctx context.Context) (time.Duration, error) {
	return oldestTransactionAge(ctx, s.pool)
}

// IsMissingRelation reports whether err comes from a table or schema that
// does not exist (the database was not migrated).
func IsMissingRelation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000")
}
