package postgres

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
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

// notifyTriggerName is the statement-level trigger Migrate installs on the
// change log.
const notifyTriggerName = "fraiseql_observer_notify"

// notifyFunctionName is the trigger function, in the observer schema, that
// wakes the reader of channel TG_ARGV[0] (see notifyFunctionBody).
const notifyFunctionName = "notify_change_log"

// notifyFunctionBody wakes a waiting reader without costing the writers
// their commit rate. PostgreSQL serialises the commits of transactions
// that issued NOTIFY (a database-wide lock held through commit), so the
// function notifies only while a reader waits: a reader about to block
// holds the advisory lock (wakeLockClass, hashtext(channel)) in exclusive
// mode (ChangeLog.Wait), and the share-mode probe here fails exactly then.
// Probes of concurrent writers never conflict with each other, and a
// successful probe is released in the same expression, so it is never
// held past this call (nor across an interruption). A writer that probed
// just before a reader armed does not notify: the reader covers it by
// watching that transaction end (see ChangeLog.Wait). The body reads no
// table and no snapshot, needs no privilege beyond EXECUTE, and a
// REPEATABLE READ writer sees the reader's current state.
var notifyFunctionBody = `
BEGIN
	IF NOT (pg_catalog.pg_try_advisory_lock_shared(` + strconv.Itoa(int(wakeLockClass)) + `, pg_catalog.hashtext(TG_ARGV[0]))
	        AND pg_catalog.pg_advisory_unlock_shared(` + strconv.Itoa(int(wakeLockClass)) + `, pg_catalog.hashtext(TG_ARGV[0]))) THEN
		PERFORM pg_catalog.pg_notify(TG_ARGV[0], '');
	END IF;
	RETURN NULL;
END
`

// MigrateConfig names what Migrate creates or completes and paces the
// adaptation of an existing change log.
type MigrateConfig struct {
	ChangeLogTable string // default "core.tb_entity_change_log" (schema-qualified; unqualified means public)
	Channel        string // default "fraiseql_events"
	ObserverSchema string // default "observer"

	// Logger receives the progress of long steps (backfill, index build)
	// and lock retries; nil discards them.
	Logger *slog.Logger
	// BatchSize is the pk range backfilled per transaction; default 10000.
	BatchSize int
	// LockTimeout bounds how long a statement that needs a lock conflicting
	// with INSERT waits for it, and so how long writers queued behind it
	// wait; default 5s. It is also the pause before the next attempt.
	LockTimeout time.Duration
	// LockAttempts is how many times such a statement is tried before
	// Migrate gives up; default 5.
	LockAttempts int
}

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

// tableName is a parsed "schema.table".
type tableName struct {
	Schema string
	Table  string
}

// Sanitize returns the quoted, schema-qualified identifier.
func (n tableName) Sanitize() string { return pgx.Identifier{n.Schema, n.Table}.Sanitize() }

// String is the unquoted "schema.table".
func (n tableName) String() string { return n.Schema + "." + n.Table }

// parseTableName splits "schema.table" (or "table", meaning public). key
// names the configuration key in errors.
func parseTableName(key, v string) (tableName, error) {
	if strings.TrimSpace(v) == "" {
		return tableName{}, fmt.Errorf("%s: empty table name", key)
	}
	parts := strings.Split(v, ".")
	switch {
	case len(parts) > 2:
		return tableName{}, fmt.Errorf("%s: %q: want schema.table or table", key, v)
	case len(parts) == 1:
		parts = []string{"public", parts[0]}
	}
	for _, p := range parts {
		if err := validIdentifier(p); err != nil {
			return tableName{}, fmt.Errorf("%s: %q: %w", key, v, err)
		}
	}
	return tableName{Schema: parts[0], Table: parts[1]}, nil
}

// validIdentifier rejects names PostgreSQL cannot hold.
func validIdentifier(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return errors.New("empty name")
	case len(s) > 63:
		return errors.New("name longer than 63 bytes")
	case strings.ContainsRune(s, 0):
		return errors.New("name contains a NUL byte")
	}
	return nil
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
	}
	return nil
}

