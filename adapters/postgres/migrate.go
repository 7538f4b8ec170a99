package postgres

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
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
// sends pg_notify(TG_ARGV[0]) with an empty payload.
const notifyFunctionName = "notify_change_log"

// MigrateConfig names what Migrate creates or completes.
type MigrateConfig struct {
	ChangeLogTable string // default "core.tb_entity_change_log" (schema-qualified; unqualified means public)
	Channel        string // default "fraiseql_events"
	ObserverSchema string // default "observer"
}

func (c MigrateConfig) withDefaults() MigrateConfig {
	c.ChangeLogTable = cmp.Or(c.ChangeLogTable, DefaultChangeLogTable)
	c.Channel = cmp.Or(c.Channel, DefaultChannel)
	c.ObserverSchema = cmp.Or(c.ObserverSchema, DefaultObserverSchema)
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
	return nil
}

// changeLogColumns are the change-log columns: FraiseQL's contract plus
// txid and object_key, which the reader needs. The definitions are used
// both by CREATE TABLE and to add what an existing table lacks.
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
	{"txid", "xid8 NOT NULL DEFAULT pg_current_xact_id()"},
	{"object_key", "text"},
}

// Migrate creates the change log when it is missing, completes an existing
// one (FraiseQL's own) with the txid and object_key columns and the
// (txid, pk) index, installs the statement-level NOTIFY trigger and
// creates the observer's schema. It is idempotent and runs in one
// transaction under an advisory lock, so concurrent calls are safe. On an
// up-to-date database it changes nothing and takes no table locks.
func Migrate(ctx context.Context, pool *pgxpool.Pool, cfg MigrateConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	tbl, _ := parseTableName("change_log_table", cfg.ChangeLogTable)
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
			return interpretError("migrate: lock", err)
		}
		for _, stmt := range observerSchemaStatements(cfg.ObserverSchema) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return interpretError("migrate: observer schema", err)
			}
		}
		if err := migrateChangeLog(ctx, tx, tbl); err != nil {
			return err
		}
		return migrateNotify(ctx, tx, tbl, cfg.ObserverSchema, cfg.Channel)
	})
	if err != nil {
		return fmt.Errorf("postgres: migrate %s: %w", tbl, err)
	}
	return nil
}

func migrateChangeLog(ctx context.Context, tx pgx.Tx, tbl tableName) error {
	var schemaExists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, tbl.Schema).Scan(&schemaExists); err != nil {
		return interpretError("look up schema", err)
	}
	if !schemaExists {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{tbl.Schema}.Sanitize()); err != nil {
			return interpretError("create schema", err)
		}
	}
	present, err := tableColumns(ctx, tx, tbl)
	if err != nil {
		return err
	}
	if len(present) == 0 {
		defs := make([]string, 0, len(changeLogColumns))
		for _, c := range changeLogColumns {
			defs = append(defs, pgx.Identifier{c.name}.Sanitize()+" "+c.def)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE `+tbl.Sanitize()+` (`+strings.Join(defs, ", ")+`)`); err != nil {
			return interpretError("create change log", err)
		}
	} else {
		if !present["pk_entity_change_log"] {
			return errors.New("existing table has no pk_entity_change_log column")
		}
		for _, c := range changeLogColumns {
			if present[c.name] {
				continue
			}
			if _, err := tx.Exec(ctx, `ALTER TABLE `+tbl.Sanitize()+` ADD COLUMN `+pgx.Identifier{c.name}.Sanitize()+" "+c.def); err != nil {
				return interpretError("add column "+c.name, err)
			}
		}
	}
	idx := indexName(tbl.Table, "txid_idx")
	var idxExists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{tbl.Schema, idx}.Sanitize()).Scan(&idxExists); err != nil {
		return interpretError("look up index", err)
	}
	if !idxExists {
		if _, err := tx.Exec(ctx, `CREATE INDEX `+pgx.Identifier{idx}.Sanitize()+` ON `+tbl.Sanitize()+` (txid, pk_entity_change_log)`); err != nil {
			return interpretError("create index", err)
		}
	}
	return nil
}

// tableColumns returns the column names of tbl; empty when it does not exist.
func tableColumns(ctx context.Context, q pgx.Tx, tbl tableName) (map[string]bool, error) {
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
	if _, err := tx.Exec(ctx, `CREATE OR REPLACE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM pg_notify(TG_ARGV[0], '');
	RETURN NULL;
END
$fn$`); err != nil {
		return interpretError("create notify function", err)
	}
	// The trigger is replaced only when missing or pointing at another
	// channel or function, so that a routine migrate takes no table lock.
	var current string
	err := tx.QueryRow(ctx, `
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
