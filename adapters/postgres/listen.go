package postgres

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reconnect backoff of the listener connection.
const (
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 5 * time.Second
)

// wakeLockClass is the first key of the advisory lock through which a
// reader asks for a NOTIFY; the second is hashtext(channel). A reader about
// to block holds it in exclusive mode on its LISTEN session; the change-log
// trigger takes it in share mode until the writer's transaction ends and
// notifies only when that fails (see notifyFunctionBody). The two-int key space is apart from the
// one-bigint keys of pg_advisory_lock(bigint).
const wakeLockClass int32 = 0x46514C57 // "FQLW"

// errNotListening is returned by arm while the LISTEN connection is down.
var errNotListening = errors.New("listener not connected")

// errArmPending: an arm not answered within its caller's patience (see
// listener.arm).
var errArmPending = errors.New("listener: arm not answered yet")

// listener holds a dedicated connection (outside the pool) that LISTENs on
// the change-log channel and turns every notification into a signal on
// notify. When the connection breaks it reconnects with capped exponential
// backoff and signals once afterwards, since rows may have arrived while it
// was deaf.
//
// The same session holds the wake-up lock while the reader waits (arm and
// disarm), so a reader that dies or loses its connection never leaves the
// writers notifying on its behalf.
type listener struct {
	connConfig *pgx.ConnConfig
	channel    string
	logger     *slog.Logger

	notify chan struct{} // buffered(1): a pending wake-up is never lost

	firstAttempt     chan struct{} // closed after the first connect+LISTEN attempt
	firstAttemptOnce sync.Once

	pid      atomic.Uint32 // backend pid of the current LISTEN connection, 0 when down
	connects atomic.Int64  // successful LISTENs so far
	received atomic.Int64  // notifications received so far
	armed    atomic.Bool   // the current session holds the wake-up lock
	arms     atomic.Int64  // arms that took the lock so far

	// keepGap: a notification that finds the reader waiting (see
	// ChangeLog.block) at least keepGap after the previous one, from a
	// trigger that names its transaction, leaves the arm in place (see
	// keepArm); zero releases it at every notification. Nanoseconds.
	keepGap  atomic.Int64
	waiting  atomic.Bool   // the reader is blocked waiting for a wake-up
	kept     atomic.Bool   // the last notification left the arm in place
	notedTx  atomic.Uint64 // the highest transaction id a notification named
	lastNote time.Time     // when the last notification came (the connection's goroutine only)

	mu       sync.Mutex
	requests []wakeRequest      // arm/disarm requests for the connection's goroutine
	kick     context.CancelFunc // interrupts the current WaitForNotification; nil when not waiting
	// pendingArm: the reply of an arm whose caller stopped waiting (see
	// arm); the next arm takes it over. pendingConn: connects when it
	// was asked for (the session that answers it).
	pendingArm  chan armResult
	pendingConn int64

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// wakeRequest asks the connection's goroutine to take (arm) or release the
// wake-up lock; reply, when set, receives the outcome of an arm.
type wakeRequest struct {
	arm   bool
	reply chan armResult
}

// armResult is the outcome of an arm.
type armResult struct {
	// held is false when a writer that probed the lock has not ended yet
	// (an earlier version's trigger: probed at that instant), or another
	// reader of the channel is armed (then the writers notify already):
	// the reader is not armed and should poll.
	held bool
	// next is the next transaction id to be assigned, read after the lock
	// was granted: every writer that probed before the arm (and so will
	// not notify) had its id by then, so it is below next. xmin is the
	// oldest transaction running at that moment (next when none ran).
	xmin, next uint64
	err        error
}

func startListener(connConfig *pgx.ConnConfig, channel string, keepGap time.Duration, logger *slog.Logger) *listener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{
		connConfig:   connConfig,
		channel:      channel,
		logger:       logger,
		notify:       make(chan struct{}, 1),
		firstAttempt: make(chan struct{}),
		cancel:       cancel,
		done:         make(chan struct{}),
	}
	l.keepGap.Store(int64(keepGap))
	go l.run(ctx)
	return l
}