// changeLogColumns are the change-log columns: FraiseQL's contract plus
// txid and object_key, which the reader needs. The definitions are used
// both by CREATE TABLE and to add what an existing table lacks (txid
// excepted: see existingTableDefs).
var changeLogColumns = []struct{ name, def string }{
	{"pk_entity_change_log", "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
	{"id", "uuid NOT NULL DEFAULT gen_random_uuid()"},
	{"created_at", "timestamptz NOT NULL DEFAULT now()"},
	{"object_type", "text NOT NULL"},
	{"modification_type", "text NOT NULL"},
	{"object_id", "uuid"},
	{"object_data", "jsonb"},
	{"object_data_before", "jsonb"},
	{"tenant_id", "uuid"},
	{"fk_contact", "text"},
	{"txid", "xid8 NOT NULL DEFAULT " + txidDefault},
	{"object_key", "text"},
}

// txidDefault is the txid column's default: the inserting transaction's
// 64-bit id.
const txidDefault = "pg_current_xact_id()"

// existingTableDefs replaces a column definition when the column is added to
// an existing table. txid is added with the constant default backfillTxID,
// which PostgreSQL (11+) stores in the catalog instead of writing it into
// every row: the ALTER neither rewrites nor scans the table, old rows read
// back backfillTxID, and NOT NULL holds at once. txidDefault is set in the
// same transaction, for new rows only. (A volatile default would rewrite the
// table under an ACCESS EXCLUSIVE lock; pg_current_xact_id() is STABLE, so
// it would not, but old rows would get the migration's own xid, which a
// transaction that started earlier and inserts later sorts before.)
var existingTableDefs = map[string]string{"txid": "xid8 NOT NULL DEFAULT '" + backfillTxID + "'"}

// backfillTxID is the txid of the rows that existed before the column: it
// sorts before every real transaction id (pg_current_xact_id() is at least
// 3, the first normal xid), so the reader returns the old rows first, in pk
// order, and always below pg_snapshot_xmin.
const backfillTxID = "1"

// txidCheckName is the temporary CHECK (txid IS NOT NULL) constraint that
// lets SET NOT NULL skip its table scan.
const txidCheckName = "fraiseql_observer_txid_not_null"

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

// changeLogState is what the catalog says about an existing change log.
type changeLogState struct {
	exists      bool
	partitioned bool
	columns     map[string]bool
	txidNotNull bool
	txidDefault bool
	check       constraintState
	index       indexState
}

type constraintState int

const (
	checkMissing constraintState = iota
	checkNotValid
	checkValid
)

type indexState int

const (
	indexMissing indexState = iota
	indexInvalid
	indexValid
)

func (m *migrator) indexName() string { return indexName(m.tbl.Table, "txid_idx") }

func (m *migrator) qualifiedIndex() string {
	return pgx.Identifier{m.tbl.Schema, m.indexName()}.Sanitize()
}

func (m *migrator) inspect(ctx context.Context) (changeLogState, error) {
	var st changeLogState
	var relkind string
	err := m.conn.QueryRow(ctx, `
		SELECT c.relkind::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
		m.tbl.Schema, m.tbl.Table).Scan(&relkind)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return st, nil
	case err != nil:
		return st, interpretError("migrate: look up change log", err)
	}
	st.exists, st.partitioned = true, relkind == "p"
	if st.columns, err = tableColumns(ctx, m.conn, m.tbl); err != nil {
		return st, err
	}
	if st.columns["txid"] {
		if err := m.conn.QueryRow(ctx, `
			SELECT a.attnotnull, a.atthasdef FROM pg_attribute a
			WHERE a.attrelid = to_regclass($1) AND a.attname = 'txid' AND NOT a.attisdropped`,
			m.tbl.Sanitize()).Scan(&st.txidNotNull, &st.txidDefault); err != nil {
			return st, interpretError("migrate: look up txid column", err)
		}
	}
	var validated bool
	err = m.conn.QueryRow(ctx, `SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2`,
		m.tbl.Sanitize(), txidCheckName).Scan(&validated)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return st, interpretError("migrate: look up txid check", err)
	case validated:
		st.check = checkValid
	default:
		st.check = checkNotValid
	}
	var valid bool
	err = m.conn.QueryRow(ctx, `SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)`, m.qualifiedIndex()).Scan(&valid)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return st, interpretError("migrate: look up index", err)
	case valid:
		st.index = indexValid
	default:
		st.index = indexInvalid
	}
	return st, nil
}

func (m *migrator) run(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		for _, stmt := range observerSchemaStatements(m.cfg.ObserverSchema) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return interpretError("migrate: observer schema", err)
			}
		}
		return nil
	})
	if err != nil {
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
	} else if warn != "" {
		m.logger.Warn(warn)
	}
	return m.lockedTx(ctx, "notify trigger", func(tx pgx.Tx) error {
		return migrateNotify(ctx, tx, m.tbl, m.cfg.ObserverSchema, m.cfg.Channel)
	})
}

// create makes a fresh change log, index included, in one transaction: the
// table is new, so nobody waits for it.
func (m *migrator) create(ctx context.Context) error {
	return pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{m.tbl.Schema}.Sanitize()); err != nil {
			return interpretError("migrate: create schema", err)
		}
		defs := make([]string, 0, len(changeLogColumns))
		for _, c := range changeLogColumns {
			defs = append(defs, pgx.Identifier{c.name}.Sanitize()+" "+c.def)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE `+m.tbl.Sanitize()+` (`+strings.Join(defs, ", ")+`)`); err != nil {
			return interpretError("migrate: create change log", err)
		}
		if _, err := tx.Exec(ctx, `CREATE INDEX `+pgx.Identifier{m.indexName()}.Sanitize()+` ON `+m.tbl.Sanitize()+` (txid, pk_entity_change_log)`); err != nil {
			return interpretError("migrate: create index", err)
		}
		return nil
	})
}

