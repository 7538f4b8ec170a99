package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// interpretError translates a driver error at the boundary: "no rows"
// becomes ports.ErrNotFound, a missing table or schema wraps
// ports.ErrNotMigrated and connection failures wrap ports.ErrUnavailable. The operation names what was attempted.
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
	if errors.As(err, &pgErr) && (pgErr.Code[:2] == "08" || pgErr.Code == "57P01" || pgErr.Code == "57P03") {
		return fmt.Errorf("postgres: %s: %w: %w", op, ports.ErrUnavailable, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// notMigrated marks a missing table or schema with ports.ErrNotMigrated,
// keeping the driver's message.
type notMigrated struct{ error }

func (e notMigrated) Unwrap() []error { return []error{e.error, ports.ErrNotMigrated} }
