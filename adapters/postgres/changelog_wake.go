package postgres

import (
	"cmp"
	"context"
	"errors"
	"strconv"
	"time"
)

// This file paces the reader between reads (Wait): the wake-up protocol's
// reader side, with listen.go the LISTEN session's.

// Wait blocks until new rows may be readable, the poll interval passes, or
// ctx ends (then it returns ctx.Err()). It is built so that the capture
// costs the application's writers next to nothing (see
// notifyFunctionBody): writers notify only while a reader waits.
//
//   - Busy: while the last rows were read (or a notification came) less
//     than the quiet requirement ago, Wait only sleeps busyPoll; no writer
//     notifies. Every commit between an arm and its release notifies, so
//     the requirement follows what arming costs: the listener receives
//     every notification on the channel, and when more than 2 came in
//     since the last arm (the writers commit faster than the reader
//     disarms: a notification per commit would start to cost them) the
//     requirement doubles, from quietStep up to quietMax; at 1 or none it
//     halves, down to zero (arm at once: a notification wakes the reader
//     sooner than a poll).
//   - Idle: Wait arms (takes the wake-up lock on the LISTEN session) and
//     returns at once, so that the caller reads again: rows committed
//     before the arm were not announced. The arm fails while a writer that
//     probed the lock has not ended (the trigger's probe holds it until
//     then); Wait then polls, with pauses growing to unsafePollMax.
//   - Armed, not yet safe: with the trigger of earlier versions (a probe
//     released at once), a writer that probed the lock just before the
//     arm does not notify. Every such writer had its transaction id before
//     the arm, so it is below the next id read just after it; Wait polls,
//     with growing pauses, until the oldest running transaction is past
//     that bound, then returns once more for the read that covers them.
//     (With the current trigger no such writer is left by then.)
//   - Armed and safe: Wait blocks until a notification or the poll
//     interval. A notification (the reader is about to be busy) or a read
//     that finds rows releases the arm, unless the listener keeps it: a
//     notification that found the reader waiting, at least keepArmedGap
//     after the one before (see listener.keepArm). A kept arm spares a
//     release and an arm per sparse commit; before blocking again, Wait
//     checks that the reads reached the last notified transaction (its
//     id is the payload), and while they have not (an older transaction
//     still running holds its rows back) it polls as when not yet safe,
//     up to that transaction.
//
// Wait is meant for one caller at a time (the reader): concurrent Waits
// are safe but share one arm (see listener.arm), and may wait longer.
//
// While the listener is down Wait falls back to the poll interval; its
// reconnection wakes the reader. While its connection hangs (an arm not
// answered within the poll interval, at least armPatienceMin), each Wait
// returns after that long, so that the reader polls, until the arm is
// answered or the statement timeout replaces the connection (see
// listener.arm). With PollOnly, see pollWait.
func (c *ChangeLog) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.listener == nil {
		return c.pollWait(ctx)
	}
	w := &c.wake
	w.mu.Lock()
	quiet := min(max(w.quiet, c.tune.quietMin), c.tune.quietMax)
	noted := c.listener.notedTx.Load()
	switch {
	case !w.armed && c.now().Sub(w.lastActive) < quiet:
		w.mu.Unlock()
		return c.block(ctx, min(c.tune.busyPoll, c.cfg.PollInterval))
	case !w.armed:
		w.mu.Unlock()
		return c.arm(ctx)
	case w.safe && noted > w.readTx:
		// A kept arm, and a notified transaction whose rows the reads
		// have not reached: an older transaction still running holds
		// them back (reads stop at the oldest running one, anywhere in
		// the cluster), and it may end without a notification. Poll, as
		// after an arm, until every transaction up to the notified one
		// has ended.
		w.safe, w.horizon, w.pause = false, noted+1, c.tune.unsafePollMin
		w.mu.Unlock()
		return c.block(ctx, min(c.tune.unsafePollMin, c.cfg.PollInterval))
	case !w.safe:
		horizon, pause := w.horizon, w.pause
		w.pause = min(2*w.pause, c.tune.unsafePollMax)
		w.mu.Unlock()
		if xmin, err := c.oldestRunning(ctx); err == nil && xmin >= horizon {
			w.mu.Lock()
			if w.armed && w.horizon == horizon {
				w.safe = true
				// The read that follows covers every transaction
				// below the horizon, rows or none.
				w.readTx = max(w.readTx, horizon-1)
			}
			w.mu.Unlock()
			return nil // the read that covers the last writers that probed before the arm
		} else if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return c.block(ctx, min(pause, c.cfg.PollInterval))
	default:
		w.mu.Unlock()
		return c.block(ctx, c.cfg.PollInterval)
	}
}

// armPatienceMin is the least a reader waits for an arm's answer, so that
// a short poll interval does not give up on a healthy connection to a
// distant server (see listener.arm).
const armPatienceMin = 100 * time.Millisecond