// complete brings an existing change log up to date, each step resuming
// from whatever an interrupted run left.
func (m *migrator) complete(ctx context.Context, st changeLogState) error {
	if !st.columns["pk_entity_change_log"] {
		return errors.New("existing table has no pk_entity_change_log column")
	}
	if err := m.addColumns(ctx, st); err != nil {
		return err
	}
	if !st.columns["txid"] {
		st.columns["txid"], st.txidDefault, st.txidNotNull = true, true, true
	}
	if !st.txidNotNull {
		if err := m.backfill(ctx); err != nil {
			return err
		}
		if err := m.setNotNull(ctx, st.check); err != nil {
			return err
		}
	} else if st.check != checkMissing {
		if err := m.lockedTx(ctx, "drop txid check", func(tx pgx.Tx) error {
			return m.dropCheck(ctx, tx)
		}); err != nil {
			return err
		}
	}
	if st.index != indexValid {
		return m.buildIndex(ctx, st)
	}
	return nil
}

// addColumns adds the missing columns and txid's default in one short
// transaction: all are catalog changes, and doing them together leaves no
// moment in which new rows get the old rows' txid.
func (m *migrator) addColumns(ctx context.Context, st changeLogState) error {
	var stmts []string
	for _, c := range changeLogColumns {
		if st.columns[c.name] {
			continue
		}
		def := c.def
		if d, ok := existingTableDefs[c.name]; ok {
			def = d
		}
		stmts = append(stmts, `ALTER TABLE `+m.tbl.Sanitize()+` ADD COLUMN `+pgx.Identifier{c.name}.Sanitize()+` `+def)
	}
	if !st.columns["txid"] || !st.txidDefault {
		stmts = append(stmts, `ALTER TABLE `+m.tbl.Sanitize()+` ALTER COLUMN txid SET DEFAULT `+txidDefault)
	}
	if len(stmts) == 0 {
		return nil
	}
	return m.lockedTx(ctx, "add columns", func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return interpretError("migrate: add columns", err)
			}
		}
		return nil
	})
}

