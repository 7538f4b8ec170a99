package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// pruneBatch bounds the rows one DELETE of Prune removes, so retention
// never holds long locks.
const pruneBatch = 10_000

// deliveryColumns are the columns written by Append and scanned by List.
var deliveryColumns = []string{"at", "event_id", "observer", "action", "action_type", "endpoint", "attempt", "trigger",
	"outcome", "status_code", "latency_us", "error", "response"}

// DeliveryLog keeps delivery records in the observer schema's deliveries
// table; Append copies a batch in one round trip. Safe for concurrent use.
type DeliveryLog struct {
	pool   *pgxpool.Pool
	schema string
	table  string
}

var _ ports.DeliveryLog = (*DeliveryLog)(nil)

// NewDeliveryLog returns a log on schema's deliveries table (schema ""
// means "observer"); the table must exist (Migrate creates it).
func NewDeliveryLog(pool *pgxpool.Pool, schema string) (*DeliveryLog, error) {
	table, err := stateTable(pool, schema, "deliveries")
	if err != nil {
		return nil, fmt.Errorf("postgres: new delivery log: %w", err)
	}
	if schema == "" {
		schema = defaultStateSchema
	}
	return &DeliveryLog{pool: pool, schema: schema, table: table}, nil
}

// Append copies records into the table.
func (l *DeliveryLog) Append(ctx context.Context, records []ports.DeliveryRecord) error {
	if len(records) == 0 {
		return nil
	}
	rows := make([][]any, len(records))
	for i, r := range records {
		var status *int32
		if r.StatusCode != 0 {
			s := int32(r.StatusCode)
			status = &s
		}
		rows[i] = []any{r.At, storableText(r.EventID), storableText(r.Observer), storableText(r.Action), string(r.ActionType),
			storableText(r.Endpoint), int32(r.Attempt), r.Trigger, r.Outcome, status, r.Latency.Microseconds(),
			storableText(r.Error), storableText(r.Response)}
	}
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	_, err := l.pool.CopyFrom(ctx, pgx.Identifier{l.schema, "deliveries"}, deliveryColumns, pgx.CopyFromRows(rows))
	return interpretError("append deliveries", err)
}

// List returns the records matching f, newest first.
func (l *DeliveryLog) List(ctx context.Context, f ports.DeliveryFilter) ([]ports.DeliveryRecord, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "list deliveries"
	if f.Limit < 0 {
		return nil, fmt.Errorf("postgres: %s: limit %d is negative", op, f.Limit)
	}
	limit := f.Limit
	if limit == 0 {
		limit = defaultDeadLetterLimit
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.EventID != "" {
		add("event_id = ?", f.EventID)
	}
	if f.Observer != "" {
		add("observer = ?", f.Observer)
	}
	if f.Endpoint != "" {
		add("endpoint = ?", f.Endpoint)
	}
	if f.Failed {
		where = append(where, "outcome <> '"+ports.DeliverySucceeded+"'")
	}
	if f.Succeeded {
		where = append(where, "outcome = '"+ports.DeliverySucceeded+"'")
	}
	if f.StatusCode != 0 {
		add("status_code = ?", f.StatusCode)
	}
	if !f.Since.IsZero() {
		add("at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		add("at < ?", f.Until)
	}
	if f.BeforeID != 0 {
		add("id < ?", f.BeforeID)
	}
	q := `SELECT id, ` + strings.Join(deliveryColumns, ", ") + ` FROM ` + l.table
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += ` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := l.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, interpretError(op, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ports.DeliveryRecord, error) {
		var (
			r          ports.DeliveryRecord
			actionType string
			attempt    int32
			status     *int32
			latency    int64
		)
		err := row.Scan(&r.ID, &r.At, &r.EventID, &r.Observer, &r.Action, &actionType, &r.Endpoint, &attempt, &r.Trigger,
			&r.Outcome, &status, &latency, &r.Error, &r.Response)
		r.ActionType, r.Attempt, r.Latency = domain.ActionType(actionType), int(attempt), time.Duration(latency)*time.Microsecond
		if status != nil {
			r.StatusCode = int(*status)
		}
		return r, err
	})
	if err != nil {
		return nil, interpretError(op, err)
	}
	return out, nil
}

// Prune deletes the records older than before, in batches.
func (l *DeliveryLog) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		bctx, cancel := withLongOpTimeout(ctx) // each batch
		tag, err := l.pool.Exec(bctx, `DELETE FROM `+l.table+` WHERE id IN (
			SELECT id FROM `+l.table+` WHERE at < $1 LIMIT `+strconv.Itoa(pruneBatch)+`)`, before)
		cancel()
		if err != nil {
			return total, interpretError("prune deliveries", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}
