package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// noPoll is a poll interval no test waits out: a reader that gets its rows
// within waitTimeout was woken, not polled.
const noPoll = time.Hour

// notifyCounter counts, on a LISTEN connection of its own, the
// notifications the change-log trigger sends on channel. Its sentinels go
// to a channel of their own, so that they do not wake the reader (which
// would release its arm): notifications of all channels arrive in commit
// order.
type notifyCounter struct {
	pool     *pgxpool.Pool
	channel  string
	sentinel string

	mu        sync.Mutex
	empty     int
	sentinels map[string]bool
	next      int
}

func newNotifyCounter(t testing.TB, pool *pgxpool.Pool, channel string) *notifyCounter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		cancel()
		t.Fatalf("connect counter: %v", err)
	}
	n := &notifyCounter{pool: pool, channel: channel, sentinel: channel + "_sentinel", sentinels: map[string]bool{}}
	for _, ch := range []string{n.channel, n.sentinel} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			cancel()
			t.Fatalf("LISTEN: %v", err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := conn.WaitForNotification(ctx)
			if err != nil {
				return
			}
			n.mu.Lock()
			if msg.Channel == n.channel {
				n.empty++
			} else {
				n.sentinels[msg.Payload] = true
			}
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = conn.Close(context.Background())
	})
	return n
}

