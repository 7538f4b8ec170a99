package postgres

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// interpretError sorts server errors by SQLSTATE, and one without a code
// (a proxy or a non-standard server can send that) is passed on wrapped,
// not a panic.
func TestInterpretErrorBySQLState(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		code        string
		unavailable bool
		permanent   bool
	}{
		{"", false, false},
		{"0", false, false},
		{"08006", true, false},
		{"57P01", true, false},
		{"23505", false, true},
	} {
		err := interpretError("read", &pgconn.PgError{Code: c.code, Message: "m"})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || errors.Is(err, ports.ErrUnavailable) != c.unavailable || errors.Is(err, domain.ErrPermanent) != c.permanent {
			t.Errorf("interpretError(code %q) = %v: unavailable %v, permanent %v; want %v, %v",
				c.code, err, errors.Is(err, ports.ErrUnavailable), errors.Is(err, domain.ErrPermanent), c.unavailable, c.permanent)
		}
	}
}

// inTx returns fn's errors as they are, and interprets a failure to
// begin (connection refused: unavailable) or to commit (a deferred
// unique constraint: permanent) under its operation.
func TestInTxInterpretsBeginAndCommit(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), testenv.NewDatabase(t))
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `CREATE TABLE u (k int UNIQUE DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}

	own := errors.New("fn's own")
	if err := inTx(ctx, pool, "op", func(pgx.Tx) error { return own }); err != own {
		t.Errorf("fn's error came back as %v, want it unchanged", err)
	}

	err = inTx(ctx, pool, "fill u", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO u VALUES (1), (1)`) // checked at COMMIT
		return err
	})
	if !errors.Is(err, domain.ErrPermanent) || !strings.Contains(err.Error(), "postgres: fill u: ") {
		t.Errorf("commit failure = %v, want it interpreted as permanent under \"fill u\"", err)
	}

	down, err := pgxpool.New(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(down.Close)
	if err := inTx(ctx, down, "op", func(pgx.Tx) error { return nil }); !errors.Is(err, ports.ErrUnavailable) {
		t.Errorf("begin failure = %v, want ports.ErrUnavailable", err)
	}
}