// awaitFirstAttempt blocks until the first LISTEN succeeded or failed, at
// most timeout.
func (l *listener) awaitFirstAttempt(ctx context.Context, timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-l.firstAttempt:
	case <-ctx.Done(): // the caller is stopping: it will not read
	case <-t.C:
		l.logger.Warn("listener not ready, relying on polling until it connects", "waited", timeout)
	}
}

func (l *listener) signal() {
	select {
	case l.notify <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// arm takes the wake-up lock on the LISTEN session, after which every
// writer that commits a change-log row notifies. It returns errNotListening
// while the connection is down.
//
// It waits for the answer at most patience: a connection that hangs
// without breaking answers only when wakeStatementTimeout replaces it, and
// meanwhile its reader should poll. Then it returns errArmPending
// (ctx.Err() when ctx ended) and keeps the request's reply: the next arm
// takes that answer over instead of queuing another request, so a hung
// connection holds at most one arm of its (one) reader. An answer that
// came while no one waited is used if it still holds (an error, the lock
// not taken, or the lock still held by the session that answered: only
// arms take it, and every release and reconnection clears armed), else
// dropped and the lock asked for again (a notification released it
// since, or the lock is another session's).
func (l *listener) arm(ctx context.Context, patience time.Duration) (armResult, error) {
	l.mu.Lock()
	reply, conn := l.pendingArm, l.pendingConn
	l.pendingArm = nil
	l.mu.Unlock()
	if reply != nil {
		select {
		case r := <-reply:
			if r.err != nil || !r.held || (l.armed.Load() && l.connects.Load() == conn) {
				return r, r.err
			}
			reply = nil
		default:
		}
	}
	if reply == nil {
		if l.pid.Load() == 0 {
			return armResult{}, errNotListening
		}
		conn = l.connects.Load()
		reply = make(chan armResult, 1)
		l.request(wakeRequest{arm: true, reply: reply})
		if l.pid.Load() == 0 {
			// The connection went down after the check above: its
			// goroutine may have answered the pending requests before
			// this one came.
			l.failRequests(errNotListening)
		}
	}
	t := time.NewTimer(patience)
	defer t.Stop()
	select {
	case r := <-reply:
		return r, r.err
	case <-l.done:
		return armResult{}, errNotListening
	case <-ctx.Done():
	case <-t.C:
	}
	// The goroutine still answers into the buffered reply (or fails it
	// with the connection).
	l.mu.Lock()
	l.pendingArm, l.pendingConn = reply, conn
	l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return armResult{}, err
	}
	return armResult{}, errArmPending
}

// disarm releases the wake-up lock without waiting for the outcome.
func (l *listener) disarm() { l.request(wakeRequest{}) }

func (l *listener) request(r wakeRequest) {
	l.mu.Lock()
	l.requests = append(l.requests, r)
	kick := l.kick
	l.mu.Unlock()
	if kick != nil {
		kick()
	}
}

// takeRequests returns the pending requests; when there are none it
// installs kick, under the same lock, so that a request arriving later
// interrupts the wait that follows.
func (l *listener) takeRequests(kick context.CancelFunc) []wakeRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	reqs := l.requests
	l.requests = nil
	if len(reqs) == 0 {
		l.kick = kick
	}
	return reqs
}

func (l *listener) clearKick() {
	l.mu.Lock()
	l.kick = nil
	l.mu.Unlock()
}

// failRequests answers every pending arm with err; used while the
// connection is down.
func (l *listener) failRequests(err error) { failArms(l.takeRequests(nil), err) }

// failArms answers every arm among reqs with err (a disarm needs no
// answer: the session that held the lock is gone).
func failArms(reqs []wakeRequest, err error) {
	for _, r := range reqs {
		if r.reply != nil {
			r.reply <- armResult{err: err}
		}
	}
}