// backfill gives every row with a NULL txid the constant backfillTxID, in
// pk ranges of BatchSize rows, one transaction each, so that writers are
// never held and an interrupted run loses at most one batch. Each range
// starts at the first NULL row, which skips gaps in pk and what an earlier
// run already did.
func (m *migrator) backfill(ctx context.Context) error {
	var total int64
	if err := m.conn.QueryRow(ctx, `SELECT count(*) FROM `+m.tbl.Sanitize()+` WHERE txid IS NULL`).Scan(&total); err != nil {
		return interpretError("migrate: count rows to backfill", err)
	}
	if total == 0 {
		return nil
	}
	m.logger.Info("backfilling txid of existing change-log rows", slog.Int64("rows", total), slog.Int("batch_size", m.cfg.BatchSize))
	nextSQL := `SELECT pk_entity_change_log FROM ` + m.tbl.Sanitize() + `
		WHERE pk_entity_change_log >= $1 AND txid IS NULL
		ORDER BY pk_entity_change_log LIMIT 1`
	updateSQL := `UPDATE ` + m.tbl.Sanitize() + ` SET txid = '` + backfillTxID + `'::xid8
		WHERE pk_entity_change_log BETWEEN $1 AND $2 AND txid IS NULL`
	start := time.Now()
	lastLog := start
	var done int64
	for cursor := int64(math.MinInt64); ; {
		var lo int64
		err := m.conn.QueryRow(ctx, nextSQL, cursor).Scan(&lo)
		if errors.Is(err, pgx.ErrNoRows) {
			break
		}
		if err != nil {
			return interpretError("migrate: backfill txid", err)
		}
		hi := lo + int64(m.cfg.BatchSize) - 1
		if hi < lo { // overflow
			hi = math.MaxInt64
		}
		var n int64
		if err := m.lockedTx(ctx, "backfill txid", func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, updateSQL, lo, hi)
			if err != nil {
				return interpretError("migrate: backfill txid", err)
			}
			n = tag.RowsAffected()
			return nil
		}); err != nil {
			return fmt.Errorf("after %d of %d rows: %w", done, total, err)
		}
		done += n
		m.logger.Debug("txid backfill batch", slog.Int64("from_pk", lo), slog.Int64("to_pk", hi),
			slog.Int64("rows", n), slog.Int64("rows_done", done), slog.Int64("rows_total", total))
		if now := time.Now(); now.Sub(lastLog) >= migrateProgressEvery {
			lastLog = now
			elapsed := now.Sub(start)
			rate := float64(done) / elapsed.Seconds()
			attrs := []any{slog.Int64("rows_done", done), slog.Int64("rows_total", total),
				slog.Float64("rows_per_second", math.Round(rate)), slog.Duration("elapsed", elapsed.Round(time.Millisecond))}
			if rate > 0 && total > done {
				attrs = append(attrs, slog.Duration("eta", time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second)))
			}
			m.logger.Info("txid backfill progress", attrs...)
		}
		if hi == math.MaxInt64 {
			break
		}
		cursor = hi + 1
	}
	elapsed := time.Since(start)
	m.logger.Info("txid backfill finished", slog.Int64("rows", done), slog.Duration("elapsed", elapsed.Round(time.Millisecond)),
		slog.Float64("rows_per_second", math.Round(float64(done)/max(elapsed.Seconds(), 1e-9))))
	return nil
}

