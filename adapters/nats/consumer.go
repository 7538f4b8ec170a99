package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Consumer hands the messages of the shared durable pull consumer to
// handlers. Several Consumers (processes) on the same durable share the
// messages, each going to one of them. Safe for concurrent use.
type Consumer struct {
	c          *Conn
	cons       jetstream.Consumer
	maxDeliver int
}

var _ ports.EventConsumer = (*Consumer)(nil)

// NewConsumer creates the durable pull consumer, or updates it to
// Config.Consumer: explicit acks, AckWait, MaxDeliver, MaxAckPending and
// FilterSubject. The stream must exist (EnsureStream).
func NewConsumer(ctx context.Context, c *Conn) (*Consumer, error) {
	cons, err := c.ensureConsumer(ctx)
	if err != nil {
		return nil, err
	}
	return &Consumer{c: c, cons: cons, maxDeliver: cons.CachedInfo().Config.MaxDeliver}, nil
}

// ensureConsumer creates the workers' durable consumer, or updates it to
// Config.Consumer.
func (c *Conn) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cc := c.cfg.Consumer
	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.cfg.Stream.Name, jetstream.ConsumerConfig{
		Durable:       cc.Durable,
		Description:   "fraiseql-observer workers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cc.AckWait,
		MaxDeliver:    cc.MaxDeliver,
		MaxAckPending: cc.MaxAckPending,
		FilterSubject: cc.FilterSubject,
	})
	if err != nil {
		return nil, interpretError("create consumer "+cc.Durable+" on stream "+c.cfg.Stream.Name, err)
	}
	return cons, nil
}

// Consume calls handle for each delivery from up to concurrency goroutines,
// with at most ConsumerConfig.MaxBytesInHand of message data handed out
// and not finished, until ctx ends. It then stops pulling, releases (naks)
// each message it had not yet handed out, the client's buffered ones
// included, but for those on their last delivery, which it hands to
// handle (with ctx ended) since the broker would not deliver them again;
// waits for the subscription to close and for the running handlers, and
// returns nil. If the subscription
// ends by itself (consumer deleted, connection closed) Consume returns an
// error after the running handlers finished.
func (c *Consumer) Consume(ctx context.Context, concurrency int, handle func(context.Context, ports.Delivery)) error {
	if concurrency < 1 {
		return fmt.Errorf("nats: consume: concurrency must be at least 1, got %d", concurrency)
	}
	if handle == nil {
		return errors.New("nats: consume: handler is required")
	}
	log := c.c.logger.With(slog.String("stream", c.c.cfg.Stream.Name), slog.String("consumer", c.c.cfg.Consumer.Durable))

	// inHand bounds the bytes handed to the handlers and not finished
	// (ConsumerConfig.MaxBytesInHand); a message larger than the bound
	// takes all of it.
	inHand := semaphore.NewWeighted(c.c.cfg.Consumer.MaxBytesInHand)
	weight := func(m jetstream.Msg) int64 { return min(max(int64(len(m.Data())), 1), c.c.cfg.Consumer.MaxBytesInHand) }
	work := make(chan jetstream.Msg)
	var workers sync.WaitGroup
	for range concurrency {
		workers.Go(func() {
			for m := range work {
				handle(ctx, c.delivery(m))
				inHand.Release(weight(m))
			}
		})
	}

	// gate keeps a callback from touching work once it is closed: the
	// library may still start one callback after the subscription ended.
	var (
		gate     sync.RWMutex
		stopped  bool
		errMu    sync.Mutex
		fatalErr error
	)
	// release gives back a message not handed out: a nak, so that it is
	// redelivered at once elsewhere. One on its last delivery (max_deliver)
	// would not be redelivered: it goes to handle here, after the end
	// (whose handler parks or dead-letters it, as the worker does with one
	// that did not finish).
	release := func(m jetstream.Msg) {
		if d := c.delivery(m); d.last {
			handle(ctx, d)
			return
		}
		if err := m.Nak(); err != nil {
			log.Debug("release of an undelivered message failed; it is redelivered after the ack wait", slog.String("error", err.Error()))
		}
	}
	dispatch := func(m jetstream.Msg) {
		gate.RLock()
		defer gate.RUnlock()
		if stopped || ctx.Err() != nil {
			release(m)
			return
		}
		if inHand.Acquire(ctx, weight(m)) != nil { // ctx ended while the handlers held the bytes
			release(m)
			return
		}
		select {
		case work <- m:
		case <-ctx.Done():
			inHand.Release(weight(m))
			release(m)
		}
	}
	onError := func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrBadRequest) ||
			errors.Is(err, jetstream.ErrConnectionClosed) {
			errMu.Lock()
			fatalErr = err
			errMu.Unlock()
			log.Error("consuming stopped", slog.String("error", err.Error()))
			return
		}
		log.Warn("consume", slog.String("error", err.Error()))
	}

	// Each pull asks for at most twice concurrency messages and, in bytes,
	// the in-hand bound (at least the server's max_payload, or a large
	// message could never come): the client buffers about two pulls.
	pullBytes := max(c.c.cfg.Consumer.MaxBytesInHand, c.c.nc.MaxPayload())
	cc, err := c.cons.Consume(dispatch,
		jetstream.PullMaxMessagesWithBytesLimit(2*concurrency, int(min(pullBytes, math.MaxInt32))),
		jetstream.ConsumeErrHandler(onError))
	if err != nil {
		close(work)
		workers.Wait()
		return interpretError("consume "+c.c.cfg.Consumer.Durable, err)
	}

	select {
	case <-ctx.Done():
	case <-cc.Closed():
	case <-c.c.closed:
	}
	if ctx.Err() != nil {
		// The messages the client buffered go through dispatch (release)
		// rather than being dropped: dropped, they would come again only
		// after the ack wait, and those on their last delivery never.
		cc.Drain()
	} else {
		cc.Stop() // the subscription or the connection ended: nothing to drain
	}
	<-cc.Closed() // Stop and Drain are asynchronous

	gate.Lock()
	stopped = true
	gate.Unlock()
	close(work)
	workers.Wait()

	if ctx.Err() != nil {
		return nil
	}
	errMu.Lock()
	defer errMu.Unlock()
	if fatalErr == nil {
		fatalErr = jetstream.ErrConnectionClosed
	}
	return interpretError("consume "+c.c.cfg.Consumer.Durable, fatalErr)
}

