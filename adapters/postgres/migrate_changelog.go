package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// This file adapts the change-log table: its columns, the txid backfill,
// NOT NULL through a validated check, and the (txid, pk) index.

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

// create makes a fresh change log, index included, in one transaction: the
// table is new, so nobody waits for it.
func (m *migrator) create(ctx context.Context) error {
	return inTx(ctx, m.conn, "migrate: create change log", func(tx pgx.Tx) error {
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
	return m.execLocked(ctx, "add columns", stmts)
}

// backfill gives every row with a NULL txid the constant backfillTxID, in
// pk ranges of BatchSize rows, one transaction each, so that writers are
// never held and an interrupted run loses at most one batch. Each range
// starts at the first NULL row, which skips gaps in pk and what an earlier
// run already did.
func (m *migrator) backfill(ctx context.Context) error {
	var total int64
	m.logger.Info("counting the change-log rows without a txid (a scan of the table)")
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
		m.logger.Info("validating the txid check (a scan of the table; writers are not held)")
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
