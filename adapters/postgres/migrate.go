package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults shared by the change-log reader, Migrate and Watch.
const (
	DefaultChangeLogTable = "core.tb_entity_change_log"
	DefaultChannel        = "fraiseql_events"
	DefaultObserverSchema = "observer"
)

// migrateLockKey serialises concurrent Migrate calls on one database
// (advisory locks are per database).
const migrateLockKey int64 = 0x4672_6169_7365_514c // "FraiseQL"

// MigrateConfig names what Migrate creates or completes and paces the
// adaptation of an existing change log.
type MigrateConfig struct {
	ChangeLogTable string // default "core.tb_entity_change_log" (schema-qualified; unqualified means public)
	Channel        string // default "fraiseql_events"
	ObserverSchema string // default "observer"

	// Logger receives the progress of long steps (backfill, index build)
	// and lock retries; nil discards them.
	Logger *slog.Logger
	// Warn receives each warning about the existing table (contract
	// columns that allow NULL), for a caller that shows them itself;
	// nil: they are logged (at Warn, to Logger).
	Warn func(string)
	// BatchSize is the pk range backfilled per transaction; default 10000.
	BatchSize int
	// LockTimeout bounds how long a statement that needs a lock conflicting
	// with INSERT waits for it, and so how long writers queued behind it
	// wait; default 5s. It is also the pause before the next attempt.
	LockTimeout time.Duration
	// LockAttempts is how many times such a statement is tried before
	// Migrate gives up; default 5.
	LockAttempts int
	// Trigger says what Migrate does with the notify trigger: install or
	// upgrade it (TriggerInstall, the default), drop it (TriggerDrop), or
	// leave it as it is (TriggerKeep).
	Trigger TriggerPolicy
}

// TriggerPolicy is what Migrate does with the change log's notify trigger.
type TriggerPolicy int

const (
	// TriggerInstall installs or upgrades it: for readers woken by NOTIFY.
	TriggerInstall TriggerPolicy = iota
	// TriggerDrop leaves the change log without it (dropped when present):
	// for readers that poll (ChangeLogConfig.PollOnly, database.wake =
	// "poll"). The trigger costs the writers a share of their commit
	// rate; without it a reader idle for a while finds new rows only at
	// its next poll.
	TriggerDrop
	// TriggerKeep leaves it as it is: for a process that does not read
	// this change log (a NATS worker), whose settings must not decide how
	// its readers are woken.
	TriggerKeep
)

func (c MigrateConfig) withDefaults() MigrateConfig {
	c.ChangeLogTable = cmp.Or(c.ChangeLogTable, DefaultChangeLogTable)
	c.Channel = cmp.Or(c.Channel, DefaultChannel)
	c.ObserverSchema = cmp.Or(c.ObserverSchema, DefaultObserverSchema)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.BatchSize = cmp.Or(c.BatchSize, DefaultMigrateBatchSize)
	c.LockTimeout = cmp.Or(c.LockTimeout, DefaultMigrateLockTimeout)
	c.LockAttempts = cmp.Or(c.LockAttempts, DefaultMigrateLockAttempts)
	return c
}

// Validate reports invalid settings, naming the key.
func (c MigrateConfig) Validate() error {
	if _, err := parseTableName("change_log_table", c.ChangeLogTable); err != nil {
		return err
	}
	if err := validIdentifier(c.Channel); err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	if err := validIdentifier(c.ObserverSchema); err != nil {
		return fmt.Errorf("observer_schema: %w", err)
	}
	switch {
	case c.BatchSize < 0:
		return fmt.Errorf("batch_size: %d is negative", c.BatchSize)
	case c.LockTimeout < 0:
		return fmt.Errorf("lock_timeout: %s is negative", c.LockTimeout)
	case c.LockAttempts < 0:
		return fmt.Errorf("lock_attempts: %d is negative", c.LockAttempts)
	case c.Trigger < TriggerInstall || c.Trigger > TriggerKeep:
		return fmt.Errorf("trigger: unknown policy %d", c.Trigger)
	}
	return nil
}

// Defaults of the migration's pacing.
const (
	DefaultMigrateBatchSize    = 10_000
	DefaultMigrateLockTimeout  = 5 * time.Second
	DefaultMigrateLockAttempts = 5
)

// migrateLockPoll is how often a Migrate waiting for another one tries the
// advisory lock again; migrateProgressEvery is how often the backfill logs
// its progress at Info level.
const (
	migrateLockPoll      = 200 * time.Millisecond
	migrateProgressEvery = 5 * time.Second
)