// count returns how many trigger notifications were sent by transactions
// that committed before the call: it commits a sentinel notification and
// waits for it, since notifications arrive in commit order.
func (n *notifyCounter) count(t testing.TB) int {
	t.Helper()
	n.mu.Lock()
	n.next++
	sentinel := fmt.Sprintf("sentinel-%d", n.next)
	n.mu.Unlock()
	if _, err := n.pool.Exec(t.Context(), `SELECT pg_notify($1, $2)`, n.sentinel, sentinel); err != nil {
		t.Fatalf("notify sentinel: %v", err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		n.mu.Lock()
		seen, empty := n.sentinels[sentinel], n.empty
		n.mu.Unlock()
		if seen {
			return empty
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel notification not received within %v", waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// loopReader drives a ChangeLog the way application.Reader does: it reads
// from the last batch's End and calls Wait only after a read that examined
// nothing. With hold set it stops after the next records, as a reader busy
// with them does, until release.
type loopReader struct {
	cl *ChangeLog

	reads   atomic.Int64 // Reads done
	hold    atomic.Bool
	held    chan struct{}
	release chan struct{}

	mu  sync.Mutex
	got []ports.Record
	err error

	cancel context.CancelFunc
	done   chan struct{}
}

func startLoopReader(t testing.TB, cl *ChangeLog) *loopReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &loopReader{cl: cl, held: make(chan struct{}, 1), release: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go r.run(ctx)
	t.Cleanup(r.stop)
	return r
}

func (r *loopReader) run(ctx context.Context) {
	defer close(r.done)
	var after ports.Position
	for ctx.Err() == nil {
		b, err := r.cl.Read(ctx, after, ports.ReadLimit{Rows: 100})
		r.reads.Add(1)
		if err != nil {
			if ctx.Err() == nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
			}
			return
		}
		if len(b.Records) > 0 {
			r.mu.Lock()
			r.got = append(r.got, b.Records...)
			r.mu.Unlock()
			if r.hold.Load() {
				r.held <- struct{}{}
				select {
				case <-r.release:
				case <-ctx.Done():
					return
				}
			}
		}
		examined := b.End != after
		after = b.End
		if !examined {
			if err := r.cl.Wait(ctx); err != nil && ctx.Err() == nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return
			}
		}
	}
}

func (r *loopReader) stop() {
	r.cancel()
	<-r.done
}

func (r *loopReader) records() []ports.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitRecords waits until the reader has n records, within limit.
func (r *loopReader) waitRecords(t testing.TB, n int, limit time.Duration) []ports.Record {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		r.mu.Lock()
		got, err := len(r.got), r.err
		r.mu.Unlock()
		if err != nil {
			t.Fatalf("reader: %v", err)
		}
		if got >= n {
			return r.records()
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader has %d of %d records after %v (poll interval %v)", got, n, limit, r.cl.cfg.PollInterval)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// armed reports whether Wait armed and the listener session holds the lock.
func (c *ChangeLog) armed() bool {
	c.wake.mu.Lock()
	defer c.wake.mu.Unlock()
	return c.wake.armed && c.listener.armed.Load()
}

// settled reports whether cl is armed on its current listener session and
// every writer that may have probed before the arm has ended: from then on
// only a notification (or the poll interval) ends its Wait.
func (c *ChangeLog) settled() bool {
	c.wake.mu.Lock()
	defer c.wake.mu.Unlock()
	return c.wake.armed && c.wake.safe && c.listener.armed.Load()
}

// waitUntil polls cond until it holds, failing the test after waitTimeout
// with what was awaited.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testsupport.WaitUntil(t, waitTimeout, 200*time.Microsecond, what, cond)
}

// waitBlocked waits until cl's reader is blocked in Wait, armed and safe,
// its reads past every notified transaction: the state in which a commit's
// notification finds it waiting (see listener.keepArm). A loaded machine
// can take longer than a test's gap between commits to bring the reader
// back into Wait after a read.
func waitBlocked(t testing.TB, cl *ChangeLog) {
	t.Helper()
	waitUntil(t, "the reader blocked in Wait", cl.blocked)
}

func (c *ChangeLog) blocked() bool {
	c.wake.mu.Lock()
	caughtUp := c.listener.notedTx.Load() <= c.wake.readTx
	c.wake.mu.Unlock()
	return c.settled() && caughtUp && c.listener.waiting.Load()
}

func waitSettled(t testing.TB, cl *ChangeLog) {
	t.Helper()
	waitUntil(t, "the change log armed", cl.settled)
}

// settle calls Wait until cl is settled.
func settle(t testing.TB, cl *ChangeLog) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cl.settled() {
		if time.Now().After(deadline) {
			t.Fatalf("change log not armed within %v", waitTimeout)
		}
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		err := cl.Wait(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}
}

// expectWake settles cl, starts a Wait, runs write and requires the Wait
// to end with nil before the poll interval could.
func expectWake(t testing.TB, cl *ChangeLog, write func()) {
	t.Helper()
	settle(t, cl)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cl.Wait(ctx) }()
	write()
	if err := <-done; err != nil {
		t.Fatalf("Wait after the write = %v, want a wake-up within %v (poll interval %v)", err, waitTimeout, cl.cfg.PollInterval)
	}
}

// serverArmed reports whether some session holds the wake-up lock of
// channel in exclusive mode; pid, when not 0, must be that session.
func serverArmed(t testing.TB, pool *pgxpool.Pool, channel string, pid uint32) bool {
	t.Helper()
	var n int
	err := pool.QueryRow(t.Context(), `
		SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND classid = $1::int4::oid AND objid = hashtext($2)::oid AND objsubid = 2
		  AND mode = 'ExclusiveLock' AND granted AND ($3 = 0 OR pid = $3)`, wakeLockClass, channel, int64(pid)).Scan(&n)
	if err != nil {
		t.Fatalf("pg_locks: %v", err)
	}
	return n > 0
}

func waitServerArmed(t testing.TB, pool *pgxpool.Pool, channel string, pid uint32, want bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for serverArmed(t, pool, channel, pid) != want {
		if time.Now().After(deadline) {
			t.Fatalf("wake-up lock of %q held = %v after %v, want %v", channel, !want, waitTimeout, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func insertOrder(ctx context.Context, q execer, key string) error {
	_, err := q.Exec(ctx, `INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_key) VALUES ('Order', 'INSERT', $1)`, key)
	return err
}

func TestChangeLogWakeUp(t *testing.T) {
	t.Parallel()
	t.Run("IdleReaderWokenByCommit", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ChangeLogConfig{PollInterval: noPoll})
		counter := newNotifyCounter(t, b.pool, DefaultChannel)
		r := startLoopReader(t, b.cl)
		waitSettled(t, b.cl)
		if !serverArmed(t, b.pool, DefaultChannel, b.cl.listener.pid.Load()) {
			t.Fatal("settled, but the listener session does not hold the wake-up lock")
		}
		insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "1"})
		r.waitRecords(t, 1, waitTimeout)
		if n := counter.count(t); n != 1 {
			t.Fatalf("%d notifications for one commit to an idle reader, want 1", n)
		}
	})
	t.Run("WriterSpanningTheArm", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ChangeLogConfig{PollInterval: noPoll})
		counter := newNotifyCounter(t, b.pool, DefaultChannel)
		// The writer probes before the reader arms: its probe holds the
		// wake-up lock in share mode until it ends, so the reader cannot
		// arm meanwhile; its commit sends no notification, and the reader
		// must not wait for one.
		tx, err := b.pool.Begin(t.Context())
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit: no-op
		insertChange(t, tx, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "spanning"})
		r := startLoopReader(t, b.cl)
		deadline := time.Now().Add(waitTimeout)
		for r.reads.Load() < 5 {
			if time.Now().After(deadline) {
				t.Fatalf("reader did not read 5 times within %v", waitTimeout)
			}
			time.Sleep(time.Millisecond)
		}
		if b.cl.armed() || serverArmed(t, b.pool, DefaultChannel, b.cl.listener.pid.Load()) {
			t.Fatal("reader armed while a writer that probed is open")
		}
		if got := r.records(); len(got) != 0 {
			t.Fatalf("read %d records of an uncommitted transaction", len(got))
		}
		r.hold.Store(true)
		if err := tx.Commit(t.Context()); err != nil {
			t.Fatalf("commit: %v", err)
		}
		select {
		case <-r.held:
		case <-time.After(waitTimeout):
			t.Fatalf("the spanning writer's row not read within %v (poll interval %v)", waitTimeout, noPoll)
		}
		if got := r.records(); got[0].Event.EntityID != "spanning" {
			t.Fatalf("read %q, want the spanning writer's row", got[0].Event.EntityID)
		}
		if n := counter.count(t); n != 0 {
			t.Fatalf("%d notifications from a writer that probed before the arm, want 0 (the test must exercise the silent path)", n)
		}
		// Found by a poll, not by a notification: the read itself
		// released the arm, so the writers of a busy reader stay silent.
		waitServerArmed(t, b.pool, DefaultChannel, 0, false)
		if err := insertOrder(t.Context(), b.pool, "while busy"); err != nil {
			t.Fatalf("insert: %v", err)
		}
		if n := counter.count(t); n != 0 {
			t.Fatalf("%d notifications while the reader was busy, want 0", n)
		}
		r.hold.Store(false)
		r.release <- struct{}{}
		r.waitRecords(t, 2, waitTimeout)
		waitSettled(t, b.cl) // and the reader went back to waiting for notifications
	})
	t.Run("ManyShortWriters", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ChangeLogConfig{PollInterval: noPoll})
		r := startLoopReader(t, b.cl)
		const rounds, writers = 25, 6
		var slowest time.Duration
		for round := range rounds {
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Go(func() {
					// Transactions of various lengths, so that some probe
					// before the reader arms and commit after.
					err := pgx.BeginFunc(t.Context(), b.pool, func(tx pgx.Tx) error {
						if err := insertOrder(t.Context(), tx, fmt.Sprintf("%d-%d", round, w)); err != nil {
							return err
						}
						time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
						return nil
					})
					if err != nil {
						errs <- err
					}
				})
				time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("writer: %v", err)
			}
			start := time.Now()
			// No writer follows until the reader has the round: a lost
			// wake-up shows as a wait for the poll interval.
			r.waitRecords(t, (round+1)*writers, waitTimeout)
			slowest = max(slowest, time.Since(start))
		}
		got := r.records()
		seen := map[string]bool{}
		for i, rec := range got {
			if seen[rec.Event.EntityID] {
				t.Fatalf("row %q read twice", rec.Event.EntityID)
			}
			seen[rec.Event.EntityID] = true
			if i > 0 && !got[i-1].Position.Less(rec.Position) {
				t.Fatalf("records out of order: %v then %v", got[i-1].Position, rec.Position)
			}
		}
		if len(got) != rounds*writers {
			t.Fatalf("read %d records, want %d", len(got), rounds*writers)
		}
		t.Logf("slowest round caught up %v after its last commit", slowest)
	})
	t.Run("TwoReadersOnOneChannel", func(t *testing.T) {
		t.Parallel()
		// Only one reader can hold the lock; the other, failing to arm,
		// is woken by the notifications sent for the first or polls.
		b := setup(t, ChangeLogConfig{PollInterval: noPoll})
		other, _ := newTestChangeLog(t, b.pool, ChangeLogConfig{PollInterval: noPoll})
		readers := []*loopReader{startLoopReader(t, b.cl), startLoopReader(t, other)}
		for i := range 20 {
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			if err := insertOrder(t.Context(), b.pool, strconv.Itoa(i)); err != nil {
				t.Fatalf("insert: %v", err)
			}
			for _, r := range readers {
				r.waitRecords(t, i+1, waitTimeout)
			}
		}
	})
	t.Run("WatchedTableWakesIdleReader", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ChangeLogConfig{PollInterval: noPoll})
		if _, err := b.pool.Exec(t.Context(), `CREATE TABLE public.items (id int PRIMARY KEY, name text)`); err != nil {
			t.Fatalf("create table: %v", err)
		}
		if err := Watch(t.Context(), b.pool, WatchConfig{Table: "public.items"}); err != nil {
			t.Fatalf("Watch: %v", err)
		}
		expectWake(t, b.cl, func() {
			if _, err := b.pool.Exec(t.Context(), `INSERT INTO public.items VALUES (1, 'a')`); err != nil {
				t.Fatalf("insert: %v", err)
			}
		})
		readUntil(t, b.cl, ports.Position{}, 1)
	})
}