func (c *Consumer) delivery(m jetstream.Msg) *delivery {
	d := &delivery{msg: m, attempt: 1}
	if md, err := m.Metadata(); err == nil {
		d.attempt = int(min(md.NumDelivered, 1<<31-1))
	}
	d.last = c.maxDeliver > 0 && d.attempt >= c.maxDeliver
	return d
}

// delivery is one JetStream message as a ports.Delivery.
type delivery struct {
	msg     jetstream.Msg
	attempt int
	last    bool
}

var _ ports.Delivery = (*delivery)(nil)

func (d *delivery) Data() []byte { return d.msg.Data() }

// Headers returns the message's headers, keys lower-cased, the server's
// own (Nats-*) left out; nil when there are none.
func (d *delivery) Headers() ports.Headers {
	var h ports.Headers
	for k, v := range d.msg.Headers() {
		k = strings.ToLower(k)
		if len(v) == 0 || strings.HasPrefix(k, "nats-") {
			continue
		}
		if h == nil {
			h = ports.Headers{}
		}
		h[k] = v[0]
	}
	return h
}
func (d *delivery) Attempt() int      { return d.attempt }
func (d *delivery) LastAttempt() bool { return d.last }

// Ack acknowledges the message without waiting for the server's
// confirmation: the acknowledgement leaves with the connection's next
// flush, together with the other workers' (one write, no round trip per
// message). An acknowledgement lost on the way means a redelivery after
// the ack wait, which the dedup done mark (set before the ack) skips; a
// confirmation would not have prevented it either, it only told the
// worker so. An error means it was not sent (connection closed).
func (d *delivery) Ack(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: ack: %w", err)
	}
	return interpretError("ack", d.msg.Ack())
}

// Nak asks for redelivery after delay (at once when delay is not positive).
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: nak: %w", err)
	}
	if delay <= 0 {
		return interpretError("nak", d.msg.Nak())
	}
	return interpretError("nak", d.msg.NakWithDelay(delay))
}

// InProgress resets the message's ack-wait timer.
func (d *delivery) InProgress(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: in progress: %w", err)
	}
	return interpretError("in progress", d.msg.InProgress())
}

// Term stops redelivery of the message.
func (d *delivery) Term(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: term: %w", err)
	}
	return interpretError("term", d.msg.Term())
}
