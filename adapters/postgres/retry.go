package postgres

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// retryLockClass is the first key of the transaction-level advisory lock
// that serialises the changes to one observer and entity key's queue
// (the second key is a hash of the pair).
const retryLockClass = 0x66726574 // "fret"

// retryColumns is the select list scanned by scanRetry.
const retryColumns = `id, event, observer, entity_key, actions, endpoints, due_at, state, created_at`

// Retries is the durable retry store in the observer schema's retries
// table; settlements write the dead_letters table of the same schema in
// the same transaction. Safe for concurrent use, from several processes.
type Retries struct {
	pool  *pgxpool.Pool
	table string
	dead  string
}

var (
	_ ports.RetryStore   = (*Retries)(nil)
	_ ports.RetryCounter = (*Retries)(nil)
)

// NewRetries returns a store on schema's retries table (schema "" means
// "observer"); the tables must exist (Migrate creates them).
func NewRetries(pool *pgxpool.Pool, schema string) (*Retries, error) {
	table, err := stateTable(pool, schema, "retries")
	if err != nil {
		return nil, fmt.Errorf("postgres: new retries: %w", err)
	}
	dead, _ := stateTable(pool, schema, "dead_letters")
	return &Retries{pool: pool, table: table, dead: dead}, nil
}

// derived returns the distinct endpoints of actions and their earliest
// due time.
func derived(actions []ports.RetryAction) ([]string, time.Time) {
	var endpoints []string
	var due time.Time
	for _, a := range actions {
		if !slices.Contains(endpoints, a.Endpoint) {
			endpoints = append(endpoints, a.Endpoint)
		}
		if due.IsZero() || a.Due.Before(due) {
			due = a.Due
		}
	}
	slices.Sort(endpoints)
	return endpoints, due
}