// TestChangeLogBusyReaderSendsNoNotify counts, on a second LISTEN
// connection, the notifications sent while the reader is not waiting.
func TestChangeLogBusyReaderSendsNoNotify(t *testing.T) {
	t.Parallel()
	const writers, each = 4, 25
	writeConcurrently := func(t *testing.T, pool *pgxpool.Pool, prefix string) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					if err := insertOrder(t.Context(), pool, fmt.Sprintf("%s-%d-%d", prefix, w, i)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("insert: %v", err)
		}
	}
	t.Run("Processing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ChangeLogConfig{PollInterval: noPoll})
		if _, err := b.pool.Exec(t.Context(), `CREATE TABLE public.items (id int PRIMARY KEY)`); err != nil {
			t.Fatalf("create table: %v", err)
		}
		if err := Watch(t.Context(), b.pool, WatchConfig{Table: "public.items"}); err != nil {
			t.Fatalf("Watch: %v", err)
		}
		// Every notification releases the arm (sparse commits keep it:
		// TestChangeLogKeepsArmForSparseCommits).
		b.cl.listener.keepGap.Store(0)
		counter := newNotifyCounter(t, b.pool, DefaultChannel)
		r := startLoopReader(t, b.cl)
		r.hold.Store(true)
		waitSettled(t, b.cl)
		insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "first"})
		select {
		case <-r.held: // the reader is busy with the first record
		case <-time.After(waitTimeout):
			t.Fatalf("reader not woken within %v", waitTimeout)
		}
		if n := counter.count(t); n != 1 {
			t.Fatalf("%d notifications for the commit that woke the reader, want 1", n)
		}
		waitServerArmed(t, b.pool, DefaultChannel, 0, false)
		writeConcurrently(t, b.pool, "busy")
		if _, err := b.pool.Exec(t.Context(), `INSERT INTO public.items SELECT g FROM generate_series(1, 10) g`); err != nil {
			t.Fatalf("insert into the watched table: %v", err)
		}
		if n := counter.count(t); n != 1 {
			t.Fatalf("%d notifications after %d commits while the reader was busy, want none", n-1, writers*each+1)
		}
		r.hold.Store(false)
		r.release <- struct{}{}
		r.waitRecords(t, 1+writers*each+10, waitTimeout)
	})
	t.Run("Polling", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ChangeLogConfig{PollInterval: noPoll})
		// Busy for as long as rows keep coming: the reader polls and
		// never arms.
		b.cl.tune.quietMin, b.cl.tune.quietMax = time.Hour, time.Hour
		b.cl.listener.keepGap.Store(0) // every notification releases the arm
		counter := newNotifyCounter(t, b.pool, DefaultChannel)
		r := startLoopReader(t, b.cl)
		waitSettled(t, b.cl)
		insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "first"})
		r.waitRecords(t, 1, waitTimeout)
		waitServerArmed(t, b.pool, DefaultChannel, 0, false) // the wake-up released the arm
		writeConcurrently(t, b.pool, "polled")
		r.waitRecords(t, 1+writers*each, waitTimeout)
		if n := counter.count(t); n != 1 {
			t.Fatalf("%d notifications while the reader was polling, want none", n-1)
		}
	})
}

