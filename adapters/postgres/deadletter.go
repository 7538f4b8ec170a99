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

// briefDeadLetterColumns are deadLetterColumns without the payload
// (DeadLetterFilter.Brief): the raw input reads as NULL and the event as
// its skeleton (eventSkeleton), which scanDeadLetter decodes only to note
// an event that cannot be decoded, as a full listing does.
var briefDeadLetterColumns = `id, ` + eventSkeleton("event") + `, observer, action, action_type, error, attempts, NULL::bytea, created_at, last_retry_at, event_id`

// eventSkeleton is the SQL of a small JSON value that decodes into a
// domain.Event exactly when the stored event (the jsonb expression ev)
// does, with the same error: each value replaced by the empty value of
// its JSON type ({}, [], "", 0, false, null), where an empty value decodes
// as the value would (strings into string fields, objects into data and
// before); kept are the timestamp's text (cut to 100 characters: no valid
// one is longer, so a cut one fails as the whole would) and, in changes,
// the names of the values that are neither objects nor null (those fail
// to decode into a Change). Keys that name no field of the event are
// dropped (encoding/json ignores them; it matches names ignoring case,
// so lower() picks the fields). A page so ships and holds the same
// whatever the events weigh; the server reads each event (one at a time)
// to take its skeleton.
func eventSkeleton(ev string) string {
	field := func(key, v string) string {
		return `CASE lower(` + key + `)
			WHEN 'timestamp' THEN CASE WHEN jsonb_typeof(` + v + `) = 'string' THEN to_jsonb(left(` + v + ` #>> '{}', 100)) ELSE ` + emptyJSON(v) + ` END
			WHEN 'changes' THEN CASE WHEN jsonb_typeof(` + v + `) = 'object' THEN (SELECT COALESCE(jsonb_object_agg(ck, ` + emptyJSON("cv") + `), '{}')
				FROM jsonb_each(` + v + `) AS c(ck, cv) WHERE jsonb_typeof(cv) NOT IN ('object', 'null')) ELSE ` + emptyJSON(v) + ` END
			ELSE ` + emptyJSON(v) + ` END`
	}
	return `CASE WHEN jsonb_typeof(` + ev + `) = 'object' THEN (SELECT COALESCE(jsonb_object_agg(k, ` + field("k", "v") + `), '{}')
		FROM jsonb_each(` + ev + `) AS f(k, v)
		WHERE lower(k) IN ('id', 'event_type', 'entity_type', 'entity_id', 'data', 'before', 'changes', 'tenant_id', 'user_id', 'timestamp', 'source'))
		ELSE ` + emptyJSON(ev) + ` END`
}

// emptyJSON is the SQL of the empty jsonb value of v's JSON type.
func emptyJSON(v string) string {
	return `CASE jsonb_typeof(` + v + `) WHEN 'object' THEN '{}'::jsonb WHEN 'array' THEN '[]'::jsonb
		WHEN 'string' THEN '""'::jsonb WHEN 'number' THEN '0'::jsonb WHEN 'boolean' THEN 'false'::jsonb ELSE 'null'::jsonb END`
}

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
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
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
		return scanDeadLetter(row, f.Brief)
	})
	if err != nil {
		return nil, interpretError(op, err)
	}
	return items, nil
}

// Get returns the item with id, or an error wrapping ports.ErrNotFound.
func (s *DeadLetters) Get(ctx context.Context, id int64) (ports.DeadLetter, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	d, err := scanDeadLetter(s.pool.QueryRow(ctx, `SELECT `+deadLetterColumns+` FROM `+s.table+` WHERE id = $1`, id), false)
	if err != nil {
		return ports.DeadLetter{}, interpretError(fmt.Sprintf("get dead letter %d", id), err)
	}
	return d, nil
}

// Remove deletes the item with id, or returns an error wrapping
// ports.ErrNotFound.
func (s *DeadLetters) Remove(ctx context.Context, id int64) error {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
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
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
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
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
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
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+s.table).Scan(&n); err != nil {
		return 0, interpretError("count dead letters", err)
	}
	return n, nil
}

// scanDeadLetter scans a row of deadLetterColumns, or of
// briefDeadLetterColumns when brief.
func scanDeadLetter(row pgx.Row, brief bool) (ports.DeadLetter, error) {
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
	// Not domain.DecodeEvent: an invalid input's event may lack what a valid
	// event needs, and it must still come back as stored.
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	err = dec.Decode(&d.Event)
	if brief { // the skeleton decoded only for the note
		d.Event = domain.Event{ID: eventID}
	}
	if err != nil {
		// One item the code cannot read back (stored by an older version,
		// edited by hand) must not fail every page that holds it: it is
		// listed with its id, the stored event kept in Raw (a brief listing
		// has none) and the reason.
		d.Event = domain.Event{ID: eventID}
		if d.Raw == nil && !brief {
			d.Raw = event
		}
		where := "it is in raw"
		if brief {
			where = "the item read whole has it in raw"
		}
		d.Error += fmt.Sprintf(" [the stored event cannot be decoded (%v); %s]", err, where)
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
