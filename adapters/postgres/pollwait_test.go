package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// TestPollPause walks the pauses of a poll-only reader on a clock the test
// moves: busyPoll while rows came less than pollBusyFor ago, then pauses
// doubling from twice busyPoll to the poll interval, and rows start over.
func TestPollPause(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	c := &ChangeLog{
		cfg:  ChangeLogConfig{PollInterval: 100 * time.Millisecond, PollOnly: true},
		tune: defaultWakeTuning,
		now:  func() time.Time { return now },
	}
	c.active() // rows were read
	for range 3 {
		if d := c.pollPause(); d != c.tune.busyPoll {
			t.Fatalf("pause while busy = %v, want busyPoll %v", d, c.tune.busyPoll)
		}
		now = now.Add(c.tune.pollBusyFor / 4)
	}
	now = now.Add(c.tune.pollBusyFor)
	var got []time.Duration
	for range 10 {
		got = append(got, c.pollPause())
	}
	want := []time.Duration{2, 4, 8, 16, 32, 64, 100, 100, 100, 100}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("idle pauses = %v, want %v ms", got, want)
		}
	}
	c.active()
	if d := c.pollPause(); d != c.tune.busyPoll {
		t.Fatalf("pause after rows = %v, want busyPoll again", d)
	}
	now = now.Add(c.tune.pollBusyFor)
	if d := c.pollPause(); d != 2*c.tune.busyPoll {
		t.Fatalf("first idle pause after rows = %v, want the backoff started over at %v", d, 2*c.tune.busyPoll)
	}
	// A poll interval below busyPoll bounds every pause.
	c.cfg.PollInterval = time.Microsecond
	c.active()
	if d := c.pollPause(); d != time.Microsecond {
		t.Fatalf("busy pause with a 1µs poll interval = %v", d)
	}
}

// TestChangeLogPollOnly reads a change log migrated without the notify
// trigger: no LISTEN session, rows committed while the reader waits are
// found by its polls, and a late commit is still not passed over.
func TestChangeLogPollOnly(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	if err := Migrate(ctx, pool, MigrateConfig{PollOnly: true}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if n := notifyTriggers(t, pool); n != 0 {
		t.Fatalf("%d notify triggers after a poll-only migrate, want none", n)
	}
	cl, _ := newTestChangeLog(t, pool, ChangeLogConfig{PollInterval: 50 * time.Millisecond, PollOnly: true})
	if cl.listener != nil {
		t.Fatal("a poll-only change log started a listener")
	}
	var listening int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'`).Scan(&listening); err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	if listening != 0 {
		t.Fatalf("%d LISTEN sessions for a poll-only change log", listening)
	}

	// Idle: Wait returns within the poll interval (and not at once for
	// ever: it blocks at least busyPoll).
	waitCtx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	for range 8 {
		if err := cl.Wait(waitCtx); err != nil {
			t.Fatalf("idle Wait = %v, want nil after the pause", err)
		}
	}

	// A late commit: the open transaction's row is held back, the later
	// one with it, and both come in commit-safe order once it commits.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit: no-op
	insertChange(t, tx, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "early"})
	insertChange(t, pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "late"})
	if err := cl.Wait(waitCtx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if b := mustRead(t, cl, ports.Position{}, 10); len(b.Records) != 0 {
		t.Fatalf("read %d records while an older transaction is open, want 0", len(b.Records))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	got, _ := readUntil(t, cl, ports.Position{}, 2)
	if got[0].Event.EntityID != "early" || got[1].Event.EntityID != "late" {
		t.Fatalf("read %q, %q; want early, late", got[0].Event.EntityID, got[1].Event.EntityID)
	}
	cl.Close()
	cl.Close() // idempotent without a listener
}

// TestMigratePollOnlyDropsTheTrigger switches a change log from notify to
// poll and back: the poll-only migrate drops the trigger, a second one
// changes nothing, and a notify migrate installs it again.
func TestMigratePollOnlyDropsTheTrigger(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	for i, step := range []struct {
		pollOnly bool
		want     int
	}{{false, 1}, {true, 0}, {true, 0}, {false, 1}} {
		if err := Migrate(ctx, pool, MigrateConfig{PollOnly: step.pollOnly}); err != nil {
			t.Fatalf("step %d: Migrate(PollOnly %v): %v", i, step.pollOnly, err)
		}
		if n := notifyTriggers(t, pool); n != step.want {
			t.Fatalf("step %d: %d notify triggers after Migrate(PollOnly %v), want %d", i, n, step.pollOnly, step.want)
		}
	}
}

// notifyTriggers counts the notify triggers on the default change log.
func notifyTriggers(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'core.tb_entity_change_log'::regclass AND tgname = $1`,
		notifyTriggerName).Scan(&n); err != nil {
		t.Fatalf("count notify triggers: %v", err)
	}
	return n
}