// Entity keys hold NUL bytes (domain.Event.EntityKey), which PostgreSQL
// text cannot: they are stored escaped, reversibly.
var (
	keyEscaper   = strings.NewReplacer(`\`, `\\`, "\x00", `\0`)
	keyUnescaper = strings.NewReplacer(`\\`, `\`, `\0`, "\x00")
)

func storedKey(k string) string { return keyEscaper.Replace(k) }
func entityKey(k string) string { return keyUnescaper.Replace(k) }

// Park stores item, due when its key has no other item, else waiting,
// under the key's advisory lock.
func (s *Retries) Park(ctx context.Context, item ports.RetryItem) (ports.RetryItem, bool, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	op := "park retry of event " + item.Event.ID
	if len(item.Actions) == 0 {
		return ports.RetryItem{}, false, fmt.Errorf("postgres: %s: no actions", op)
	}
	envelope, err := item.Event.Envelope()
	if err != nil {
		return ports.RetryItem{}, false, fmt.Errorf("postgres: %s: encode event: %w", op, err)
	}
	actions, err := encodeActions(item.Actions)
	if err != nil {
		return ports.RetryItem{}, false, fmt.Errorf("postgres: %s: %w", op, err)
	}
	endpoints, due := derived(item.Actions)
	key := storedKey(item.EntityKey)
	// One round trip: a batch runs in one implicit transaction, so the
	// key's advisory lock is held until the insert commits, and the insert
	// (a statement of its own, with a snapshot taken after the lock) sees
	// every item a concurrent Complete left.
	batch := &pgx.Batch{}
	batch.Queue(`SELECT pg_advisory_xact_lock($1, hashtext($2 || E'\n' || $3))`, retryLockClass, item.Observer, key)
	batch.Queue(`INSERT INTO `+s.table+`
		(event_id, observer, entity_key, event, actions, endpoints, due_at, state)
		VALUES ($1, $2, $3, $4, $5, $6, $7,
			CASE WHEN EXISTS (SELECT 1 FROM `+s.table+` WHERE observer = $2 AND entity_key = $3)
			THEN 'waiting' ELSE 'due' END)
		ON CONFLICT (event_id, observer) DO NOTHING
		RETURNING `+retryColumns,
		item.Event.ID, item.Observer, key, string(envelope), actions, endpoints, due)
	br := s.pool.SendBatch(ctx, batch)
	_, err = br.Exec()
	var out ports.RetryItem
	if err == nil {
		out, err = scanRetry(br.QueryRow())
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		return out, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return ports.RetryItem{}, false, interpretError(op, err)
	}
	// Parked before: nothing changes.
	out, err = scanRetry(s.pool.QueryRow(ctx, `SELECT `+retryColumns+` FROM `+s.table+`
		WHERE event_id = $1 AND observer = $2`, item.Event.ID, item.Observer))
	if err != nil {
		return ports.RetryItem{}, false, interpretError(op, err)
	}
	return out, false, nil
}

// ClaimDue claims up to limit due, unclaimed items, earliest Due first,
// skipping rows other transactions hold.
func (s *Retries) ClaimDue(ctx context.Context, c ports.RetryClaim, limit int, skip []string) ([]ports.RetryItem, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "claim retries"
	if limit < 1 || c.Holder == "" || c.TTL <= 0 {
		return nil, fmt.Errorf("postgres: %s: limit %d, holder %q and ttl %v must be set", op, limit, c.Holder, c.TTL)
	}
	if skip == nil {
		skip = []string{}
	}
	rows, err := s.pool.Query(ctx, `WITH c AS (
			SELECT id FROM `+s.table+`
			WHERE state = 'due' AND due_at <= $1 AND (claim_until IS NULL OR claim_until <= $1)
				AND NOT (cardinality($4::text[]) > 0 AND endpoints <@ $4::text[])
			ORDER BY due_at, id
			LIMIT $3
			FOR UPDATE SKIP LOCKED)
		UPDATE `+s.table+` r SET holder = $2, claim_until = $5
		FROM c WHERE r.id = c.id
		RETURNING `+prefixed("r.", retryColumns),
		c.Now, c.Holder, limit, skip, c.Now.Add(c.TTL))
	if err != nil {
		return nil, interpretError(op, err)
	}
	var (
		items  []ports.RetryItem
		broken []undecodableRetry
	)
	for rows.Next() {
		it, err := scanRetry(rows)
		var bad undecodableRetry
		switch {
		case errors.As(err, &bad):
			broken = append(broken, bad)
			continue
		case err != nil:
			rows.Close()
			return nil, interpretError(op, err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, interpretError(op, err)
	}
	for _, bad := range broken {
		if err := s.deadLetterUndecodable(ctx, bad, c.Holder); err != nil {
			return nil, interpretError(op, err)
		}
	}
	slices.SortFunc(items, func(a, b ports.RetryItem) int { return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.ID, b.ID)) })
	return items, nil
}

// held locks the row of item id in tx and checks that holder claimed it;
// it returns the item's key.
func (s *Retries) held(ctx context.Context, tx pgx.Tx, id int64, holder string) (ports.RetryKey, error) {
	var k ports.RetryKey
	var h *string
	err := tx.QueryRow(ctx, `SELECT observer, entity_key, holder FROM `+s.table+` WHERE id = $1 FOR UPDATE`, id).
		Scan(&k.Observer, &k.EntityKey, &h)
	if err != nil {
		return k, err
	}
	if h == nil || *h != holder {
		return k, fmt.Errorf("held by %q: %w", deref(h), ports.ErrClaimLost)
	}
	return k, nil
}

// Reschedule replaces the actions of a claimed item and releases it.
func (s *Retries) Reschedule(ctx context.Context, id int64, holder string, actions []ports.RetryAction, dead []ports.DeadLetter) error {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("reschedule retry %d", id)
	if len(actions) == 0 {
		return fmt.Errorf("postgres: %s: no actions left (complete it instead)", op)
	}
	encoded, err := encodeActions(actions)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	endpoints, due := derived(actions)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := s.held(ctx, tx, id, holder); err != nil {
			return err
		}
		if err := s.insertDead(ctx, tx, dead); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE `+s.table+`
			SET actions = $2, endpoints = $3, due_at = $4, holder = NULL, claim_until = NULL
			WHERE id = $1`, id, encoded, endpoints, due)
		return err
	})
	return interpretError(op, err)
}