func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	defer l.failRequests(errNotListening)
	defer l.firstAttemptOnce.Do(func() { close(l.firstAttempt) })
	backoff := listenBackoffMin
	deaf := false // a connection failed or broke: rows may have been missed
	for ctx.Err() == nil {
		l.failRequests(errNotListening)
		conn, err := l.connect(ctx)
		if err != nil {
			l.firstAttemptOnce.Do(func() { close(l.firstAttempt) })
			if ctx.Err() != nil {
				return
			}
			deaf = true
			l.logger.Warn("listener connection failed, retrying", "retry_in", backoff, "error", err)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, listenBackoffMax)
			continue
		}
		connectedAt := time.Now()
		l.armed.Store(false) // a new session holds no lock
		l.pid.Store(conn.PgConn().PID())
		if deaf {
			l.signal() // rows may have been committed while no one listened
			l.logger.Info("listener reconnected")
		}
		// Counted after the wake-up and before the first attempt is
		// reported done, so observers of connects see a consistent state.
		l.connects.Add(1)
		l.firstAttemptOnce.Do(func() { close(l.firstAttempt) })
		err = l.receive(ctx, conn)
		l.pid.Store(0)
		l.armed.Store(false)
		// Answer the arms queued meanwhile now, not after the close and
		// the backoff: their readers poll instead of waiting seconds.
		l.failRequests(errNotListening)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx) // ends the session, and so releases the wake-up lock
		cancel()
		if ctx.Err() != nil {
			return
		}
		deaf = true
		if time.Since(connectedAt) > listenBackoffMax {
			backoff = listenBackoffMin // the connection was healthy; start over
		}
		l.logger.Warn("listener connection lost, reconnecting", "retry_in", backoff, "error", interpretError("listen", err))
		if !sleepCtx(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, listenBackoffMax)
	}
}

// connect opens the dedicated connection and LISTENs.
func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(connectCtx, l.connConfig)
	if err != nil {
		return nil, interpretError("listen: connect", err)
	}
	if _, err := conn.Exec(connectCtx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		closeCtx, cancelClose := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx)
		cancelClose()
		return nil, interpretError("listen", err)
	}
	return conn, nil
}

// wakeStatementTimeout bounds an arm or disarm on the LISTEN connection; a
// connection that does not answer in time is replaced.
const wakeStatementTimeout = 10 * time.Second

// receive signals for every notification and serves arm and disarm
// requests until the connection breaks or ctx ends.
func (l *listener) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		waitCtx, kick := context.WithCancel(ctx)
		reqs := l.takeRequests(kick)
		if len(reqs) > 0 {
			kick()
			for i, r := range reqs {
				if err := l.serve(ctx, conn, r); err != nil {
					// The requests taken with it are answered: an arm
					// left unanswered would hold its reader for good.
					failArms(reqs[i+1:], errNotListening)
					return err
				}
			}
			continue
		}
		n, err := conn.WaitForNotification(waitCtx)
		l.clearKick()
		kicked := waitCtx.Err() != nil
		kick()
		if n != nil {
			l.received.Add(1)
			keep := l.keepArm(time.Now(), n.Payload)
			l.kept.Store(keep)
			l.signal()
			// The reader is about to be busy: unless the commits come
			// sparsely, release the arm at once, here, rather than when
			// its goroutine runs, since every commit until then notifies.
			if !keep {
				if err := l.serve(ctx, conn, wakeRequest{}); err != nil {
					return err
				}
			}
		}
		switch {
		case err == nil:
		case kicked && ctx.Err() == nil && !conn.IsClosed():
			// Interrupted to serve a request; a wait that times out leaves
			// the connection usable.
		default:
			return err
		}
	}
}

// keepArm notes the notification that came at now with payload and
// reports whether it leaves the arm in place: the reader was waiting for
// it (it keeps up), it came at least keepGap after the previous one (the
// commits are sparse), and it names its transaction (the trigger of this
// version; the reader must read that transaction's rows before it waits
// again, see ChangeLog.Wait).
//
// Sparse commits keep the arm: every one of them notifies, but that costs
// the writers nothing they would notice (the commits that notify are
// serialised, which matters only when they come close together), and the
// reader is spared two round trips per commit (the release, and the next
// arm with the read that must follow it). Close commits, or a reader
// still busy with earlier rows, release it: a notification per commit
// would then cost the writers their commit rate, and one that finds the
// reader busy wakes no one.
func (l *listener) keepArm(now time.Time, payload string) bool {
	gap := now.Sub(l.lastNote)
	l.lastNote = now
	tx, err := strconv.ParseUint(payload, 10, 64)
	if err != nil {
		return false // an earlier version's trigger: no transaction named
	}
	if tx > l.notedTx.Load() { // this goroutine is the only writer
		l.notedTx.Store(tx)
	}
	keepGap := time.Duration(l.keepGap.Load())
	return keepGap > 0 && gap >= keepGap && l.waiting.Load()
}

