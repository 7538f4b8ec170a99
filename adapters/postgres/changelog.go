package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// DefaultPollInterval is the longest Wait blocks when no notification
// arrives.
const DefaultPollInterval = time.Second

// listenReadyTimeout bounds how long NewChangeLog waits for the first
// LISTEN, so that a reader's first Read happens after it.
const listenReadyTimeout = 5 * time.Second

// DefaultMaxEventBytes is the default per-event limit: NATS's default
// max_payload (1 MiB), so that an event the reader accepts fits the bus,
// and a sane webhook body.
const DefaultMaxEventBytes = 1 << 20

// textPerStoredByte bounds how many bytes of JSON text one stored byte of
// jsonb can render to: 6 for an escaped control character (\u0001),
// times 128 for pglz compression (a match of up to 273 bytes costs about
// three). A payload stored in MaxEventBytes/textPerStoredByte bytes or
// less is under the limit whatever it holds.
const textPerStoredByte = 6 * 128

// ChangeLogConfig configures the change-log reader.
type ChangeLogConfig struct {
	Table        string        // default "core.tb_entity_change_log"
	Channel      string        // default "fraiseql_events"
	PollInterval time.Duration // default 1s; the fallback when no NOTIFY arrives
	Source       string        // copied into every Event.Source (database name in multi-database setups)
	// MaxEventBytes is the per-event limit (default 1 MiB): a row whose
	// object_data and object_data_before, as JSON text, and text columns
	// (object_type, modification_type, object_key, fk_contact) weigh more
	// is read without its payload and with its text columns cut, and
	// returned as an invalid record (ports.ErrEventTooLarge).
	MaxEventBytes int64
	// PollOnly reads without NOTIFY (database.wake = "poll", for a change
	// log without the notify trigger: see TriggerDrop): no
	// LISTEN connection, and Wait polls (see pollWait).
	PollOnly bool
	// Entities, when not nil, are the only object_type values whose rows
	// become records: the others (no observer would match them) are
	// examined in the database and skipped there, their payload never
	// rendered nor sent, like NOOP rows. A row with NULL object_type is
	// still returned (an invalid record). Nil returns every row. See
	// SetEntities.
	Entities []string
}

func (c ChangeLogConfig) withDefaults() ChangeLogConfig {
	c.Table = cmp.Or(c.Table, DefaultChangeLogTable)
	c.Channel = cmp.Or(c.Channel, DefaultChannel)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.MaxEventBytes = cmp.Or(c.MaxEventBytes, DefaultMaxEventBytes)
	return c
}

// Validate reports invalid settings, naming the key.
func (c ChangeLogConfig) Validate() error {
	if _, err := parseTableName("change_log_table", c.Table); err != nil {
		return err
	}
	if err := validIdentifier(c.Channel); err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	if c.PollInterval < 0 {
		return fmt.Errorf("poll_interval: %s is negative", c.PollInterval)
	}
	if c.MaxEventBytes < 0 {
		return fmt.Errorf("max_event_bytes: %d is negative", c.MaxEventBytes)
	}
	return nil
}

// ChangeLog reads the change log in commit-safe order: rows are ordered by
// (txid, pk) and only rows of transactions older than the oldest one still
// running are returned, so a transaction that commits late can never be
// skipped. A LISTEN connection wakes Wait, which asks the writers for a
// notification only while it waits (see Wait); the poll interval is the
// fallback. With PollOnly it polls instead (see pollWait). It implements
// ports.EventSource and is safe for concurrent use.
type ChangeLog struct {
	pool     *pgxpool.Pool
	cfg      ChangeLogConfig
	listener *listener
	tune     wakeTuning
	now      func() time.Time
	wake     wakeState
	lastRows atomic.Int64             // records the last Read returned: the next one's first capacity
	entities atomic.Pointer[[]string] // see ChangeLogConfig.Entities; nil: every row
	aheadAt  atomic.Int64             // when a position was last checked against the cluster's ids (Unix ns)

	table   string // the change log, quoted
	logger  *slog.Logger
	readSQL string
}