// Complete deletes a claimed item, stores dead and makes the next item of
// its key due, claiming it for c.Next (or c.Holder) when it is due at
// c.Now. One round trip: a batch runs in one implicit transaction under
// the key's advisory lock; each statement sees what the one before it did.
func (s *Retries) Complete(ctx context.Context, item ports.RetryItem, c ports.RetryClaim, dead []ports.DeadLetter) (ports.RetryItem, bool, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("complete retry %d", item.ID)
	dl := deadColumns{}
	for _, d := range dead {
		if err := dl.add(d); err != nil {
			return ports.RetryItem{}, false, fmt.Errorf("postgres: %s: %w", op, err)
		}
	}
	key := storedKey(item.EntityKey)
	batch := &pgx.Batch{}
	batch.Queue(`SELECT pg_advisory_xact_lock($1, hashtext($2 || E'\n' || $3))`, retryLockClass, item.Observer, key)
	// Delete the item if c.Holder holds it, with its dead letters; report
	// who holds it otherwise (the statement reads the table as it was).
	batch.Queue(`WITH d AS (
			DELETE FROM `+s.table+` WHERE id = $1 AND holder = $2 AND observer = $3 AND entity_key = $4 RETURNING id),
		dl AS (
			INSERT INTO `+s.dead+` (event_id, event, observer, action, action_type, error, attempts)
			SELECT x.event_id, x.event::jsonb, x.observer, x.action, x.action_type, x.error, x.attempts
			FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[])
				AS x(event_id, event, observer, action, action_type, error, attempts)
			WHERE EXISTS (SELECT 1 FROM d)
			RETURNING 1)
		SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM dl), (SELECT coalesce(holder, '') FROM `+s.table+` WHERE id = $1)`,
		item.ID, c.Holder, item.Observer, key, dl.eventID, dl.event, dl.observer, dl.action, dl.actionType, dl.errText, dl.attempts)
	// Promote the key's next item and claim it when it is due (only when
	// the item above was deleted).
	batch.Queue(`WITH head AS (
			SELECT id, due_at, claim_until FROM `+s.table+`
			WHERE observer = $1 AND entity_key = $2 ORDER BY id LIMIT 1)
		UPDATE `+s.table+` t SET state = 'due',
			holder = CASE WHEN $3 AND head.due_at <= $4 AND (head.claim_until IS NULL OR head.claim_until <= $4) THEN $5 ELSE t.holder END,
			claim_until = CASE WHEN $3 AND head.due_at <= $4 AND (head.claim_until IS NULL OR head.claim_until <= $4) THEN $6 ELSE t.claim_until END
		FROM head
		WHERE t.id = head.id AND NOT EXISTS (SELECT 1 FROM `+s.table+` WHERE id = $7)
		RETURNING `+prefixed("t.", retryColumns)+`, coalesce(t.holder = $5 AND t.claim_until = $6, false)`,
		item.Observer, key, c.TTL > 0, c.Now, cmp.Or(c.Next, c.Holder), c.Now.Add(c.TTL), item.ID)
	br := s.pool.SendBatch(ctx, batch)
	next, claimed, err := completeResults(br, len(dead))
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ports.RetryItem{}, false, interpretError(op, err)
	}
	return next, claimed, nil
}

// completeResults reads the answers of Complete's batch.
func completeResults(br pgx.BatchResults, dead int) (ports.RetryItem, bool, error) {
	if _, err := br.Exec(); err != nil {
		return ports.RetryItem{}, false, err
	}
	var deleted, stored int64
	var holder *string
	if err := br.QueryRow().Scan(&deleted, &stored, &holder); err != nil {
		return ports.RetryItem{}, false, err
	}
	switch {
	case deleted == 0 && holder == nil:
		return ports.RetryItem{}, false, pgx.ErrNoRows
	case deleted == 0:
		return ports.RetryItem{}, false, fmt.Errorf("held by %q: %w", *holder, ports.ErrClaimLost)
	case stored != int64(dead):
		return ports.RetryItem{}, false, fmt.Errorf("%d of %d dead letters stored", stored, dead)
	}
	var next ports.RetryItem
	var claimed bool
	rows, err := br.Query()
	if err != nil {
		return next, false, err
	}
	defer rows.Close()
	for rows.Next() {
		if next, err = scanRetry(scanWithClaimed{rows, &claimed}); err != nil {
			return next, false, err
		}
	}
	return next, claimed, rows.Err()
}

// scanWithClaimed scans a retry row followed by a claimed flag.
type scanWithClaimed struct {
	rows    pgx.Rows
	claimed *bool
}

func (s scanWithClaimed) Scan(dest ...any) error { return s.rows.Scan(append(dest, s.claimed)...) }

// deadColumns are dead letters as column arrays, for one INSERT.
type deadColumns struct {
	eventID, event, observer, action, actionType, errText []string
	attempts                                              []int32
}

func (c *deadColumns) add(d ports.DeadLetter) error {
	envelope, err := d.Event.Envelope()
	if err != nil {
		return fmt.Errorf("encode event %q: %w", d.Event.ID, err)
	}
	c.eventID = append(c.eventID, d.Event.ID)
	c.event = append(c.event, string(envelope))
	c.observer = append(c.observer, d.Observer)
	c.action = append(c.action, d.Action)
	c.actionType = append(c.actionType, string(d.ActionType))
	c.errText = append(c.errText, storableText(d.Error))
	c.attempts = append(c.attempts, int32(min(d.Attempts, 1<<30)))
	return nil
}

