package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Lease grants named leases through the observer schema's leases table, so
// that one of several replicas reads the change log at a time. Expiry is
// judged by the database clock (now()), never by the replicas' clocks.
// Safe for concurrent use.
type Lease struct {
	pool  *pgxpool.Pool
	table string
}

var _ ports.Lease = (*Lease)(nil)

// NewLease returns a lease table on schema (schema "" means "observer");
// the table must exist (Migrate creates it).
func NewLease(pool *pgxpool.Pool, schema string) (*Lease, error) {
	table, err := stateTable(pool, schema, "leases")
	if err != nil {
		return nil, fmt.Errorf("postgres: new lease: %w", err)
	}
	return &Lease{pool: pool, table: table}, nil
}

// Acquire takes name for holder when it is free or expired, or renews it
// when holder has it, in one atomic statement; either way it is held until
// the database's now()+ttl. ttl is kept to the microsecond.
func (l *Lease) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("acquire lease %q", name)
	if ttl < time.Microsecond {
		return false, fmt.Errorf("postgres: %s: ttl %v is not positive", op, ttl)
	}
	if holder == "" {
		return false, fmt.Errorf("postgres: %s: empty holder", op)
	}
	var got string
	err := l.pool.QueryRow(ctx, `INSERT INTO `+l.table+` AS l (name, holder, expires_at)
		VALUES ($1, $2, now() + $3 * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE l.holder = $2 OR l.expires_at < now()
		RETURNING holder`, name, holder, ttl.Microseconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) { // another holder's lease is still valid
		return false, nil
	}
	if err != nil {
		return false, interpretError(op, err)
	}
	return got == holder, nil
}

// Release frees name if holder has it; otherwise it does nothing.
func (l *Lease) Release(ctx context.Context, name, holder string) error {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	_, err := l.pool.Exec(ctx, `DELETE FROM `+l.table+` WHERE name = $1 AND holder = $2`, name, holder)
	return interpretError(fmt.Sprintf("release lease %q", name), err)
}
