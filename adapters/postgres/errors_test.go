package postgres

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
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

// A call on the stream's path, or an operator's, whose connection neither
// answers nor breaks ends with an error after opTimeout (longOpTimeout for
// work that grows with a backlog) instead of waiting for ever. Not
// parallel: it shortens opTimeout, and the parallel tests wait until the
// sequential ones are done.
func TestStreamCallsEndWhenTheDatabaseHangs(t *testing.T) {
	dbURL := testenv.NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testsupport.StartProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(mustPort(t, proxy.Addr()))
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	t.Cleanup(proxy.Cut) // before the pool's close, which would wait on the frozen connections
	if err := Migrate(t.Context(), pool, MigrateConfig{ChangeLogTable: DefaultChangeLogTable, Channel: DefaultChannel, ObserverSchema: "observer"}); err != nil {
		t.Fatal(err)
	}
	cps, err := NewCheckpoints(pool, "observer")
	if err != nil {
		t.Fatal(err)
	}
	lease, err := NewLease(pool, "observer")
	if err != nil {
		t.Fatal(err)
	}
	retries, err := NewRetries(pool, "observer")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := NewDeadLetters(pool, "observer")
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := NewDeliveryLog(pool, "observer")
	if err != nil {
		t.Fatal(err)
	}
	endpoints, err := NewEndpointStates(pool, "observer")
	if err != nil {
		t.Fatal(err)
	}
	stats, err := NewChangeLogStats(pool, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(t.Context()); err != nil { // a connection open before the freeze
		t.Fatal(err)
	}
	old, oldLong := opTimeout.Load(), longOpTimeout.Load()
	opTimeout.Store(int64(300 * time.Millisecond))
	longOpTimeout.Store(int64(300 * time.Millisecond))
	t.Cleanup(func() { opTimeout.Store(old); longOpTimeout.Store(oldLong) })
	proxy.Freeze()
	bg := context.Background()
	for name, call := range map[string]func() error{
		"save checkpoint": func() error { return cps.Save(bg, "r", ports.Position{TxID: 1}) },
		"acquire lease":   func() error { _, err := lease.Acquire(bg, "l", "me", time.Minute); return err },
		// longOpTimeout: work that grows with a backlog
		"claim retries": func() error {
			_, err := retries.ClaimDue(bg, ports.RetryClaim{Holder: "me", TTL: time.Minute}, 10, nil)
			return err
		},
		"retry keys":         func() error { return retries.Keys(bg, func(ports.RetryKey) error { return nil }) },
		"repair retries":     func() error { _, err := retries.Repair(bg); return err },
		"release claims":     func() error { _, err := retries.Release(bg, "me"); return err },
		"prune dead letters": func() error { _, err := dead.Prune(bg, ports.Cutoff{Before: time.Now()}, 100); return err },
		// The operator's calls (status, dlq, deliveries, resend) used to
		// wait for ever: their context ends only on a signal.
		"list dead letters":  func() error { _, err := dead.List(bg, ports.DeadLetterFilter{}); return err },
		"get dead letter":    func() error { _, err := dead.Get(bg, 1); return err },
		"remove dead letter": func() error { return dead.Remove(bg, 1) },
		"mark retried":       func() error { return dead.MarkRetried(bg, 1, "x", time.Now()) },
		"dead letter stats":  func() error { _, err := dead.Stats(bg); return err },
		"list deliveries":    func() error { _, err := deliveries.List(bg, ports.DeliveryFilter{}); return err },
		"list endpoints":     func() error { _, err := endpoints.List(bg); return err },
		"list checkpoints":   func() error { _, err := cps.List(bg); return err },
		"lease state":        func() error { _, err := lease.State(bg, "l"); return err },
		"backlog":            func() error { _, err := stats.Backlog(bg, ports.Position{}); return err },
		"count between":      func() error { _, err := stats.CountBetween(bg, ports.Position{}, ports.Position{TxID: 9}); return err },
		"first since":        func() error { _, _, err := stats.FirstSince(bg, time.Now()); return err },
		"find event":         func() error { _, err := stats.Event(bg, "00000000-0000-0000-0000-000000000001"); return err },
		"oldest transaction": func() error { _, err := oldestTransactionAge(bg, pool); return err },
		"count retries":      func() error { _, err := retries.Counts(bg); return err },
		// Found by a review: these waited for ever too.
		"append deliveries": func() error {
			return deliveries.Append(bg, []ports.DeliveryRecord{{At: time.Now(), EventID: "e", Observer: "o", Action: "a", Endpoint: "x", Attempt: 1, Trigger: "t", Outcome: "ok"}})
		},
		"prune deliveries":            func() error { _, err := deliveries.Prune(bg, time.Now()); return err },
		"count dead letters":          func() error { _, err := dead.Count(bg); return err },
		"count prunable dead letters": func() error { _, err := dead.CountPrunable(bg, ports.Cutoff{Before: time.Now()}); return err },
	} {
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- call() }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s through a frozen connection succeeded", name)
			}
			t.Logf("%s: %v after %v", name, err, time.Since(start).Round(time.Millisecond))
		case <-time.After(waitTimeout):
			t.Errorf("%s through a frozen connection still waiting after %v (opTimeout 300ms)", name, waitTimeout)
		}
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
