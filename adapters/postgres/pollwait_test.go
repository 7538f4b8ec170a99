package postgres

import (
	"context"
	"strings"
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
	if err := Migrate(ctx, pool, MigrateConfig{Trigger: TriggerDrop}); err != nil {
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
	start := time.Now()
	for range 8 {
		if err := cl.Wait(waitCtx); err != nil {
			t.Fatalf("idle Wait = %v, want nil after the pause", err)
		}
	}
	// Never a busy loop: eight idle waits pause at least 2+4+...+50ms
	// (the backoff, capped at the 50ms poll interval).
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("8 idle Waits took %v, want the backed-off pauses (at least 150ms)", took)
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

// TestMigrateTriggerPolicies switches a change log between the policies:
// TriggerDrop drops the trigger, a second one changes nothing,
// TriggerKeep leaves it absent or present as it is, TriggerInstall
// installs it again; an unknown policy is refused.
func TestMigrateTriggerPolicies(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	for i, step := range []struct {
		policy TriggerPolicy
		want   int
	}{{TriggerInstall, 1}, {TriggerDrop, 0}, {TriggerDrop, 0}, {TriggerKeep, 0}, {TriggerInstall, 1}, {TriggerKeep, 1}} {
		if err := Migrate(ctx, pool, MigrateConfig{Trigger: step.policy}); err != nil {
			t.Fatalf("step %d: Migrate(Trigger %d): %v", i, step.policy, err)
		}
		if n := notifyTriggers(t, pool); n != step.want {
			t.Fatalf("step %d: %d notify triggers after Migrate(Trigger %d), want %d", i, n, step.policy, step.want)
		}
	}
	if err := Migrate(ctx, pool, MigrateConfig{Trigger: TriggerKeep + 1}); err == nil || !strings.Contains(err.Error(), "trigger") {
		t.Fatalf("Migrate with an unknown trigger policy = %v, want an error naming it", err)
	}
}

// TestChangeLogWarnsOnTriggerMismatch opens readers on change logs whose
// trigger does not suit them: each logs a warning naming the fix; a
// reader that fits logs none.
func TestChangeLogWarnsOnTriggerMismatch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name          string
		trigger       TriggerPolicy
		pollOnly      bool
		wantWarnAbout string // "" for no warning
	}{
		{"notify reader, trigger installed", TriggerInstall, false, ""},
		{"poll reader, trigger dropped", TriggerDrop, true, ""},
		{"poll reader, trigger installed", TriggerInstall, true, "has the notify trigger but this reader polls"},
		{"notify reader, no trigger", TriggerDrop, false, "has no notify trigger but this reader waits for NOTIFY"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pool := newTestPool(t)
			if err := Migrate(t.Context(), pool, MigrateConfig{Trigger: c.trigger}); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			_, logs := newTestChangeLog(t, pool, ChangeLogConfig{PollInterval: time.Minute, PollOnly: c.pollOnly})
			got := logs.String()
			switch {
			case c.wantWarnAbout == "" && strings.Contains(got, "level=WARN"):
				t.Fatalf("warning for a fitting trigger:\n%s", got)
			case c.wantWarnAbout != "" && (!strings.Contains(got, c.wantWarnAbout) || !strings.Contains(got, "fraiseql-observer migrate")):
				t.Fatalf("log lacks the warning %q and its fix:\n%s", c.wantWarnAbout, got)
			}
		})
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
