package postgres

import (
	"context"
	"log/slog"
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

// listener holds a dedicated connection (outside the pool) that LISTENs on
// the change-log channel and turns every notification into a signal on
// notify. When the connection breaks it reconnects with capped exponential
// backoff and signals once afterwards, since rows may have arrived while it
// was deaf.
type listener struct {
	connConfig *pgx.ConnConfig
	channel    string
	logger     *slog.Logger

	notify chan struct{} // buffered(1): a pending wake-up is never lost

	firstAttempt     chan struct{} // closed after the first connect+LISTEN attempt
	firstAttemptOnce sync.Once

	pid      atomic.Uint32 // backend pid of the current LISTEN connection, 0 when down
	connects atomic.Int64  // successful LISTENs so far

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

func startListener(connConfig *pgx.ConnConfig, channel string, logger *slog.Logger) *listener {
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
	go l.run(ctx)
	return l
}

// awaitFirstAttempt blocks until the first LISTEN succeeded or failed, at
// most timeout.
func (l *listener) awaitFirstAttempt(timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-l.firstAttempt:
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

func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	defer l.firstAttemptOnce.Do(func() { close(l.firstAttempt) })
	backoff := listenBackoffMin
	deaf := false // a connection failed or broke: rows may have been missed
	for ctx.Err() == nil {
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
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx)
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
		_ = conn.Close(context.Background())
		return nil, interpretError("listen", err)
	}
	return conn, nil
}

// receive signals for every notification until the connection breaks or
// ctx ends.
func (l *listener) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		l.signal()
	}
}

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
