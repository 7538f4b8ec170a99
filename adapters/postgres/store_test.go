package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/internal/testenv"
)

// newStateSchemas opens a pool on a fresh database for one top-level test
// and returns a function that creates a fresh observer schema in it, so
// every subtest of a conformance suite gets isolated tables.
func newStateSchemas(t *testing.T) (*pgxpool.Pool, func(t *testing.T) string) {
	t.Helper()
	url := testenv.NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close) // runs before NewDatabase's drop
	return pool, func(t *testing.T) string {
		t.Helper()
		schema := testenv.Name("obs")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, stmt := range observerSchemaStatements(schema) {
			if _, err := pool.Exec(ctx, stmt); err != nil {
				t.Fatalf("create observer schema %s: %v", schema, err)
			}
		}
		return schema
	}
}

func TestStateStoreConstructors(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none") // lazy: never dialled here
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close)
	cases := []struct {
		name    string
		pool    *pgxpool.Pool
		schema  string
		wantErr bool
	}{
		{"DefaultSchema", pool, "", false},
		{"NamedSchema", pool, "state", false},
		{"NilPool", nil, "", true},
		{"BlankSchema", pool, "  ", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err1 := NewCheckpoints(tc.pool, tc.schema)
			_, err2 := NewDeadLetters(tc.pool, tc.schema)
			_, err3 := NewLease(tc.pool, tc.schema)
			for i, err := range []error{err1, err2, err3} {
				if (err != nil) != tc.wantErr {
					t.Fatalf("constructor %d error = %v, want error %v", i, err, tc.wantErr)
				}
			}
		})
	}
}