// setNotNull makes txid NOT NULL without scanning the table under an
// ACCESS EXCLUSIVE lock: a CHECK (txid IS NOT NULL) is added NOT VALID
// (instant), validated under a SHARE UPDATE EXCLUSIVE lock (writers go on),
// then SET NOT NULL uses it instead of a scan and the check is dropped.
func (m *migrator) setNotNull(ctx context.Context, check constraintState) error {
	if check == checkMissing {
		if err := m.lockedTx(ctx, "add txid check", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `ALTER TABLE `+m.tbl.Sanitize()+` ADD CONSTRAINT `+pgx.Identifier{txidCheckName}.Sanitize()+
				` CHECK (txid IS NOT NULL) NOT VALID`)
			return interpretError("migrate: add txid check", err)
		}); err != nil {
			return err
		}
	}
	if check != checkValid {
		start := time.Now()
		if _, err := m.conn.Exec(ctx, `ALTER TABLE `+m.tbl.Sanitize()+` VALIDATE CONSTRAINT `+pgx.Identifier{txidCheckName}.Sanitize()); err != nil {
			return interpretError("migrate: validate txid check", err)
		}
		m.logger.Info("txid check validated", slog.Duration("elapsed", time.Since(start).Round(time.Millisecond)))
	}
	return m.lockedTx(ctx, "set txid not null", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE `+m.tbl.Sanitize()+` ALTER COLUMN txid SET NOT NULL`); err != nil {
			return interpretError("migrate: set txid not null", err)
		}
		return m.dropCheck(ctx, tx)
	})
}

func (m *migrator) dropCheck(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `ALTER TABLE `+m.tbl.Sanitize()+` DROP CONSTRAINT IF EXISTS `+pgx.Identifier{txidCheckName}.Sanitize())
	return interpretError("migrate: drop txid check", err)
}

// buildIndex creates the (txid, pk) index of an existing table
// concurrently, outside a transaction, after dropping an INVALID index an
// interrupted build left. A partitioned table cannot be indexed
// concurrently: its index is built under the usual lock.
func (m *migrator) buildIndex(ctx context.Context, st changeLogState) error {
	if st.index == indexInvalid {
		m.logger.Warn("dropping the invalid txid index left by an interrupted migration", slog.String("index", m.indexName()))
		if _, err := m.conn.Exec(ctx, `DROP INDEX CONCURRENTLY IF EXISTS `+m.qualifiedIndex()); err != nil {
			return interpretError("migrate: drop invalid index", err)
		}
	}
	create := `CREATE INDEX CONCURRENTLY ` + pgx.Identifier{m.indexName()}.Sanitize() + ` ON ` + m.tbl.Sanitize() + ` (txid, pk_entity_change_log)`
	start := time.Now()
	m.logger.Info("building the txid index", slog.String("index", m.indexName()), slog.Bool("concurrently", !st.partitioned))
	if st.partitioned {
		m.logger.Warn("the change log is partitioned: its index is built under a lock that blocks writers")
		if err := m.lockedTx(ctx, "create index", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, strings.Replace(create, " CONCURRENTLY", "", 1))
			return interpretError("migrate: create index", err)
		}); err != nil {
			return err
		}
	} else if _, err := m.conn.Exec(ctx, create); err != nil {
		return interpretError("migrate: create index", err)
	}
	m.logger.Info("txid index built", slog.String("index", m.indexName()), slog.Duration("elapsed", time.Since(start).Round(time.Millisecond)))
	return nil
}

// lockedTx runs fn in a transaction whose lock waits are bounded by
// LockTimeout, so that a statement queued behind a long transaction blocks
// the writers queued behind it only that long. A lock timeout (or a
// deadlock) is retried after a pause of LockTimeout, at most LockAttempts
// times in all.
func (m *migrator) lockedTx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	timeout := strconv.FormatInt(max(m.cfg.LockTimeout.Milliseconds(), 1), 10) + "ms"
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, timeout); err != nil {
				return interpretError("migrate: set lock_timeout", err)
			}
			return fn(tx)
		})
		if err == nil || !isLockConflict(err) {
			return err
		}
		if attempt >= m.cfg.LockAttempts {
			return fmt.Errorf("%s: table lock not obtained in %d attempts of %s (a long transaction holds the table; retry later): %w",
				op, attempt, m.cfg.LockTimeout, err)
		}
		m.logger.Warn("table lock not available, retrying", slog.String("step", op), slog.Int("attempt", attempt),
			slog.Int("max_attempts", m.cfg.LockAttempts), slog.Duration("lock_timeout", m.cfg.LockTimeout))
		if !sleepCtx(ctx, m.cfg.LockTimeout) {
			return interpretError("migrate: "+op, ctx.Err())
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

// NullableContractColumns checks an existing change log (cfg's table) and
// returns a warning naming its contract columns that allow NULL, or ""
// when there are none (or the table does not exist). Migrate logs the same
// warning; it changes nothing, since tightening a column is the
// application's decision.
func NullableContractColumns(ctx context.Context, pool *pgxpool.Pool, table string) (string, error) {
	tbl, err := parseTableName("change_log_table", cmp.Or(table, DefaultChangeLogTable))
	if err != nil {
		return "", fmt.Errorf("postgres: check change log: %w", err)
	}
	return nullableContractColumns(ctx, pool, tbl)
}

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

// querier is a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// tableColumns returns the column names of tbl; empty when it does not exist.
func tableColumns(ctx context.Context, q querier, tbl tableName) (map[string]bool, error) {
	rows, err := q.Query(ctx, `
		SELECT a.attname
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
		  AND a.attnum > 0 AND NOT a.attisdropped`, tbl.Schema, tbl.Table)
	if err != nil {
		return nil, interpretError("look up columns", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, interpretError("look up columns", err)
	}
	present := make(map[string]bool, len(names))
	for _, n := range names {
		present[n] = true
	}
	return present, nil
}

func migrateNotify(ctx context.Context, tx pgx.Tx, tbl tableName, observerSchema, channel string) error {
	fn := pgx.Identifier{observerSchema, notifyFunctionName}.Sanitize()
	// The function is replaced in place (same oid, so the trigger keeps
	// pointing at it): an installation with the notify-always body of
	// earlier versions is upgraded without touching the table. An
	// up-to-date body is left alone, so that no session has to recompile it.
	var body string
	err := tx.QueryRow(ctx, `SELECT coalesce((SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = to_regprocedure($1)), '')`,
		fn+"()").Scan(&body)
	if err != nil {
		return interpretError("look up notify function", err)
	}
	if body != notifyFunctionBody {
		if _, err := tx.Exec(ctx, `CREATE OR REPLACE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS `+
			dollarQuote(notifyFunctionBody)); err != nil {
			return interpretError("create notify function", err)
		}
	}
	// The trigger is replaced only when missing or pointing at another
	// channel or function, so that a routine migrate (or an upgrade of the
	// function) takes no table lock.
	var current string
	err = tx.QueryRow(ctx, `
		SELECT t.tgfoid::regprocedure::text || '|' || encode(t.tgargs, 'escape')
		FROM pg_trigger t
		WHERE t.tgrelid = to_regclass($1) AND t.tgname = $2`,
		tbl.Sanitize(), notifyTriggerName).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return interpretError("look up notify trigger", err)
	}
	var want string
	if err := tx.QueryRow(ctx, `SELECT to_regprocedure($1)::text || '|' || encode(convert_to($2, 'UTF8') || '\x00'::bytea, 'escape')`,
		fn+"()", channel).Scan(&want); err != nil {
		return interpretError("look up notify function", err)
	}
	if current == want {
		return nil
	}
	trg := pgx.Identifier{notifyTriggerName}.Sanitize()
	if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS `+trg+` ON `+tbl.Sanitize()); err != nil {
		return interpretError("drop notify trigger", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TRIGGER `+trg+` AFTER INSERT ON `+tbl.Sanitize()+
		` FOR EACH STATEMENT EXECUTE FUNCTION `+fn+`(`+quoteLiteral(channel)+`)`); err != nil {
		return interpretError("create notify trigger", err)
	}
	return nil
}

// dollarQuote quotes body with a dollar tag that does not occur in it.
func dollarQuote(body string) string {
	tag := "$fn$"
	for i := 0; strings.Contains(body, tag); i++ {
		tag = "$fn" + strconv.Itoa(i) + "$"
	}
	return tag + body + tag
}

// quoteLiteral quotes s as an SQL string literal, independent of
// standard_conforming_strings.
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

var unsafeNameChars = regexp.MustCompile(`[^a-z0-9_]+`)

// derivedName builds an identifier from parts: lower-case letters, digits
// and underscores, at most 63 bytes, made unique by a hash of the exact
// parts so that different inputs never share a name.
func derivedName(prefix string, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	suffix := "_" + hex.EncodeToString(sum[:4])
	body := unsafeNameChars.ReplaceAllString(strings.ToLower(strings.Join(parts, "_")), "_")
	name := prefix + body
	if max := 63 - len(suffix); len(name) > max {
		name = name[:max]
	}
	return name + suffix
}

// indexName is "<table>_<suffix>" cut to 63 bytes.
func indexName(table, suffix string) string {
	name := table + "_" + suffix
	if len(name) > 63 {
		return derivedName("", table, suffix)
	}
	return name
}