// arm takes the wake-up lock and returns, so that the caller reads again.
func (c *ChangeLog) arm(ctx context.Context) error {
	patience := min(max(c.cfg.PollInterval, armPatienceMin), wakeStatementTimeout)
	res, err := c.listener.arm(ctx, patience)
	pending := errors.Is(err, errArmPending)
	c.wake.mu.Lock()
	warn := pending && !c.wake.armPending
	c.wake.armPending = pending
	c.wake.mu.Unlock()
	if warn {
		c.listener.logger.Warn("the wake-up connection does not answer, polling", "waited", patience)
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, errNotListening):
		return c.block(ctx, c.cfg.PollInterval) // the reconnection signals
	case pending:
		// The LISTEN connection hangs: the reader waited a poll
		// interval, and reads (polls) until the arm is answered or the
		// statement timeout replaces the connection.
		return nil
	case err != nil:
		c.listener.logger.Warn("cannot arm the wake-up, polling", "error", err)
		return c.block(ctx, min(c.tune.unsafePollMax, c.cfg.PollInterval))
	}
	w := &c.wake
	w.mu.Lock()
	if !res.held {
		// A writer that probed the lock has not ended (try again
		// soon), or another reader of the channel is armed: then the
		// writers notify, which wakes this reader too, and the pause
		// grows to bound the polling.
		pause := w.armPause
		w.armPause = min(2*pause, c.tune.unsafePollMax)
		w.mu.Unlock()
		return c.block(ctx, min(pause, c.cfg.PollInterval))
	}
	defer w.mu.Unlock()
	w.armPause = c.tune.busyPoll
	notes := c.listener.received.Load()
	if w.armedOnce {
		switch cost := notes - w.notesAtArm; {
		case cost > 2:
			w.quiet = max(2*w.quiet, c.tune.quietStep)
		case cost <= 1:
			w.quiet /= 2
			if w.quiet < c.tune.quietStep {
				w.quiet = 0
			}
		}
		w.quiet = min(w.quiet, c.tune.quietMax)
	}
	w.armedOnce, w.notesAtArm = true, notes
	w.armed = true
	w.horizon, w.safe = res.next, res.xmin >= res.next // nothing was running: no writer can have missed the arm
	if w.safe {
		w.readTx = max(w.readTx, res.next-1) // the read that follows covers them all
	}
	w.pause = c.tune.unsafePollMin
	return nil
}

// pollWait is Wait without NOTIFY: it sleeps pollPause.
func (c *ChangeLog) pollWait(ctx context.Context) error {
	return c.block(ctx, c.pollPause())
}

// pollPause is busyPoll while rows were read less than pollBusyFor ago,
// then pauses that double from twice busyPoll up to the poll interval;
// rows read start over. A reader that keeps up with steady writers so
// stays within about busyPoll of a commit, an idle one reads once per poll
// interval, and the first row after a quiet spell waits up to the pause
// reached (at most the poll interval).
func (c *ChangeLog) pollPause() time.Duration {
	w := &c.wake
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.now().Sub(w.lastActive) < c.tune.pollBusyFor {
		return min(c.tune.busyPoll, c.cfg.PollInterval)
	}
	d := min(cmp.Or(w.idlePause, 2*c.tune.busyPoll), c.cfg.PollInterval)
	w.idlePause = min(2*d, c.cfg.PollInterval)
	return d
}

// block waits for a notification, d, or the end of ctx. A notification
// releases the arm (the reader is about to be busy) unless the listener
// keeps it (see active).
func (c *ChangeLog) block(ctx context.Context, d time.Duration) error {
	var notify <-chan struct{} // nil (never ready) with PollOnly
	if c.listener != nil {
		notify = c.listener.notify
	}
	t := time.NewTimer(d)
	defer t.Stop()
	if c.listener != nil {
		c.listener.waiting.Store(true)
		defer c.listener.waiting.Store(false)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-notify:
		c.listener.waiting.Store(false) // before active() asks whether the arm is kept
		c.active()
		return nil
	case <-t.C:
		return nil
	}
}

// active records that the reader read rows or was notified: it is about
// to be busy, so the arm, if any, is released, unless the listener keeps
// it (the commits come sparsely: see listener.keepArm).
func (c *ChangeLog) active() {
	w := &c.wake
	w.mu.Lock()
	w.lastActive = c.now()
	w.idlePause = 0
	// A failed arm after rows is a writer committing: poll again soon.
	// The pause grows only while arms fail and no rows come (a long
	// transaction that probed holds the lock, and the rows behind it).
	w.armPause = c.tune.busyPoll
	release := w.armed && !c.listener.keeps()
	if release {
		w.armed = false
	} else if w.armed {
		// Kept on purpose: the notifications it brings are not the
		// cost the next arm's quiet requirement weighs.
		w.notesAtArm = c.listener.received.Load()
	}
	w.mu.Unlock()
	if release {
		c.listener.disarm()
	}
}

// reached records that a read got to transaction tx.
func (c *ChangeLog) reached(tx uint64) {
	w := &c.wake
	w.mu.Lock()
	w.readTx = max(w.readTx, tx)
	w.mu.Unlock()
}

// oldestRunning is the snapshot's xmin: every transaction of the cluster
// with a lower id has ended.
func (c *ChangeLog) oldestRunning(ctx context.Context) (uint64, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	var s string
	if err := c.pool.QueryRow(ctx, `SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text`).Scan(&s); err != nil {
		return 0, interpretError("oldest running transaction", err)
	}
	return strconv.ParseUint(s, 10, 64)
}
