package postgres

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

func TestLeaseConformance(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	porttest.RunLease(t, func(t *testing.T) ports.Lease {
		l, err := NewLease(pool, newSchema(t))
		if err != nil {
			t.Fatalf("NewLease: %v", err)
		}
		return l
	})
}

func TestLeaseJudgesExpiryByDatabaseClock(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	schema := newSchema(t)
	ctx := t.Context()
	l, err := NewLease(pool, schema)
	if err != nil {
		t.Fatalf("NewLease: %v", err)
	}
	if held, err := l.Acquire(ctx, "reader", "a", time.Hour); err != nil || !held {
		t.Fatalf("Acquire = %v, %v", held, err)
	}
	// Move the stored expiry into the database's past: the lease is free now,
	// whatever this process's clock says.
	if _, err := pool.Exec(ctx, `UPDATE `+l.table+` SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatalf("expire lease: %v", err)
	}
	if held, err := l.Acquire(ctx, "reader", "b", time.Hour); err != nil || !held {
		t.Fatalf("Acquire of an expired lease = %v, %v", held, err)
	}
	var expiresIn time.Duration
	if err := pool.QueryRow(ctx, `SELECT extract(epoch FROM expires_at - now())::float8 * 1e9 FROM `+l.table+` WHERE name = 'reader'`).Scan(&expiresIn); err != nil {
		t.Fatalf("read expiry: %v", err)
	}
	if expiresIn < 59*time.Minute || expiresIn > time.Hour {
		t.Fatalf("lease expires in %v, want about the 1h ttl", expiresIn)
	}
	for _, ttl := range []time.Duration{0, -time.Second, time.Nanosecond} {
		if _, err := l.Acquire(ctx, "other", "a", ttl); err == nil {
			t.Fatalf("Acquire with ttl %v succeeded", ttl)
		}
	}
}