func TestChangeLogListenerReconnects(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{PollInterval: noPoll})
	l := b.cl.listener
	pid := l.pid.Load()
	if pid == 0 || l.connects.Load() != 1 {
		t.Fatalf("listener not connected after NewChangeLog (pid %d, connects %d)", pid, l.connects.Load())
	}
	r := startLoopReader(t, b.cl)
	waitSettled(t, b.cl)
	waitServerArmed(t, b.pool, DefaultChannel, pid, true)
	var terminated bool
	if err := b.pool.QueryRow(t.Context(), `SELECT pg_terminate_backend($1)`, int32(pid)).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, terminated, err)
	}
	// pg_terminate_backend only signals: until the old session is gone it
	// may still hold the arm (and a commit would notify it).
	deadline := time.Now().Add(waitTimeout)
	for {
		var alive bool
		if err := b.pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, int32(pid)).Scan(&alive); err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		if !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still there %v after pg_terminate_backend", pid, waitTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	// A row committed while no one listens: the reconnection wakes the
	// reader (it signals just before it counts the connection), which then
	// arms on the new session.
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "deaf"})
	r.waitRecords(t, 1, waitTimeout)
	for l.connects.Load() < 2 || l.pid.Load() == pid || l.pid.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("listener did not reconnect (connects %d, pid %d)", l.connects.Load(), l.pid.Load())
		}
		time.Sleep(time.Millisecond)
	}
	waitSettled(t, b.cl)
	waitServerArmed(t, b.pool, DefaultChannel, l.pid.Load(), true)
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "after"})
	got := r.waitRecords(t, 2, waitTimeout)
	if got[1].Event.EntityID != "after" {
		t.Fatalf("read %q, want the row committed after the reconnection", got[1].Event.EntityID)
	}
	if logs := b.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "listener connection lost") {
		t.Fatalf("no warning about the lost connection in the logs:\n%s", logs)
	}
}