// wakeTuning paces Wait (see there).
type wakeTuning struct {
	quietMin      time.Duration // bounds of the quiet (no rows read) required before arming
	quietMax      time.Duration
	quietStep     time.Duration // the first quiet requirement above zero
	busyPoll      time.Duration // the pause of a busy reader's Wait
	unsafePollMin time.Duration // first pause while writers that may have missed the arm run
	unsafePollMax time.Duration // the pause doubles up to this
	pollBusyFor   time.Duration // PollOnly: how long after the last rows Wait keeps polling busyPoll
	keepArmedGap  time.Duration // a notification this long after the previous one, to a waiting reader, keeps the arm (listener.keepArm)
}

// defaultWakeTuning keeps the reader within about a millisecond of a
// commit while it is idle or busy.
var defaultWakeTuning = wakeTuning{
	quietMax:      time.Second,
	quietStep:     time.Millisecond,
	busyPoll:      time.Millisecond,
	unsafePollMin: time.Millisecond,
	unsafePollMax: 20 * time.Millisecond,
	pollBusyFor:   100 * time.Millisecond,
	keepArmedGap:  2 * time.Millisecond,
}

// wakeState is what Wait knows of the arm.
type wakeState struct {
	mu         sync.Mutex
	lastActive time.Time     // last read that examined rows, or last notification
	quiet      time.Duration // the quiet required before arming
	armedOnce  bool
	notesAtArm int64         // listener.received at the last arm
	armed      bool          // the listener session holds the wake-up lock for this reader (a reconnection signals, which clears it)
	safe       bool          // every writer that probed before the arm has ended
	horizon    uint64        // next transaction id just after the arm
	pause      time.Duration // the next pause while not yet safe
	readTx     uint64        // the highest transaction id reads reached (their end, or a horizon passed)
	armPause   time.Duration // the next pause after a failed arm (busyPoll again after rows)
	idlePause  time.Duration // PollOnly: the next pause of an idle reader (0: twice busyPoll)
	armPending bool          // an arm went unanswered for a poll interval (warned once)
}

var _ ports.EventSource = (*ChangeLog)(nil)

// NewChangeLog starts the listener and waits (at most 5s, or until ctx
// ends) for its first LISTEN, so that notifications for rows committed
// after the caller's first Read are not lost. A database that is down is
// not an error: the listener keeps reconnecting and Wait falls back to
// polling.
func NewChangeLog(ctx context.Context, pool *pgxpool.Pool, cfg ChangeLogConfig, logger *slog.Logger) (*ChangeLog, error) {
	if pool == nil {
		return nil, errors.New("postgres: new change log: nil pool")
	}
	if logger == nil {
		return nil, errors.New("postgres: new change log: nil logger")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("postgres: new change log: %w", err)
	}
	tbl, _ := parseTableName("change_log_table", cfg.Table)
	c := &ChangeLog{
		pool:    pool,
		cfg:     cfg,
		table:   tbl.Sanitize(),
		logger:  logger,
		wake:    wakeState{armPause: defaultWakeTuning.busyPoll},
		tune:    defaultWakeTuning,
		now:     time.Now,
		readSQL: readSQL(tbl.Sanitize()),
	}
	c.SetEntities(cfg.Entities)
	c.warnOnTrigger(ctx)
	c.warnOnPreparedTransactions(ctx)
	if cfg.PollOnly {
		return c, nil
	}
	c.listener = startListener(pool.Config().ConnConfig.Copy(), cfg.Channel, c.tune.keepArmedGap, logger.With("component", "changelog-listener", "channel", cfg.Channel))
	c.listener.awaitFirstAttempt(ctx, listenReadyTimeout)
	return c, nil
}

// Read returns up to limit rows after `after` that every later reader will
// see in the same order; see ports.EventSource. Rows that cannot become
// events are returned as records with Err set; NOOP and READ rows are
// examined but not returned.
func (c *ChangeLog) Read(ctx context.Context, after ports.Position, limit ports.ReadLimit) (ports.Batch, error) {
	if limit.Rows <= 0 || limit.Bytes < 0 {
		return ports.Batch{}, fmt.Errorf("postgres: read change log: limit %+v: rows must be positive, bytes not negative", limit)
	}
	batch, err := c.boundedRead(ctx, after, limit, false)
	if err == nil && batch.End == after && after.TxID > 0 {
		err = c.checkNotAhead(ctx, after)
	}
	if err == nil || !unrenderable(err) || ctx.Err() != nil {
		return batch, err
	}
	return c.readAroundUnrenderable(ctx, after, limit, err)
}

