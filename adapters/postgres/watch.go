package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// captureTriggerName is the row-level trigger Watch installs on a table.
const captureTriggerName = "fraiseql_observer_capture"

// WatchConfig names the table to capture and where its events go.
type WatchConfig struct {
	Table          string // "schema.table" (or "table" = public)
	Entity         string // default: the table name
	ChangeLogTable string // default "core.tb_entity_change_log"
	ObserverSchema string // default "observer" (where the trigger function lives)
	// LockTimeout bounds how long replacing the trigger waits for the
	// table's lock, and so how long the application's queries queued
	// behind it wait (default DefaultMigrateLockTimeout); LockAttempts is
	// how many times it is tried (default DefaultMigrateLockAttempts),
	// each failure logged to Logger (nil: discarded).
	LockTimeout  time.Duration
	LockAttempts int
	Logger       *slog.Logger
}

// lock is c's lock bounds and logger, defaults applied.
func (c WatchConfig) lock() (lockRetry, *slog.Logger) {
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return lockRetry{timeout: cmp.Or(c.LockTimeout, DefaultMigrateLockTimeout),
		attempts: cmp.Or(c.LockAttempts, DefaultMigrateLockAttempts)}, logger
}

// watchTarget is a validated WatchConfig.
type watchTarget struct {
	table     tableName
	changeLog tableName
	entity    string
	schema    string // observer schema
	function  string // trigger function name, in schema
}

func (c WatchConfig) target() (watchTarget, error) {
	tbl, err := parseTableName("table", c.Table)
	if err != nil {
		return watchTarget{}, err
	}
	changeLog, err := parseTableName("change_log_table", cmp.Or(c.ChangeLogTable, DefaultChangeLogTable))
	if err != nil {
		return watchTarget{}, err
	}
	schema := cmp.Or(c.ObserverSchema, DefaultObserverSchema)
	if err := validIdentifier(schema); err != nil {
		return watchTarget{}, fmt.Errorf("observer_schema: %w", err)
	}
	switch {
	case tbl == changeLog:
		// Its own trigger would write to it again, without end: every
		// write of the change log would fail (stack depth exceeded).
		return watchTarget{}, fmt.Errorf("table %s is the change log itself", tbl)
	case tbl.Schema == schema:
		return watchTarget{}, fmt.Errorf("table %s is in the observer schema %q: the service's own tables are not watched", tbl, schema)
	}
	entity := cmp.Or(c.Entity, tbl.Table)
	if strings.TrimSpace(entity) == "" {
		return watchTarget{}, errors.New("entity: empty name")
	}
	return watchTarget{
		table:     tbl,
		changeLog: changeLog,
		entity:    entity,
		schema:    schema,
		function:  derivedName("capture_", tbl.Schema, tbl.Table),
	}, nil
}

// primaryKey is the single-column primary key of a watched table.
type primaryKey struct {
	column string
	isUUID bool
}