// TestChangeLogArmSurvivesProbes arms the listener again and again while
// writers probe the lock: an arm that meets a probe is retried, each arm
// makes the writers notify (and the first notification releases it), and
// no lock is left held, by a writer or by the listener.
func TestChangeLogArmSurvivesProbes(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{PollInterval: noPoll})
	l := b.cl.listener
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var writes atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if err := insertOrder(ctx, b.pool, fmt.Sprintf("%d-%d", w, i)); err != nil {
					if !errors.Is(err, context.Canceled) && ctx.Err() == nil {
						t.Errorf("insert: %v", err)
					}
					return
				}
				writes.Add(1)
			}
		})
	}
	retries := 0
	for range 50 {
		before := l.received.Load()
		for {
			res, err := l.arm(t.Context(), waitTimeout)
			if err != nil {
				t.Fatalf("arm: %v", err)
			}
			if res.held {
				break
			}
			retries++
		}
		deadline := time.Now().Add(waitTimeout)
		for l.received.Load() == before || l.armed.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("armed listener: no notification or not released within %v (armed %v)", waitTimeout, l.armed.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	cancel()
	wg.Wait()
	waitServerArmed(t, b.pool, DefaultChannel, 0, false)
	// A writer cancelled mid-insert holds its probe until its backend
	// has rolled the transaction back, a moment after the cancel: the
	// locks must be gone soon, not at once.
	var held int
	var err error
	waitUntil(t, "the wake-up locks released after the writers stopped", func() bool {
		err = b.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int4::oid
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, wakeLockClass).Scan(&held)
		return err != nil || held == 0
	})
	if err != nil {
		t.Fatalf("count the wake-up locks: %v", err)
	}
	t.Logf("%d inserts during 50 arm/disarm cycles, %d arms retried", writes.Load(), retries)
}

// TestListenerArmBoundsCoverRunningWriters checks the bound the race
// closure relies on: every transaction that had its id before the arm is
// below the arm's next id, and not below its xmin while it runs. (The
// snapshot's xmax is not such a bound: it is the latest completed id + 1,
// below a writer that took its id after the last completion; that shows
// whenever no newer transaction of the cluster ends in between.)
func TestListenerArmBoundsCoverRunningWriters(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{PollInterval: noPoll})
	l := b.cl.listener
	check := func() {
		tx, err := b.pool.Begin(t.Context())
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		defer tx.Rollback(context.Background()) //nolint:errcheck // a transaction only to hold an xid
		var xid uint64
		if err := tx.QueryRow(t.Context(), `SELECT pg_current_xact_id()::text::bigint`).Scan(&xid); err != nil {
			t.Fatalf("xid: %v", err)
		}
		res, err := l.arm(t.Context(), waitTimeout)
		if err != nil || !res.held {
			t.Fatalf("arm = %+v, %v", res, err)
		}
		if res.next <= xid || res.xmin > xid {
			t.Fatalf("arm bounds xmin %d, next %d do not cover the running writer %d", res.xmin, res.next, xid)
		}
	}
	for range 20 {
		check()
		l.disarm()
		waitServerArmed(t, b.pool, DefaultChannel, 0, false)
	}
}