// Release drops holder's claims.
func (s *Retries) Release(ctx context.Context, holder string) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("release claims of %q", holder)
	if holder == "" {
		return 0, errors.New("postgres: release claims: empty holder")
	}
	tag, err := s.pool.Exec(ctx, `UPDATE `+s.table+` SET holder = NULL, claim_until = NULL WHERE holder = $1`, holder)
	if err != nil {
		return 0, interpretError(op, err)
	}
	return tag.RowsAffected(), nil
}

// Renew extends holder's claims to until.
func (s *Retries) Renew(ctx context.Context, holder string, until time.Time) (int64, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("renew claims of %q", holder)
	if holder == "" {
		return 0, errors.New("postgres: renew claims: empty holder")
	}
	tag, err := s.pool.Exec(ctx, `UPDATE `+s.table+` SET claim_until = $2 WHERE holder = $1`, holder, until)
	if err != nil {
		return 0, interpretError(op, err)
	}
	return tag.RowsAffected(), nil
}

// MakeDue makes the actions of endpoint in due items due at now.
func (s *Retries) MakeDue(ctx context.Context, endpoint string, now time.Time) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	op := "make " + endpoint + " due"
	nowJSON, err := json.Marshal(now)
	if err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE `+s.table+` SET
			actions = (SELECT jsonb_agg(CASE WHEN a->>'endpoint' = $1 AND (a->>'due')::timestamptz > $2 AND NOT coalesce((a->>'woken')::boolean, false)
					THEN jsonb_set(jsonb_set(a, '{due}', $3::jsonb), '{woken}', 'true'::jsonb) ELSE a END ORDER BY o)
				FROM jsonb_array_elements(actions) WITH ORDINALITY AS x(a, o)),
			due_at = LEAST(due_at, $2)
		WHERE state = 'due' AND endpoints @> ARRAY[$1::text]
			AND EXISTS (SELECT 1 FROM jsonb_array_elements(actions) a
				WHERE a->>'endpoint' = $1 AND (a->>'due')::timestamptz > $2 AND NOT coalesce((a->>'woken')::boolean, false))`,
		endpoint, now, string(nowJSON))
	if err != nil {
		return 0, interpretError(op, err)
	}
	return tag.RowsAffected(), nil
}

// Keys calls fn for each key with parked items, as the rows arrive.
func (s *Retries) Keys(ctx context.Context, fn func(ports.RetryKey) error) error {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "retry keys"
	rows, err := s.pool.Query(ctx, `SELECT observer, entity_key, count(*) FROM `+s.table+` GROUP BY observer, entity_key`)
	if err != nil {
		return interpretError(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k ports.RetryKey
		if err := rows.Scan(&k.Observer, &k.EntityKey, &k.Items); err != nil {
			return interpretError(op, err)
		}
		k.EntityKey = entityKey(k.EntityKey)
		if err := fn(k); err != nil {
			return err
		}
	}
	return interpretError(op, rows.Err())
}

// Repair makes the first item of each key due when it is waiting.
func (s *Retries) Repair(ctx context.Context) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `UPDATE `+s.table+` SET state = 'due'
		WHERE state = 'waiting' AND id IN (SELECT min(id) FROM `+s.table+` GROUP BY observer, entity_key)`)
	if err != nil {
		return 0, interpretError("repair retries", err)
	}
	return tag.RowsAffected(), nil
}

// Counts counts items by state, observer and endpoint.
func (s *Retries) Counts(ctx context.Context) (ports.RetryCounts, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	const op = "count retries"
	c := ports.RetryCounts{ByObserver: map[string]int64{}, ByEndpoint: map[string]int64{}}
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'due'), count(*) FILTER (WHERE state = 'waiting'),
			(SELECT min((a->>'first_failure')::timestamptz) FROM `+s.table+` r, jsonb_array_elements(r.actions) a
				WHERE a ? 'first_failure')
		FROM `+s.table).Scan(&c.Due, &c.Waiting, &oldest)
	if err != nil {
		return c, interpretError(op, err)
	}
	if oldest != nil {
		c.OldestFailure = *oldest
	}
	for _, q := range []struct {
		sql string
		m   map[string]int64
	}{
		{`SELECT observer, count(*) FROM ` + s.table + ` GROUP BY observer`, c.ByObserver},
		{`SELECT e, count(*) FROM ` + s.table + `, unnest(endpoints) AS e GROUP BY e`, c.ByEndpoint},
	} {
		rows, err := s.pool.Query(ctx, q.sql)
		if err != nil {
			return c, interpretError(op, err)
		}
		var name string
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&name, &n}, func() error { q.m[name] = n; return nil }); err != nil {
			return c, interpretError(op, err)
		}
	}
	return c, nil
}