// Watch installs a row-level capture trigger on cfg.Table that writes every
// INSERT, UPDATE and DELETE to the change log: object_key is the primary
// key as text, object_id the key when it is a uuid (else a uuid derived
// from the table and key), object_data the new row ('{}' for DELETE) and
// object_data_before the old row for UPDATE and DELETE. The table needs a
// single-column primary key. Watching again replaces the trigger (e.g. to
// change the entity name).
func Watch(ctx context.Context, pool *pgxpool.Pool, cfg WatchConfig) error {
	t, err := cfg.target()
	if err != nil {
		return fmt.Errorf("postgres: watch: %w", err)
	}
	lock, logger := cfg.lock()
	err = lockedTx(ctx, pool, "watch", lock, logger, func(tx pgx.Tx) error {
		pk, err := lookupPrimaryKey(ctx, tx, t.table)
		if err != nil {
			return err
		}
		var logExists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.changeLog.Sanitize()).Scan(&logExists); err != nil {
			return interpretError("look up change log", err)
		}
		if !logExists {
			return fmt.Errorf("change log %s does not exist (run migrate first)", t.changeLog)
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{t.schema}.Sanitize()); err != nil {
			return interpretError("create observer schema", err)
		}
		if _, err := tx.Exec(ctx, captureFunctionSQL(t, pk)); err != nil {
			return interpretError("create capture function", err)
		}
		previous, _, err := captureFunctionOf(ctx, tx, t.table)
		if err != nil {
			return err
		}
		fn := pgx.Identifier{t.schema, t.function}.Sanitize()
		trg := pgx.Identifier{captureTriggerName}.Sanitize()
		if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS `+trg+` ON `+t.table.Sanitize()); err != nil {
			return interpretError("drop capture trigger", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TRIGGER `+trg+` AFTER INSERT OR UPDATE OR DELETE ON `+t.table.Sanitize()+
			` FOR EACH ROW EXECUTE FUNCTION `+fn+`()`); err != nil {
			return interpretError("create capture trigger", err)
		}
		// A function left by an earlier Watch under another name (the
		// table was renamed, or the observer schema changed) goes, unless
		// another table's trigger still uses it.
		if previous != "" && previous != fn {
			return dropUnusedFunction(ctx, tx, previous)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: watch %s: %w%s", t.table, err, caseHint(t.table, err))
	}
	return nil
}

// caseHint says, for a table not found whose name holds capitals, that
// names are taken as written: SQL folds a name written without quotes
// to lower case, so `watch Sales.Items` does not find sales.items.
func caseHint(tbl tableName, err error) string {
	if !errors.Is(err, ports.ErrNotFound) || strings.ToLower(tbl.String()) == tbl.String() {
		return ""
	}
	return fmt.Sprintf(" (names are taken as written, capitals included: a table created without quotes is %s)", strings.ToLower(tbl.String()))
}

// Unwatch removes the capture trigger and its function from cfg.Table. It
// returns an error wrapping ports.ErrNotFound when the table is not
// watched.
func Unwatch(ctx context.Context, pool *pgxpool.Pool, cfg WatchConfig) error {
	t, err := cfg.target()
	if err != nil {
		return fmt.Errorf("postgres: unwatch: %w", err)
	}
	lock, logger := cfg.lock()
	err = lockedTx(ctx, pool, "unwatch", lock, logger, func(tx pgx.Tx) error {
		fn, watched, err := captureFunctionOf(ctx, tx, t.table)
		if err != nil {
			return err
		}
		if !watched {
			return fmt.Errorf("table is not watched: %w", ports.ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `DROP TRIGGER `+pgx.Identifier{captureTriggerName}.Sanitize()+` ON `+t.table.Sanitize()); err != nil {
			return interpretError("drop capture trigger", err)
		}
		return dropUnusedFunction(ctx, tx, fn)
	})
	if err != nil {
		return fmt.Errorf("postgres: unwatch %s: %w", t.table, err)
	}
	return nil
}

// dropUnusedFunction drops the trigger function fn (quoted, qualified)
// unless a trigger still uses it.
func dropUnusedFunction(ctx context.Context, tx pgx.Tx, fn string) error {
	var used bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgfoid = to_regprocedure($1))`,
		fn+"()").Scan(&used); err != nil {
		return interpretError("look up capture function", err)
	}
	if used {
		return nil
	}
	if _, err := tx.Exec(ctx, `DROP FUNCTION IF EXISTS `+fn+`()`); err != nil {
		return interpretError("drop capture function", err)
	}
	return nil
}

// captureFunctionOf returns the quoted, qualified name of the function
// behind tbl's capture trigger (found by the trigger, not by the derived
// name, so a table renamed since Watch still unwatches cleanly); ok is
// false when tbl has no capture trigger.
func captureFunctionOf(ctx context.Context, tx pgx.Tx, tbl tableName) (fn string, ok bool, err error) {
	var schema, name string
	err = tx.QueryRow(ctx, `
		SELECT pn.nspname, p.proname
		FROM pg_trigger t
		JOIN pg_class c ON c.oid = t.tgrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_proc p ON p.oid = t.tgfoid
		JOIN pg_namespace pn ON pn.oid = p.pronamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND t.tgname = $3`,
		tbl.Schema, tbl.Table, captureTriggerName).Scan(&schema, &name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, interpretError("look up capture trigger", err)
	}
	return pgx.Identifier{schema, name}.Sanitize(), true, nil
}

// lookupPrimaryKey finds the single-column primary key of tbl.
func lookupPrimaryKey(ctx context.Context, tx pgx.Tx, tbl tableName) (primaryKey, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))`,
		tbl.Schema, tbl.Table).Scan(&exists); err != nil {
		return primaryKey{}, interpretError("look up table", err)
	}
	if !exists {
		return primaryKey{}, fmt.Errorf("table does not exist: %w", ports.ErrNotFound)
	}
	rows, err := tx.Query(ctx, `
		SELECT a.attname, a.atttypid = 'uuid'::regtype
		FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = $1::text::regclass AND i.indisprimary
		ORDER BY a.attnum`, tbl.Sanitize())
	if err != nil {
		return primaryKey{}, interpretError("look up primary key", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (primaryKey, error) {
		var k primaryKey
		err := row.Scan(&k.column, &k.isUUID)
		return k, err
	})
	if err != nil {
		return primaryKey{}, interpretError("look up primary key", err)
	}
	switch len(keys) {
	case 0:
		return primaryKey{}, errors.New("table has no primary key")
	case 1:
		return keys[0], nil
	default:
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = k.column
		}
		return primaryKey{}, fmt.Errorf("table has a composite primary key (%s); a single-column key is required", strings.Join(names, ", "))
	}
}

