package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// defaultDeadLetterLimit is what List returns when the filter sets no Limit.
const defaultDeadLetterLimit = 100

// deadLetterColumns is the select list scanned by scanDeadLetter.
const deadLetterColumns = `id, event, observer, action, action_type, error, attempts, raw, created_at, last_retry_at, event_id`

// briefDeadLetterColumns are deadLetterColumns without the payload (the
// event and the raw input read as NULL): DeadLetterFilter.Brief.
const briefDeadLetterColumns = `id, NULL::jsonb, observer, action, action_type, error, attempts, NULL::bytea, created_at, last_retry_at, event_id`

// DeadLetters is the durable dead-letter queue in the observer schema's
// dead_letters table. The event is kept as its JSON envelope (numbers
// exact), raw inputs as bytes. Safe for concurrent use.
type DeadLetters struct {
	pool  *pgxpool.Pool
	table string
}

var _ ports.DeadLetterStore = (*DeadLetters)(nil)

// NewDeadLetters returns a store on schema's dead_letters table (schema ""
// means "observer"); the table must exist (Migrate creates it).
func NewDeadLetters(pool *pgxpool.Pool, schema string) (*DeadLetters, error) {
	table, err := stateTable(pool, schema, "dead_letters")
	if err != nil {
		return nil, fmt.Errorf("postgres: new dead letters: %w", err)
	}
	return &DeadLetters{pool: pool, table: table}, nil
}

// Add stores d, assigning its ID and CreatedAt (the database clock), and
// returns the ID. The item is durable once Add returns nil.
func (s *DeadLetters) Add(ctx context.Context, d ports.DeadLetter) (int64, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	const op = "add dead letter"
	envelope, err := d.Event.Envelope()
	if err != nil {
		return 0, fmt.Errorf("postgres: %s: encode event %q: %w", op, d.Event.ID, err)
	}
	var id int64
	err = s.pool.QueryRow(ctx, `INSERT INTO `+s.table+`
		(event_id, event, observer, action, action_type, error, attempts, raw, last_retry_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		RETURNING id`,
		d.Event.ID, string(envelope), d.Observer, d.Action, string(d.ActionType), d.Error, d.Attempts,
		d.Raw, nullTime(d.LastRetryAt)).Scan(&id)
	if err != nil {
		return 0, interpretError(op, err)
	}
	return id, nil
}

// List returns the items matching f in ascending ID order, at most f.Limit
// (default 100).
func (s *DeadLetters) List(ctx context.Context, f ports.DeadLetterFilter) ([]ports.DeadLetter, error) {
	const op = "list dead letters"
	if f.Limit < 0 {
		return nil, fmt.Errorf("postgres: %s: limit %d is negative", op, f.Limit)
	}
	limit := f.Limit
	if limit == 0 {
		limit = defaultDeadLetterLimit
	}
	cols := deadLetterColumns
	if f.Brief {
		cols = briefDeadLetterColumns
	}
	rows, err := s.pool.Query(ctx, `SELECT `+cols+` FROM `+s.table+`
		WHERE ($1 = '' OR observer = $1) AND id > $2
		ORDER BY id
		LIMIT $3`, f.Observer, f.AfterID, limit)
	if err != nil {
		return nil, interpretError(op, err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ports.DeadLetter, error) {
		return scanDeadLetter(row)
	})
	if err != nil {
		return nil, interpretError(op, err)
	}
	return items, nil
}

// Get returns the item with id, or an error wrapping ports.ErrNotFound.
func (s *DeadLetters) Get(ctx context.Context, id int64) (ports.DeadLetter, error) {
	d, err := scanDeadLetter(s.pool.QueryRow(ctx, `SELECT `+deadLetterColumns+` FROM `+s.table+` WHERE id = $1`, id))
	if err != nil {
		return ports.DeadLetter{}, interpretError(fmt.Sprintf("get dead letter %d", id), err)
	}
	return d, nil
}

// Remove deletes the item with id, or returns an error wrapping
// ports.ErrNotFound.
func (s *DeadLetters) Remove(ctx context.Context, id int64) error {
	op := fmt.Sprintf("remove dead letter %d", id)
	tag, err := s.pool.Exec(ctx, `DELETE FROM `+s.table+` WHERE id = $1`, id)
	if err != nil {
		return interpretError(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: %s: %w", op, ports.ErrNotFound)
	}
	return nil
}

// MarkRetried records a failed retry of the item with id: one more
// attempt, errText and at replace Error and LastRetryAt. errText comes
// from the failed action (a receiver's reply may hold NUL bytes or invalid
// UTF-8, which PostgreSQL text refuses): it is stored with those replaced
// by U+FFFD, so that the retry is recorded whatever the reply. An unknown
// id is an error wrapping ports.ErrNotFound.
func (s *DeadLetters) MarkRetried(ctx context.Context, id int64, errText string, at time.Time) error {
	op := fmt.Sprintf("mark dead letter %d retried", id)
	tag, err := s.pool.Exec(ctx, `UPDATE `+s.table+`
		SET attempts = attempts + 1, error = $2, last_retry_at = $3
		WHERE id = $1`, id, storableText(errText), nullTime(at))
	if err != nil {
		return interpretError(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: %s: %w", op, ports.ErrNotFound)
	}
	return nil
}

// Stats counts items per observer ("" for inputs that were not events).
func (s *DeadLetters) Stats(ctx context.Context) (map[string]int, error) {
	const op = "dead letter stats"
	rows, err := s.pool.Query(ctx, `SELECT observer, count(*) FROM `+s.table+` GROUP BY observer`)
	if err != nil {
		return nil, interpretError(op, err)
	}
	stats := map[string]int{}
	var (
		observer string
		n        int
	)
	_, err = pgx.ForEachRow(rows, []any{&observer, &n}, func() error {
		stats[observer] = n
		return nil
	})
	if err != nil {
		return nil, interpretError(op, err)
	}
	return stats, nil
}

// Count is the number of items, for the dlq_items metric.
func (s *DeadLetters) Count(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+s.table).Scan(&n); err != nil {
		return 0, interpretError("count dead letters", err)
	}
	return n, nil
}

func scanDeadLetter(row pgx.Row) (ports.DeadLetter, error) {
	var (
		d          ports.DeadLetter
		event      []byte
		actionType string
		lastRetry  *time.Time
		eventID    string
	)
	err := row.Scan(&d.ID, &event, &d.Observer, &d.Action, &actionType, &d.Error, &d.Attempts,
		&d.Raw, &d.CreatedAt, &lastRetry, &eventID)
	if err != nil {
		return ports.DeadLetter{}, err
	}
	d.ActionType = domain.ActionType(actionType)
	if lastRetry != nil {
		d.LastRetryAt = *lastRetry
	}
	if event == nil { // listed briefly (briefDeadLetterColumns)
		d.Event = domain.Event{ID: eventID}
		return d, nil
	}
	// Not domain.DecodeEvent: an invalid input's event may lack what a valid
	// event needs, and it must still come back as stored.
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	if err := dec.Decode(&d.Event); err != nil {
		// One item the code cannot read back (stored by an older version,
		// edited by hand) must not fail every page that holds it: it is
		// listed with its id, the stored event kept in Raw and the reason.
		d.Event = domain.Event{ID: eventID}
		if d.Raw == nil {
			d.Raw = event
		}
		d.Error += fmt.Sprintf(" [the stored event cannot be decoded (%v); it is in raw]", err)
	}
	return d, nil
}

// nullTime maps the zero time to SQL NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