// nextTxID is about the next transaction id of the cluster (the current
// snapshot's xmax: one past the latest completed); false when it cannot
// be asked.
func (c *ChangeLog) nextTxID(ctx context.Context) (uint64, bool) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	var next string
	if err := c.pool.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text`).Scan(&next); err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(next, 10, 64)
	return n, err == nil
}

// aheadCheckEvery spaces checkNotAhead's queries.
const aheadCheckEvery = time.Minute

// checkNotAhead fails a read after a position no transaction of this
// cluster has reached: a checkpoint restored into another cluster (a
// dump, a new primary built from scratch) or set by hand. Nothing would
// be read until the cluster's ids passed it, weeks or never, without a
// word; the error says so and how to move it. Asked at most every
// aheadCheckEvery, by reads that found nothing.
func (c *ChangeLog) checkNotAhead(ctx context.Context, after ports.Position) error {
	now := c.now().UnixNano()
	if last := c.aheadAt.Load(); now-last < int64(aheadCheckEvery) || !c.aheadAt.CompareAndSwap(last, now) {
		return nil
	}
	n, ok := c.nextTxID(ctx)
	if !ok || after.TxID < n {
		return nil // not ahead, or not known now: a later read asks again
	}
	return fmt.Errorf("postgres: read change log: the position %s is ahead of every transaction of this database (the next id is about %d): "+
		"it was restored from another cluster or set by hand, and nothing after it would be read; move the checkpoint back "+
		"(fraiseql-observer replay --since ..., or PUT /api/observers/checkpoints/{name})", after, n)
}

// boundedRead is read within opTimeout (each statement of a read gets its
// own, the search around an unrenderable row included: that search takes
// seconds per large row and must not run out of a shared budget).
func (c *ChangeLog) boundedRead(ctx context.Context, after ports.Position, limit ports.ReadLimit, withoutPayload bool) (ports.Batch, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	return c.read(ctx, after, limit, withoutPayload)
}

// unrenderable reports a failure of PostgreSQL to render a value as text:
// a jsonb payload whose text passes its 1 GB limit for one value (a few MB
// stored can be: compressed repetitions, control characters written as
// \u0001) fails with "out of memory", SQLSTATE 54000 (or 53200).
func unrenderable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "54000" || pgErr.Code == "53200")
}

// readAroundUnrenderable answers a read that failed because a row in its
// window has a payload PostgreSQL cannot render as text: such a row fails
// every read that reaches it, which would stop the stream there for ever.
// It finds the row (only payloads stored in more than
// MaxEventBytes/textPerStoredByte bytes are rendered to be measured, so
// only those are tried, one by one) and returns the rows before it, or,
// when it is the first, the row itself read without its payload as an
// invalid record (ports.ErrEventTooLarge) to dead-letter. A row found by
// none (cause came from something else) returns cause.
func (c *ChangeLog) readAroundUnrenderable(ctx context.Context, after ports.Position, limit ports.ReadLimit, cause error) (ports.Batch, error) {
	const op = "read change log around a payload that cannot be rendered"
	qctx, cancel := withOpTimeout(ctx)
	defer cancel()
	rows, err := c.pool.Query(qctx, `
		SELECT c.txid::text, c.pk_entity_change_log,
		       coalesce(pg_column_size(c.object_data), 0) + coalesce(pg_column_size(c.object_data_before), 0) > $4
		FROM `+c.table+` AS c
		WHERE (c.txid, c.pk_entity_change_log) > ($1::text::xid8, $2::bigint)
		  AND c.txid < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY c.txid, c.pk_entity_change_log
		LIMIT $3`, strconv.FormatUint(after.TxID, 10), after.Seq, limit.Rows, c.cfg.MaxEventBytes/textPerStoredByte)
	if err != nil {
		return ports.Batch{}, interpretError(op, err)
	}
	type key struct {
		txid string
		pk   int64
		big  bool
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (key, error) {
		var k key
		return k, row.Scan(&k.txid, &k.pk, &k.big)
	})
	if err != nil {
		return ports.Batch{}, interpretError(op, err)
	}
	for i, k := range keys {
		if !k.big {
			continue
		}
		rctx, cancelRender := withOpTimeout(ctx)
		_, rerr := c.pool.Exec(rctx, `
			SELECT coalesce(octet_length(object_data::text), 0) + coalesce(octet_length(object_data_before::text), 0)
			FROM `+c.table+` WHERE txid = $1::text::xid8 AND pk_entity_change_log = $2`, k.txid, k.pk)
		cancelRender()
		switch {
		case rerr == nil:
			continue
		case !unrenderable(rerr):
			return ports.Batch{}, interpretError(op, rerr)
		}
		c.logger.Warn("a change-log row's payload cannot be rendered as JSON text by PostgreSQL; it is read without it, as an invalid event",
			slog.Int64("pk_entity_change_log", k.pk), slog.String("txid", k.txid), slog.String("error", rerr.Error()))
		var before ports.Batch
		if i > 0 { // the rows before it, then it (each failed render takes seconds: not again on the next read)
			if before, err = c.boundedRead(ctx, after, ports.ReadLimit{Rows: i, Bytes: limit.Bytes}, false); err != nil {
				return ports.Batch{}, err
			}
			prev := keys[i-1]
			if txid, _ := strconv.ParseUint(prev.txid, 10, 64); before.End != (ports.Position{TxID: txid, Seq: prev.pk}) {
				return before, nil // the byte budget ended it earlier
			}
		}
		bad, err := c.boundedRead(ctx, cmp.Or(before.End, after), ports.ReadLimit{Rows: 1}, true)
		if err != nil {
			return ports.Batch{}, err
		}
		bad.Records, bad.Skipped = append(before.Records, bad.Records...), bad.Skipped+before.Skipped
		return bad, nil
	}
	return ports.Batch{}, cause
}

// read runs readSQL; withoutPayload reads the rows without their payloads
// and measures them only as stored (nothing is rendered as text), each an
// invalid record: for a row whose payload cannot be rendered.
func (c *ChangeLog) read(ctx context.Context, after ports.Position, limit ports.ReadLimit, withoutPayload bool) (ports.Batch, error) {
	budget := limit.Bytes
	if budget == 0 {
		budget = math.MaxInt64
	}
	maxEvent, measureStored := c.cfg.MaxEventBytes, c.cfg.MaxEventBytes/textPerStoredByte
	if withoutPayload {
		maxEvent, measureStored = -1, math.MaxInt32 // $6 is compared with pg_column_size (int4)
	}
	var entities any // NULL: every row
	if e := c.entities.Load(); e != nil {
		entities = *e
	}
	rows, err := c.pool.Query(ctx, c.readSQL, strconv.FormatUint(after.TxID, 10), after.Seq, limit.Rows, maxEvent, budget, measureStored, entities)
	if err != nil {
		return ports.Batch{}, interpretError("read change log", err)
	}
	defer rows.Close()
	// A reader that keeps up reads a few rows at a time: a batch sized for
	// limit would be allocated and zeroed (limit × ~300 bytes) on every
	// read. The previous read's count sizes this one, so that a draining
	// reader allocates its batch once instead of growing it by doubling.
	batch := ports.Batch{End: after, Records: make([]ports.Record, 0, min(limit.Rows, max(16, int(c.lastRows.Load()))))}
	var r changeRow  // one per read: nothing keeps it (record copies what it needs)
	var weight int64 // the sizes the byte budget counted
	for rows.Next() {
		r = changeRow{}
		var wanted bool
		if err := rows.Scan(&r.PK, &r.TxID, &wanted, &r.ID, &r.CreatedAt, &r.ObjectType, &r.ModificationType,
			&r.EntityID, &r.ObjectID, &r.ObjectKey, &r.ObjectData, &r.ObjectDataBefore, &r.TenantID, &r.UserID, &r.Size); err != nil {
			return ports.Batch{}, interpretError("read change log", err)
		}
		txid, err := strconv.ParseUint(r.TxID, 10, 64)
		if err != nil {
			return ports.Batch{}, fmt.Errorf("postgres: read change log: txid %q: %w", r.TxID, err)
		}
		pos := ports.Position{TxID: txid, Seq: r.PK}
		batch.End = pos
		if r.Size <= int64(maxEvent) {
			weight += r.Size
		}
		r.unrenderable = withoutPayload
		if !wanted {
			batch.Skipped++ // an entity no observer names: examined, not returned
			continue
		}
		if rec, ok := c.record(pos, &r); ok {
			batch.Records = append(batch.Records, rec)
		} else {
			batch.Skipped++
		}
	}
	if err := rows.Err(); err != nil {
		return ports.Batch{}, interpretError("read change log", err)
	}
	c.lastRows.Store(int64(len(batch.Records)))
	if c.listener != nil {
		// The read covers its last transaction whole unless a limit may
		// have cut it: the row limit reached, or the byte budget (a row
		// left out weighs at most MaxEventBytes and did not fit, so what
		// came weighs more than the budget less that). A kept arm's Wait
		// must not block while that transaction's other rows are unread.
		tx := max(after.TxID, batch.End.TxID)
		examined := len(batch.Records) + batch.Skipped // every row is one or the other
		if cut := examined == limit.Rows || limit.Bytes > 0 && weight > limit.Bytes-int64(c.cfg.MaxEventBytes); cut && tx > 0 {
			tx--
		}
		c.reached(tx)
	}
	if batch.End != after {
		c.active()
	}
	return batch, nil
}

// Backlog counts the committed rows after `after`, including rows held
// back by older open transactions.
func (c *ChangeLog) Backlog(ctx context.Context, after ports.Position) (int64, error) {
	return backlog(ctx, c.pool, c.table, after)
}

// backlog counts the committed rows of table (quoted) after `after`, rows
// held back by open transactions included: the reader's Backlog and the
// operator's (ChangeLogStats) are the same count.
func backlog(ctx context.Context, pool *pgxpool.Pool, table string, after ports.Position) (int64, error) {
	ctx, cancel := withLongOpTimeout(ctx)
	defer cancel()
	var n int64
	err := pool.QueryRow(ctx, `SELECT count(*) FROM `+table+`
		WHERE (txid, pk_entity_change_log) > ($1::text::xid8, $2::bigint)`,
		strconv.FormatUint(after.TxID, 10), after.Seq).Scan(&n)
	if err != nil {
		return 0, interpretError("change log backlog", err)
	}
	return n, nil
}

// OldestTransactionAge is the age of the oldest open transaction that holds
// an xid (and so holds the reader back), anywhere in the cluster, prepared
// transactions included; 0 when there is none. Sessions of other roles are
// only visible with pg_read_all_stats.
func (c *ChangeLog) OldestTransactionAge(ctx context.Context) (time.Duration, error) {
	return oldestTransactionAge(ctx, c.pool)
}

// oldestTransactionAge is the age of the oldest open transaction holding an
// xid in the cluster, prepared ones included; 0 when there is none.
func oldestTransactionAge(ctx context.Context, pool *pgxpool.Pool) (time.Duration, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	var micros int64
	err := pool.QueryRow(ctx, `
		SELECT coalesce(floor(extract(epoch FROM clock_timestamp() - min(started)) * 1e6), 0)::bigint
		FROM (
			SELECT xact_start AS started FROM pg_stat_activity
			WHERE backend_xid IS NOT NULL AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
			UNION ALL
			SELECT prepared FROM pg_prepared_xacts
		) open_transactions`).Scan(&micros)
	if err != nil {
		return 0, interpretError("oldest transaction age", err)
	}
	return time.Duration(max(micros, 0)) * time.Microsecond, nil
}

// Close stops the listener and closes its connection. Read keeps working
// (the pool belongs to the caller); Wait then only polls.
func (c *ChangeLog) Close() {
	if c.listener != nil {
		c.listener.close()
	}
}