// insertDead stores the dead letters of a settlement in tx. Texts are made
// storable (PostgreSQL text holds neither NUL nor invalid UTF-8).
func (s *Retries) insertDead(ctx context.Context, tx pgx.Tx, dead []ports.DeadLetter) error {
	for _, d := range dead {
		envelope, err := d.Event.Envelope()
		if err != nil {
			return fmt.Errorf("encode event %q: %w", d.Event.ID, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.dead+`
			(event_id, event, observer, action, action_type, error, attempts, raw)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			d.Event.ID, string(envelope), d.Observer, d.Action, string(d.ActionType), storableText(d.Error), d.Attempts, d.Raw); err != nil {
			return err
		}
	}
	return nil
}

// storableText replaces what a PostgreSQL text value cannot hold.
func storableText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func encodeActions(actions []ports.RetryAction) (string, error) {
	acts := slices.Clone(actions)
	for i := range acts {
		acts[i].LastError = storableText(acts[i].LastError)
	}
	b, err := json.Marshal(acts)
	if err != nil {
		return "", fmt.Errorf("encode actions: %w", err)
	}
	return string(b), nil
}

// undecodableRetry is a retry row whose event or actions the code cannot
// read back (stored by an older version, edited by hand).
type undecodableRetry struct {
	id  int64
	err error
}

func (u undecodableRetry) Error() string {
	return fmt.Sprintf("decode retry %d: %v", u.id, u.err)
}

// Unwrap keeps the decoding error in the chain.
func (u undecodableRetry) Unwrap() error { return u.err }

// deadLetterUndecodable moves an undecodable item, claimed by holder, to
// the dead letters in one statement: its stored event as it is, its
// actions' names, the reason. Left in the store it would fail every claim
// of the batches it falls in, and hold its entity's later events back for
// ever. (An entity the processor counts as blocked stays so until the
// next reader term reloads the counts: its later events go through the
// store meanwhile, in order.)
func (s *Retries) deadLetterUndecodable(ctx context.Context, bad undecodableRetry, holder string) error {
	reason := storableText(fmt.Sprintf("the retry store's item %d cannot be decoded (%v): its actions were not run; the stored event is kept as it was", bad.id, bad.err))
	_, err := s.pool.Exec(ctx, `WITH gone AS (
			DELETE FROM `+s.table+` WHERE id = $1 AND holder = $2
			RETURNING event, observer, actions)
		INSERT INTO `+s.dead+` (event_id, event, observer, action, action_type, error, attempts)
		SELECT coalesce(CASE WHEN jsonb_typeof(event) = 'object' THEN event->>'id' END, ''), event, observer,
		       coalesce((SELECT string_agg(a->>'action', ', ') FROM jsonb_array_elements(
		           CASE WHEN jsonb_typeof(actions) = 'array' THEN actions ELSE '[]' END) AS a
		         WHERE jsonb_typeof(a) = 'object'), ''),
		       '', $3, 0
		FROM gone`, bad.id, holder, reason)
	if err != nil {
		return fmt.Errorf("dead-letter undecodable retry %d: %w", bad.id, err)
	}
	return nil
}

func scanRetry(row pgx.Row) (ports.RetryItem, error) {
	var (
		it             ports.RetryItem
		event, actions []byte
		state          string
	)
	if err := row.Scan(&it.ID, &event, &it.Observer, &it.EntityKey, &actions, &it.Endpoints, &it.Due, &state, &it.CreatedAt); err != nil {
		return it, err
	}
	it.EntityKey = entityKey(it.EntityKey)
	it.State = ports.RetryState(state)
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	if err := dec.Decode(&it.Event); err != nil {
		return it, undecodableRetry{it.ID, fmt.Errorf("event: %w", err)}
	}
	if err := json.Unmarshal(actions, &it.Actions); err != nil {
		return it, undecodableRetry{it.ID, fmt.Errorf("actions: %w", err)}
	}
	return it, nil
}

func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ", ")
	for i := range parts {
		parts[i] = prefix + parts[i]
	}
	return strings.Join(parts, ", ")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
