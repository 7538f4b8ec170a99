package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// interpretError translates a driver error at the boundary: "no rows"
// becomes ports.ErrNotFound, a missing table or schema wraps
// ports.ErrNotMigrated, connection failures wrap ports.ErrUnavailable, and
// errors that the same statement with the same values can never get past
// (data exceptions such as 22P05, a \u0000 in jsonb; integrity constraint
// violations; program limits such as a value too large) wrap
// domain.ErrPermanent, so that no loop retries them. The operation names
// what was attempted.
func interpretError(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: %w", op, ports.ErrNotFound)
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("postgres: %s: %w: %w", op, ports.ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		return fmt.Errorf("postgres: %s: %w", op, notMigrated{err})
	}
	if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P03") {
		return fmt.Errorf("postgres: %s: %w: %w", op, ports.ErrUnavailable, err)
	}
	if errors.As(err, &pgErr) && permanentSQLState(pgErr.Code) {
		return fmt.Errorf("postgres: %s: %w: %w", op, domain.ErrPermanent, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// permanentSQLState reports the SQLSTATE classes whose errors depend only
// on the statement and its values: 22 data exception (invalid text
// representation, untranslatable character, numeric out of range, ...),
// 23 integrity constraint violation and 54 program limit exceeded.
func permanentSQLState(code string) bool {
	if len(code) < 2 {
		return false
	}
	switch code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

// notMigrated marks a missing table or schema with ports.ErrNotMigrated,
// keeping the driver's message.
type notMigrated struct{ error }

func (e notMigrated) Unwrap() []error { return []error{e.error, ports.ErrNotMigrated} }

// inTx runs fn in a transaction of db: fn's own errors come back as they
// are (fn interprets the driver's), while a failure to begin or to commit
// is interpreted here, as op.
func inTx(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, op string, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return txFuncError{err}
		}
		return nil
	})
	var fe txFuncError
	if errors.As(err, &fe) {
		return fe.err
	}
	return interpretError(op, err)
}

// txFuncError carries the error of inTx's fn through pgx.BeginFunc.
type txFuncError struct{ err error }

func (e txFuncError) Error() string { return e.err.Error() }
func (e txFuncError) Unwrap() error { return e.err }