// TestChangeLogKeepsArmForSparseCommits: commits that come far apart to a
// reader waiting for them keep the arm (each notifies; the reader does
// not release and take the lock again per commit) and each is read at
// once, also while another transaction of the cluster, older than the
// notified ones and writing no row, holds their rows back and then ends
// without a notification; the first commit that finds the reader busy
// releases the arm.
func TestChangeLogKeepsArmForSparseCommits(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{PollInterval: noPoll})
	counter := newNotifyCounter(t, b.pool, DefaultChannel)
	r := startLoopReader(t, b.cl)
	waitSettled(t, b.cl)
	armsBefore := b.cl.listener.arms.Load()
	gap := 3 * b.cl.tune.keepArmedGap
	const sparse = 40
	for i := range sparse {
		if i == sparse/2 {
			// An older transaction with an id, writing nothing to the
			// change log, open across the next commit: the reader cannot
			// read past it until it ends, which notifies no one.
			tx, err := b.pool.Begin(t.Context())
			if err != nil {
				t.Fatalf("begin: %v", err)
			}
			if _, err := tx.Exec(t.Context(), `SELECT pg_catalog.pg_current_xact_id()`); err != nil {
				t.Fatalf("take an id: %v", err)
			}
			if err := insertOrder(t.Context(), b.pool, "held back"); err != nil {
				t.Fatalf("insert: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
			if got := len(r.records()); got != i {
				t.Fatalf("read %d records while an older transaction runs, want %d", got, i)
			}
			if err := tx.Rollback(t.Context()); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			r.waitRecords(t, i+1, waitTimeout)
			waitBlocked(t, b.cl)
			time.Sleep(gap)
			continue
		}
		if err := insertOrder(t.Context(), b.pool, fmt.Sprintf("sparse-%d", i)); err != nil {
			t.Fatalf("insert: %v", err)
		}
		r.waitRecords(t, i+1, waitTimeout)
		waitBlocked(t, b.cl)
		time.Sleep(gap)
	}
	if n := b.cl.listener.arms.Load() - armsBefore; n > sparse/4 {
		t.Errorf("%d arms for %d commits %v apart, want the arm kept (a few at most)", n, sparse, gap)
	}
	if n := counter.count(t); n != sparse {
		t.Errorf("%d notifications for %d sparse commits, want one each", n, sparse)
	}

	// Busy: the reader holds the next record; the commits behind it find
	// it busy. The first of them releases the arm, the rest stay silent.
	// The reader must be blocked in Wait when "first" commits, or the
	// listener releases the arm at "first" already.
	waitBlocked(t, b.cl)
	r.hold.Store(true)
	if err := insertOrder(t.Context(), b.pool, "first"); err != nil {
		t.Fatalf("insert: %v", err)
	}
	select {
	case <-r.held:
	case <-time.After(waitTimeout):
		t.Fatalf("reader not woken within %v", waitTimeout)
	}
	for i := range 20 {
		if err := insertOrder(t.Context(), b.pool, fmt.Sprintf("busy-%d", i)); err != nil {
			t.Fatalf("insert: %v", err)
		}
		if i == 0 {
			// Its notification finds the reader busy: the listener
			// releases the arm, on its own connection, which a loaded
			// machine may finish later than the gap.
			waitUntil(t, "the arm released after a commit that found the reader busy", func() bool { return !b.cl.listener.armed.Load() })
		}
		time.Sleep(gap) // far apart, but the reader is busy
	}
	waitServerArmed(t, b.pool, DefaultChannel, 0, false)
	if n := counter.count(t) - sparse; n != 2 {
		t.Errorf("%d notifications for the commit that woke the reader and 20 while it was busy, want 2 (the second released the arm)", n)
	}
	r.hold.Store(false)
	r.release <- struct{}{}
	r.waitRecords(t, sparse+21, waitTimeout)
}

// TestListenerAnswersArmsWhenItsConnectionFails queues a disarm and an arm
// together (the reader released the arm after rows, then waited again)
// while the LISTEN connection hangs, then cuts it: the disarm fails, and
// the arm taken with it must still be answered (it was dropped, and its
// reader waited in Wait for good). (The code answers it at once, before
// the reconnection's backoff; the bound here is loose, since a loaded
// machine can delay any goroutine by more than the 100 ms backoff.)
func TestListenerAnswersArmsWhenItsConnectionFails(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	cc, proxy := proxiedConnConfig(t, pool)
	l := startListener(cc, "arm_answered", 0, slog.New(slog.DiscardHandler))
	t.Cleanup(l.close)
	l.awaitFirstAttempt(t.Context(), waitTimeout)
	if res, err := l.arm(t.Context(), waitTimeout); err != nil || !res.held {
		t.Fatalf("first arm: %+v, %v", res, err)
	}
	proxy.Freeze()
	reply := make(chan armResult, 1)
	l.mu.Lock()
	l.requests = append(l.requests, wakeRequest{}, wakeRequest{arm: true, reply: reply})
	kick := l.kick
	l.mu.Unlock()
	if kick != nil {
		kick()
	}
	<-proxy.Held() // the disarm reached the (silent) server: both were taken
	proxy.Cut()
	select {
	case res := <-reply:
		if res.err == nil {
			t.Fatalf("the arm taken with the failed disarm succeeded: %+v", res)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the arm taken with the failed disarm was not answered")
	}

}

// proxiedConnConfig is pool's connection configuration through a proxy
// the test can freeze or cut.
func proxiedConnConfig(t testing.TB, pool *pgxpool.Pool) (*pgx.ConnConfig, *testsupport.Proxy) {
	t.Helper()
	cc := pool.Config().ConnConfig.Copy()
	proxy := testsupport.StartProxy(t, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))))
	host, port, _ := net.SplitHostPort(proxy.Addr())
	p, _ := strconv.Atoi(port)
	cc.Host, cc.Port = host, uint16(p)
	return cc, proxy
}