// keeps reports whether the session holds the arm and the last
// notification left it in place (see keepArm).
func (l *listener) keeps() bool { return l.kept.Load() && l.armed.Load() }

// serve runs one arm or disarm on conn. An error means the connection is
// no longer trusted.
func (l *listener) serve(ctx context.Context, conn *pgx.Conn, r wakeRequest) error {
	ctx, cancel := context.WithTimeout(ctx, wakeStatementTimeout)
	defer cancel()
	if !r.arm {
		if !l.armed.Load() {
			return nil
		}
		if _, err := conn.Exec(ctx, `SELECT pg_catalog.pg_advisory_unlock_all()`); err != nil {
			return interpretError("listen: disarm", err)
		}
		l.armed.Store(false)
		return nil
	}
	var res armResult
	var err error
	res.held, res.xmin, res.next, err = l.lockAndSnapshot(ctx, conn)
	if err != nil {
		res.err = interpretError("listen: arm", err)
	}
	r.reply <- res
	return res.err
}

// lockAndSnapshot takes the wake-up lock in exclusive mode without waiting
// (never behind a writer: its probe holds the lock until it commits) and then
// reads the oldest running and the next transaction id, in a second
// statement so that both are read after the lock was granted. Both
// statements go in one round trip.
func (l *listener) lockAndSnapshot(ctx context.Context, conn *pgx.Conn) (held bool, xmin, next uint64, err error) {
	held = l.armed.Load()
	var lo, hi string
	batch := &pgx.Batch{}
	if !held {
		batch.Queue(`SELECT pg_catalog.pg_try_advisory_lock($1, pg_catalog.hashtext($2))`, wakeLockClass, l.channel).
			QueryRow(func(row pgx.Row) error { return row.Scan(&held) })
	}
	batch.Queue(xidBoundsSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&lo, &hi) })
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		return false, 0, 0, err
	}
	if held && !l.armed.Load() {
		l.arms.Add(1)
	}
	l.armed.Store(held)
	if !held {
		return false, 0, 0, nil
	}
	if xmin, err = strconv.ParseUint(lo, 10, 64); err != nil {
		return held, 0, 0, err
	}
	if next, err = strconv.ParseUint(hi, 10, 64); err != nil {
		return held, 0, 0, err
	}
	return held, xmin, next, nil
}

// xidBoundsSQL returns, as text, the oldest running transaction id (the
// snapshot's xmin) and the next id to be assigned. The snapshot's xmax is
// not the latter: it is the latest completed id + 1, and transactions that
// took their ids after it are running but in neither bound. The next id
// comes from age(), which counts from it for a session without an id of
// its own, taken modulo 2^32 from a normal id (>= 3) near xmax and added
// back to the 64-bit xmax; the two are always within 2^31 of each other.
const xidBoundsSQL = `
	SELECT pg_catalog.pg_snapshot_xmin(s)::text,
	       (x.base + pg_catalog.age((x.base % 4294967296)::text::xid))::text
	FROM pg_catalog.pg_current_snapshot() AS s,
	     LATERAL (SELECT pg_catalog.pg_snapshot_xmax(s)::text::numeric
	                     + CASE WHEN pg_catalog.pg_snapshot_xmax(s)::text::numeric % 4294967296 < 3 THEN 3 ELSE 0 END AS base) AS x`

// close stops the goroutine and waits for it to close the connection.
func (l *listener) close() {
	l.closeOnce.Do(func() {
		l.cancel()
		<-l.done
	})
}

// sleepCtx sleeps for d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
