package application

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// BridgeConfig tunes the Bridge.
type BridgeConfig struct {
	// RetryDelay is the wait before republishing after a failed
	// publication (default 1s); the broker's duplicate window makes a
	// republish safe.
	RetryDelay time.Duration
	// DrainTimeout bounds how long Run waits at shutdown for outstanding
	// acknowledgements (default 30s).
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Metrics      ports.Metrics
}

// Bridge is the Handler that moves change-log events to the bus: each
// event is published with its id as the message id, and is finished (so
// the reader's checkpoint can pass it) only after the broker acknowledged
// it. Invalid rows, and events the bus refuses for good (larger than its
// max_payload, an invalid subject), are dead-lettered here, since workers
// never see them.
type Bridge struct {
	pub ports.EventPublisher
	dlq ports.DeadLetterSink
	cfg BridgeConfig

	term       atomic.Pointer[bridgeTerm] // the current or next Run's
	retryLog   logLimiter
	published  atomic.Int64
	duplicates atomic.Int64
}

// bridgeTerm is the state of one Run: publications outlive the Handle
// calls and end with the Run that took them.
type bridgeTerm struct {
	ctx         context.Context
	stop        context.CancelFunc
	outstanding sync.WaitGroup
}

func newBridgeTerm() *bridgeTerm {
	ctx, stop := context.WithCancel(context.Background())
	return &bridgeTerm{ctx: ctx, stop: stop}
}

var _ Handler = (*Bridge)(nil)

// NewBridge builds a bridge publishing with pub.
func NewBridge(pub ports.EventPublisher, dlq ports.DeadLetterSink, cfg BridgeConfig) (*Bridge, error) {
	if pub == nil || dlq == nil || cfg.Logger == nil {
		return nil, errors.New("bridge: publisher, dead letters and logger are required")
	}
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, time.Second)
	cfg.DrainTimeout = cmp.Or(cfg.DrainTimeout, 30*time.Second)
	cfg.Metrics = cmp.Or[ports.Metrics](cfg.Metrics, ports.NopMetrics{})
	b := &Bridge{pub: pub, dlq: dlq, cfg: cfg, retryLog: logLimiter{interval: 10 * time.Second}}
	b.term.Store(newBridgeTerm())
	return b, nil
}

// Counts returns how many publications the broker acknowledged and how
// many of those it reported as duplicates (already stored: not stored
// again).
func (b *Bridge) Counts() (published, duplicates int64) {
	return b.published.Load(), b.duplicates.Load()
}

// Handle publishes rec (blocking while the publisher's bound of
// unacknowledged messages is reached: back-pressure on the reader).
func (b *Bridge) Handle(rec ports.Record, finish func()) {
	t := b.term.Load()
	if t.ctx.Err() != nil {
		return // the term ended: the reader reads it again in the next one
	}
	t.outstanding.Add(1)
	if rec.Err != nil {
		go b.park(t, rec, finish, ports.DeadLetter{Event: rec.Event, Error: rec.Err.Error(), Attempts: 1, Raw: rec.Raw}, "invalid input dead-lettered")
		return
	}
	b.publish(t, rec, finish)
}

func (b *Bridge) publish(t *bridgeTerm, rec ports.Record, finish func()) {
	ev := rec.Event
	err := b.pub.Publish(t.ctx, ev, rec.Headers, func(res ports.PublishResult) {
		if res.Err != nil {
			b.retry(t, rec, finish, res.Err)
			return
		}
		b.published.Add(1)
		if res.Duplicate {
			b.duplicates.Add(1)
		}
		b.cfg.Metrics.Published(res.Duplicate)
		finish()
		t.outstanding.Done()
	})
	if err != nil {
		b.retry(t, rec, finish, err)
	}
}

func (b *Bridge) retry(t *bridgeTerm, rec ports.Record, finish func(), cause error) {
	if t.ctx.Err() != nil {
		t.outstanding.Done() // the term ended: the reader re-reads it in the next one
		return
	}
	if domain.IsPermanent(cause) {
		// The bus refuses this event whatever the retry (larger than its
		// max_payload, an invalid subject): park it, and let the
		// checkpoint move on.
		go b.park(t, rec, finish, ports.DeadLetter{Event: rec.Event, Attempts: 1,
			Error: "the bus refused the event: " + cause.Error()}, "event refused by the bus dead-lettered")
		return
	}
	if ok, suppressed := b.retryLog.allow(); ok {
		b.cfg.Logger.Warn("publish failed, retrying", slog.String("event_id", rec.Event.ID),
			slog.String("error", cause.Error()), slog.Duration("retry_in", b.cfg.RetryDelay),
			slog.Int("suppressed_since_last_warning", suppressed))
	}
	time.AfterFunc(b.cfg.RetryDelay, func() { b.publish(t, rec, finish) })
}

// park dead-letters d for rec and finishes it; while the dead-letter
// store is unreachable it retries until the term ends (the reader then
// reads rec again). A store that refuses d for good gets its fallback form.
func (b *Bridge) park(t *bridgeTerm, rec ports.Record, finish func(), d ports.DeadLetter, msg string) {
	defer t.outstanding.Done()
	for {
		err := parkDeadLetter(t.ctx, b.dlq, b.cfg.Logger, d, positionOf(rec))
		if err == nil {
			if rec.Err != nil { // a row that is not an event, as the processor counts one
				b.cfg.Metrics.EventProcessed("invalid")
			}
			b.cfg.Metrics.DeadLettered()
			b.cfg.Logger.Error(msg, slog.String("event_id", rec.Event.ID),
				slog.String("position", rec.Position.String()), slog.String("error", d.Error))
			finish()
			return
		}
		b.cfg.Logger.Error("dead-letter write failed, will retry", slog.String("event_id", rec.Event.ID), slog.String("error", err.Error()))
		if !sleep(t.ctx, b.cfg.RetryDelay) {
			return
		}
	}
}

// Run waits for ctx to end, then for outstanding acknowledgements (up to
// DrainTimeout, or until the lease is lost (LeaseLost); not at all when
// ctx ended with the cause ports.ErrLeaseLost), then stops retries; records handed in afterwards
// are dropped until Begin.
func (b *Bridge) Run(ctx context.Context) error {
	t := b.term.Load()
	<-ctx.Done()
	if errors.Is(context.Cause(ctx), ports.ErrLeaseLost) {
		// Another bridge owns the stream now: stop at once; the new holder
		// republishes what is unacknowledged (the duplicate window makes it
		// safe).
		t.stop()
		return nil
	}
	drained := make(chan struct{})
	go func() { t.outstanding.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(b.cfg.DrainTimeout):
		b.cfg.Logger.Warn("bridge shutdown: acknowledgements still outstanding; those events are re-published after restart")
	case <-LeaseLost(ctx):
		b.cfg.Logger.Warn("bridge shutdown: the lease was lost while acknowledgements were outstanding; the new holder re-publishes those events")
	}
	t.stop()
	return nil
}

// Begin starts a new term after a Run returned, with fresh publication
// state; the first term needs none.
func (b *Bridge) Begin() {
	if b.term.Load().ctx.Err() != nil {
		b.term.Store(newBridgeTerm())
	}
}