// TestChangeLogPollsWhileTheWakeConnectionHangs: the LISTEN connection
// stops answering, without breaking, as the reader arms. Each Wait must
// return after about the poll interval, so that the reader reads (polls),
// not after wakeStatementTimeout replaces the connection; the Waits that
// follow wait for the same arm instead of queuing one each, and warn once.
func TestChangeLogPollsWhileTheWakeConnectionHangs(t *testing.T) {
	t.Parallel()
	const poll = 200 * time.Millisecond
	b := setup(t, ChangeLogConfig{PollInterval: poll})
	cc, proxy := proxiedConnConfig(t, b.pool)
	logger := b.cl.listener.logger
	b.cl.listener.close()
	l := startListener(cc, b.cl.cfg.Channel, b.cl.tune.keepArmedGap, logger)
	b.cl.listener = l // no reader runs yet
	l.awaitFirstAttempt(t.Context(), waitTimeout)
	settle(t, b.cl)
	b.cl.active() // rows came: the arm is released
	waitUntil(t, "the arm released", func() bool { return !l.armed.Load() })
	b.cl.wake.mu.Lock()
	b.cl.wake.lastActive = time.Time{} // quiet long enough to arm
	b.cl.wake.mu.Unlock()

	proxy.Freeze()
	for i := range 3 {
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 2*wakeStatementTimeout)
		err := b.cl.Wait(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Wait %d: %v", i, err)
		}
		if took := time.Since(start); took >= wakeStatementTimeout/2 {
			t.Fatalf("Wait %d took %v with the wake-up connection hanging, want about the poll interval %v", i, took, poll)
		}
		// The connection's goroutine takes the request when it is
		// kicked, which a loaded machine may delay past the poll
		// interval; a second request would stay queued for good.
		waitUntil(t, fmt.Sprintf("after Wait %d, every request taken (a second would stay queued)", i), func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return len(l.requests) == 0
		})
		l.mu.Lock()
		pending := l.pendingArm != nil
		l.mu.Unlock()
		if !pending {
			t.Fatalf("after Wait %d: no arm pending; want the one arm, taken and pending", i)
		}
	}
	select {
	case <-proxy.Held():
	default:
		t.Fatal("the arm never reached the (silent) server")
	}
	if n := strings.Count(b.logs.String(), "does not answer"); n != 1 {
		t.Errorf("%d warnings of the hung wake-up connection, want 1:\n%s", n, b.logs.String())
	}

	// Cut: the pending arm is answered with the connection's failure,
	// and a Wait after that learns that the listener is down (it polls).
	proxy.Cut()
	waitUntil(t, "the cut connection given up", func() bool { return l.pid.Load() == 0 })
	ctx, cancel := context.WithTimeout(t.Context(), 2*wakeStatementTimeout)
	defer cancel()
	if err := b.cl.Wait(ctx); err != nil {
		t.Fatalf("Wait after the cut: %v", err)
	}
	l.mu.Lock()
	pending := l.pendingArm != nil
	l.mu.Unlock()
	if pending {
		t.Error("an arm still pending after the connection was cut")
	}
}

// TestListenerTakesOverAnAnsweredArm: an arm answered after its reader
// stopped waiting (a slow connection) is used by the next arm while the
// lock is still held by the session that answered, and asked for again
// when the lock is another session's or a release dropped it.
func TestListenerTakesOverAnAnsweredArm(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	l := startListener(pool.Config().ConnConfig.Copy(), "arm_taken_over", 0, slog.New(slog.DiscardHandler))
	t.Cleanup(l.close)
	l.awaitFirstAttempt(t.Context(), waitTimeout)
	first, err := l.arm(t.Context(), waitTimeout)
	if err != nil || !first.held {
		t.Fatalf("first arm: %+v, %v", first, err)
	}
	session := l.connects.Load()
	answered := func(res armResult, conn int64) {
		reply := make(chan armResult, 1)
		reply <- res
		l.mu.Lock()
		l.pendingArm, l.pendingConn = reply, conn
		l.mu.Unlock()
	}
	stale := armResult{held: true, xmin: 1, next: 2} // bounds no live arm reads
	answered(stale, session-1)
	if res, err := l.arm(t.Context(), waitTimeout); err != nil || res == stale {
		t.Fatalf("arm with the lock held by a later session = %+v, %v; want the lock asked for again, not %+v", res, err, stale)
	}
	answered(stale, session)
	if res, err := l.arm(t.Context(), waitTimeout); err != nil || res != stale {
		t.Fatalf("arm with the lock still held = %+v, %v; want the answer taken over, %+v", res, err, stale)
	}
	l.disarm()
	waitUntil(t, "the arm released", func() bool { return !l.armed.Load() })
	answered(stale, session)
	res, err := l.arm(t.Context(), waitTimeout)
	if err != nil || !res.held || res == stale || res.next < first.next {
		t.Fatalf("arm after a release = %+v, %v; want the lock asked for again (next >= %d), not %+v", res, err, first.next, stale)
	}
}

