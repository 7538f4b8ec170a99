package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolConfig describes the connection pool.
type PoolConfig struct {
	URL            string
	MaxConns       int
	ConnectTimeout time.Duration
	// Once makes Open try a single time (one-shot commands fail at once
	// when the database is down) instead of retrying until ctx ends.
	Once bool
}

// DB is an open connection pool.
type DB struct {
	Pool *pgxpool.Pool
}

// ErrBadURL wraps a connection string that does not parse.
type ErrBadURL struct {
	Err error
	url string // the connection string, to scrub its secrets from Err's text
}

func (e *ErrBadURL) Error() string {
	return "cannot parse database url: " + scrub(e.Err.Error(), e.url)
}
func (e *ErrBadURL) Unwrap() error { return e.Err }

// Open creates a pool and waits until the database answers, retrying with
// capped exponential backoff (logging each failure) until ctx ends, or
// trying once with cfg.Once. A URL that does not parse is an *ErrBadURL.
func Open(ctx context.Context, cfg PoolConfig, logger *slog.Logger) (*DB, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, &ErrBadURL{Err: err, url: cfg.URL}
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = int32(min(cfg.MaxConns, 1<<20))
	}
	if cfg.ConnectTimeout > 0 {
		pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, interpretError("open pool", err)
	}
	backoff := 200 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, max(pcfg.ConnConfig.ConnectTimeout, time.Second))
		err := pool.Ping(pctx)
		cancel()
		if err == nil {
			return &DB{Pool: pool}, nil
		}
		if ctx.Err() != nil || cfg.Once {
			pool.Close()
			return nil, fmt.Errorf("postgres: database unreachable at %s: %w", Redact(cfg.URL), &redactedError{err: err, conn: cfg.URL})
		}
		logger.Error("database unreachable, retrying", slog.String("database", Redact(cfg.URL)),
			slog.String("error", scrub(err.Error(), cfg.URL)), slog.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error { return interpretError("ping", d.Pool.Ping(ctx)) }

// Close closes the pool.
func (d *DB) Close() { d.Pool.Close() }

// opTimeout bounds each call of the stream's path on a connection of the
// pool (a read of the change log, a checkpoint, a lease, a dead letter
// parked, an item of the retry store, an endpoint's state) whose context has no
// sooner deadline: a connection that neither answers nor breaks, or a
// statement queued behind a lock for longer, becomes an error the caller
// retries or reports instead of a wait without end. Every such statement
// is a bounded read or a few rows by an index; 30s is far beyond any of
// them. Statements whose work grows with a backlog (MakeDue's update of
// an endpoint's whole backlog; ClaimDue, which walks past the items of
// skipped endpoints; Release, by holder without an index; Keys and
// Repair over every parked item; a batch of pruning) are bounded by
// longOpTimeout instead; migrations by their lock timeouts. The operator's
// calls (status, dlq list and show, deliveries, resend's look-up, the
// counts behind them) are bounded the same way: those by key or index by
// opTimeout, the listings and counts that scan by longOpTimeout, so that
// a command run while a table is locked (a VACUUM FULL, a migration)
// ends in an error instead of hanging. (Atomic: a test shortens them.)
var opTimeout, longOpTimeout atomic.Int64

func init() {
	opTimeout.Store(int64(30 * time.Second))
	longOpTimeout.Store(int64(5 * time.Minute))
}

// withOpTimeout is ctx bounded by opTimeout.
func withOpTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(opTimeout.Load()))
}

// withLongOpTimeout is ctx bounded by longOpTimeout: far beyond what the
// statements whose work grows with a backlog take (seconds over millions
// of rows), so that a connection that neither answers nor breaks still
// ends in an error the caller retries or reports.
func withLongOpTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(longOpTimeout.Load()))
}
