package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// This file holds the helpers for names: parsed table names and the
// columns the catalog lists for one, derived identifiers, and quoting.

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