// captureFunctionSQL is the CREATE OR REPLACE FUNCTION of t's capture
// trigger. Table, entity and key column are constants of the function
// body. The key is read from the row as JSON (r ->> column), not as a
// field of the record: after the key column is renamed or dropped, the
// rows come without a key (the reader dead-letters them as invalid, the
// raw row kept) instead of failing every write of the application with
// `record "new" has no field`. Its text is the column's as JSON writes it
// (the same as ::text for uuid, integer, numeric and text keys).
func captureFunctionSQL(t watchTarget, pk primaryKey) string {
	objectID := "md5(" + quoteLiteral(t.table.String()+":") + " || k)::uuid"
	if pk.isUUID {
		objectID = "k::uuid"
	}
	insert := func(op, data, before string) string {
		return `INSERT INTO ` + t.changeLog.Sanitize() +
			` (object_type, modification_type, object_key, object_id, object_data, object_data_before) VALUES (` +
			quoteLiteral(t.entity) + `, ` + quoteLiteral(op) + `, k, ` + objectID + `, ` + data + `, ` + before + `);`
	}
	body := `
DECLARE
	r jsonb;
	k text;
BEGIN
	IF TG_OP = 'DELETE' THEN
		r := to_jsonb(OLD);
	ELSE
		r := to_jsonb(NEW);
	END IF;
	k := r ->> ` + quoteLiteral(pk.column) + `;
	IF TG_OP = 'INSERT' THEN
		` + insert("INSERT", "r", "NULL") + `
	ELSIF TG_OP = 'UPDATE' THEN
		` + insert("UPDATE", "r", "to_jsonb(OLD)") + `
	ELSIF TG_OP = 'DELETE' THEN
		` + insert("DELETE", "'{}'::jsonb", "r") + `
	END IF;
	RETURN NULL;
END
`
	tag := "$capture$"
	for i := 0; strings.Contains(body, tag); i++ {
		tag = fmt.Sprintf("$capture%d$", i)
	}
	// SECURITY DEFINER: the trigger writes the change log with the rights
	// of the role that ran watch, so an application role that may write
	// its table but not the change log (nor use its schema) keeps writing.
	// The search_path is pinned, as a definer's function must.
	return `CREATE OR REPLACE FUNCTION ` + pgx.Identifier{t.schema, t.function}.Sanitize() +
		`() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS ` + tag + body + tag
}