// Migrate creates the change log when it is missing, completes an existing
// one (FraiseQL's own) with the txid and object_key columns and the
// (txid, pk) index, installs the statement-level wake-up trigger (which
// notifies only while a reader waits, see notifyFunctionBody) and creates
// the observer's schema.
//
// An existing table is never rewritten and writers are never blocked for
// long: every step that needs a table lock that conflicts with INSERT is a
// catalog change run in its own short transaction with lock_timeout set
// (retried, see MigrateConfig), and the index is built concurrently. A
// missing txid column is added NOT NULL with a constant default that the
// old rows read back (no rewrite, no scan); a txid column that exists but is
// nullable (added by hand, or by an interrupted older migration) has its
// NULLs backfilled in batches of one transaction each, resumed where they
// stopped by the next call, and gets NOT NULL through a validated CHECK
// constraint. Rows with a NULL txid are invisible to the reader, so a
// reader must not start before Migrate returned nil.
//
// Migrate is idempotent; concurrent calls on one database are serialised by
// a session-level advisory lock. On an up-to-date database it changes
// nothing and takes no table locks.
func Migrate(ctx context.Context, pool *pgxpool.Pool, cfg MigrateConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	tbl, _ := parseTableName("change_log_table", cfg.ChangeLogTable)
	if err := migrate(ctx, pool, cfg, tbl); err != nil {
		return fmt.Errorf("postgres: migrate %s: %w", tbl, err)
	}
	return nil
}

// migrator runs the steps of one Migrate on a dedicated connection that
// holds the advisory lock.
type migrator struct {
	conn   *pgxpool.Conn
	cfg    MigrateConfig
	tbl    tableName
	logger *slog.Logger
}

func migrate(ctx context.Context, pool *pgxpool.Pool, cfg MigrateConfig, tbl tableName) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return interpretError("migrate: acquire connection", err)
	}
	m := &migrator{conn: conn, cfg: cfg, tbl: tbl, logger: cfg.Logger.With(slog.String("change_log_table", tbl.String()))}
	locked, err := m.lock(ctx)
	defer m.release(locked)
	if err != nil {
		return err
	}
	return m.run(ctx)
}

// lock takes the session-level advisory lock that serialises Migrate calls.
// It polls pg_try_advisory_lock instead of waiting in pg_advisory_lock: a
// session blocked in that call holds a snapshot, and the holder's CREATE
// INDEX CONCURRENTLY waits for every older snapshot of the database, so
// the two would deadlock.
func (m *migrator) lock(ctx context.Context) (bool, error) {
	waiting := false
	for {
		var ok bool
		if err := m.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, migrateLockKey).Scan(&ok); err != nil {
			return false, interpretError("migrate: lock", err)
		}
		if ok {
			return true, nil
		}
		if !waiting {
			m.logger.Info("waiting for another migration of this database to finish")
			waiting = true
		}
		if !sleepCtx(ctx, migrateLockPoll) {
			return false, interpretError("migrate: lock", ctx.Err())
		}
	}
}