// TestChangeLogKeptArmWaitsNotForACutRead: with the arm kept (sparse
// commits), a transaction of a small row and a large one is read with a
// byte budget that cuts it after the small row. Its notification was
// consumed, so the next Wait must not block (until the poll interval)
// while the large row is unread: the read did not cover the transaction.
func TestChangeLogKeptArmWaitsNotForACutRead(t *testing.T) {
	t.Parallel()
	// Longer than any other test's transaction holds the cluster's
	// oldest running one back (reads stop there), so that only the defect
	// makes Wait block this long.
	const poll = time.Minute
	b := setup(t, ChangeLogConfig{PollInterval: poll})
	ctx := t.Context()
	var pos ports.Position
	read := func(limit ports.ReadLimit) ports.Batch {
		t.Helper()
		batch, err := b.cl.Read(ctx, pos, limit)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		pos = batch.End
		return batch
	}
	// records reads until records come (another test's transaction
	// running since before the commit holds them back meanwhile).
	records := func(limit ports.ReadLimit) []ports.Record {
		t.Helper()
		var got []ports.Record
		waitUntil(t, "a record read", func() bool {
			got = read(limit).Records
			return len(got) > 0
		})
		return got
	}
	all := ports.ReadLimit{Rows: 100}
	// waitFor runs Wait while commit commits, and fails unless it returns
	// within waitTimeout.
	waitFor := func(commit func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- b.cl.Wait(ctx) }()
		waitUntil(t, "the reader waiting", b.cl.listener.waiting.Load)
		if err := commit(); err != nil {
			t.Fatalf("commit: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("wait: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("wait not woken by the commit")
		}
	}
	// Arm: the first Waits arm and return; then Wait blocks, armed.
	armed := func() bool {
		b.cl.wake.mu.Lock()
		defer b.cl.wake.mu.Unlock()
		return b.cl.wake.armed && b.cl.wake.safe
	}
	for deadline := time.Now().Add(waitTimeout); !armed(); {
		read(all)
		if err := b.cl.Wait(ctx); err != nil {
			t.Fatalf("wait: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("reader not armed")
		}
	}
	read(all)
	waitFor(func() error { return insertOrder(ctx, b.pool, "sparse") })
	if got := records(all); len(got) != 1 || !b.cl.listener.keeps() {
		t.Fatalf("read %d records, arm kept %v: want 1 and the arm kept", len(got), b.cl.listener.keeps())
	}
	time.Sleep(3 * b.cl.tune.keepArmedGap)
	waitFor(func() error {
		_, err := b.pool.Exec(ctx, `INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_key, object_data)
			VALUES ('Order', 'INSERT', 'small', '{}'),
			       ('Order', 'INSERT', 'large', jsonb_build_object('blob', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) AS g)))`)
		return err
	})
	if got := records(ports.ReadLimit{Rows: 100, Bytes: 1000}); len(got) != 1 || got[0].Event.EntityID != "small" {
		t.Fatalf("the cut read returned %d records, want the small row alone", len(got))
	}
	start := time.Now()
	if err := b.cl.Wait(ctx); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if took := time.Since(start); took >= poll {
		t.Errorf("Wait blocked %v (the poll interval) with the transaction's large row unread", took)
	}
	if got := records(all); len(got) != 1 || got[0].Event.EntityID != "large" {
		t.Fatalf("read %d records after the wait, want the large row", len(got))
	}
}

// A notify reader on a server that allows prepared transactions warns
// that a writer preparing a transaction fails while the reader waits
// (PostgreSQL refuses to PREPARE a transaction that notified; a review
// found it on a server with max_prepared_transactions = 10).
func TestPreparedTransactionsWarning(t *testing.T) {
	t.Parallel()
	if msg := preparedTransactionsWarning(0); msg != "" {
		t.Errorf("no prepared transactions: warning %q", msg)
	}
	if msg := preparedTransactionsWarning(10); !strings.Contains(msg, "PREPARE") || !strings.Contains(msg, `database.wake = "poll"`) {
		t.Errorf("prepared transactions allowed: warning %q, want the failure and the way out", msg)
	}
}
