package postgres

import (
	"cmp"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// defaultStateSchema is where the observer keeps its own state
// (checkpoints, dead letters, leases) unless configured otherwise.
const defaultStateSchema = "observer"

// stateTable validates the constructor arguments of a state store and
// returns the quoted, schema-qualified name of its table. The tables come
// from observerSchemaStatements (run by Migrate).
func stateTable(pool *pgxpool.Pool, schema, table string) (string, error) {
	if pool == nil {
		return "", errors.New("nil pool")
	}
	schema = cmp.Or(schema, defaultStateSchema)
	if strings.TrimSpace(schema) == "" || strings.ContainsRune(schema, 0) {
		return "", fmt.Errorf("invalid schema name %q", schema)
	}
	return pgx.Identifier{schema, table}.Sanitize(), nil
}