// release unlocks and returns the connection to the pool. When the unlock
// cannot be confirmed the connection is closed, which ends the session and
// so releases its locks.
func (m *migrator) release(locked bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if locked {
		var released bool
		err := m.conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1)`, migrateLockKey).Scan(&released)
		if err != nil || !released {
			_ = m.conn.Conn().Close(ctx) // the pool discards a closed connection
		}
	}
	m.conn.Release()
}

func (m *migrator) run(ctx context.Context) error {
	if err := m.observerSchema(ctx); err != nil {
		return err
	}
	st, err := m.inspect(ctx)
	if err != nil {
		return err
	}
	if !st.exists {
		if err := m.create(ctx); err != nil {
			return err
		}
	} else if err := m.complete(ctx, st); err != nil {
		return err
	} else if warn, err := nullableContractColumns(ctx, m.conn, m.tbl); err != nil {
		return err
	} else if warn != "" && m.cfg.Warn != nil {
		m.cfg.Warn(warn)
	} else if warn != "" {
		m.logger.Warn(warn)
	}
	return m.lockedTx(ctx, "notify trigger", func(tx pgx.Tx) error {
		switch m.cfg.Trigger {
		case TriggerDrop:
			return dropNotify(ctx, tx, m.tbl)
		case TriggerKeep:
			return nil
		}
		return migrateNotify(ctx, tx, m.tbl, m.cfg.ObserverSchema, m.cfg.Channel)
	})
}

// observerSchema creates what the observer schema lacks. When every table
// and index is there it runs nothing: CREATE INDEX IF NOT EXISTS takes a
// SHARE lock on its table even when the index exists, so each start
// queued behind (and held back) the running replicas' writes to the
// retry store and the delivery log. The statements that do run wait at
// most the lock timeout for their locks, as the change log's do.
func (m *migrator) observerSchema(ctx context.Context) error {
	stmts := observerSchemaStatements(m.cfg.ObserverSchema)
	var complete bool
	if err := m.conn.QueryRow(ctx, `SELECT bool_and(to_regclass(x) IS NOT NULL) FROM unnest($1::text[]) AS x`,
		schemaObjects(m.cfg.ObserverSchema, stmts)).Scan(&complete); err != nil {
		return interpretError("migrate: look up the observer schema", err)
	}
	if complete {
		return nil
	}
	return m.execLocked(ctx, "observer schema", stmts)
}

// execLocked runs stmts in one transaction of lockedTx, naming op in
// errors.
func (m *migrator) execLocked(ctx context.Context, op string, stmts []string) error {
	return m.lockedTx(ctx, op, func(tx pgx.Tx) error {
		for _, stmt := range stmts {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return interpretError("migrate: "+op, err)
			}
		}
		return nil
	})
}

// schemaObjectPattern finds the table or index a statement of
// observerSchemaStatements creates.
var schemaObjectPattern = regexp.MustCompile(`^CREATE (?:TABLE|INDEX) IF NOT EXISTS (\S+)`)

// schemaObjects names, schema-qualified and quoted, the tables and
// indexes stmts create (an index's name is written without its schema:
// it is its table's).
func schemaObjects(schema string, stmts []string) []string {
	var names []string
	for _, stmt := range stmts {
		sub := schemaObjectPattern.FindStringSubmatch(stmt)
		if sub == nil {
			continue
		}
		name := sub[1]
		if !strings.Contains(name, ".") {
			name = pgx.Identifier{schema, name}.Sanitize()
		}
		names = append(names, name)
	}
	return names
}

// lockedTx runs fn in a transaction whose lock waits are bounded by
// LockTimeout, so that a statement queued behind a long transaction blocks
// the writers queued behind it only that long. A lock timeout (or a
// deadlock) is retried after a pause of LockTimeout, at most LockAttempts
// times in all.
func (m *migrator) lockedTx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	return lockedTx(ctx, m.conn, "migrate: "+op, lockRetry{timeout: m.cfg.LockTimeout, attempts: m.cfg.LockAttempts}, m.logger, fn)
}

// lockRetry bounds the waits of a statement that takes a table lock
// conflicting with the application's writes.
type lockRetry struct {
	timeout  time.Duration // lock_timeout, and the pause between attempts
	attempts int
}

// lockedTx runs fn in a transaction of db with lock_timeout r.timeout; a
// lock timeout (or a deadlock) is retried, with a warning, after a pause
// of r.timeout, at most r.attempts times in all.
func lockedTx(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, op string, r lockRetry, logger *slog.Logger, fn func(pgx.Tx) error) error {
	timeout := strconv.FormatInt(max(r.timeout.Milliseconds(), 1), 10) + "ms"
	for attempt := 1; ; attempt++ {
		err := inTx(ctx, db, op, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, timeout); err != nil {
				return interpretError(op+": set lock_timeout", err)
			}
			return fn(tx)
		})
		if err == nil || !isLockConflict(err) {
			return err
		}
		if attempt >= r.attempts {
			return fmt.Errorf("%s: table lock not obtained in %d attempts of %s (a long transaction holds the table; retry later): %w",
				op, attempt, r.timeout, err)
		}
		logger.Warn("table lock not available, retrying", slog.String("step", op), slog.Int("attempt", attempt),
			slog.Int("max_attempts", r.attempts), slog.Duration("lock_timeout", r.timeout))
		if !sleepCtx(ctx, r.timeout) {
			return interpretError(op, ctx.Err())
		}
	}
}

// isLockConflict reports lock_not_available (lock_timeout) and
// deadlock_detected.
func isLockConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "55P03" || pgErr.Code == "40P01")
}

// contractColumns are the change-log columns every event needs; a row
// with NULL in one of them cannot become an event.
var contractColumns = []string{"id", "created_at", "object_type", "modification_type"}

// nullableContractColumns checks an existing change log and returns a
// warning naming its contract columns that allow NULL, or "" when there
// are none (or the table does not exist). Migrate gives it (to
// MigrateConfig.Warn, or its log); it changes nothing, since tightening a
// column is the application's decision.
func nullableContractColumns(ctx context.Context, q querier, tbl tableName) (string, error) {
	rows, err := q.Query(ctx, `
		SELECT a.attname
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
		  AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnotnull
		  AND a.attname = ANY($3)
		ORDER BY array_position($3, a.attname::text)`, tbl.Schema, tbl.Table, contractColumns)
	if err != nil {
		return "", interpretError("check change log columns", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", interpretError("check change log columns", err)
	}
	if len(names) == 0 {
		return "", nil
	}
	return fmt.Sprintf("change log %s allows NULL in %s: a row with NULL there cannot become an event and is dead-lettered as invalid input (the rows after it still flow); consider ALTER TABLE %s ALTER COLUMN ... SET NOT NULL",
		tbl, strings.Join(names, ", "), tbl.Sanitize()), nil
}
