package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// Publisher publishes events to the stream asynchronously, with
// Nats-Msg-Id = event id. At most Config.MaxPending publications are
// outstanding (sent, their done not yet returned); Publish blocks beyond
// that. Publications are sent in the order of Publish calls, and their
// done callbacks run in that order, one after the other, from one
// goroutine (started while publications are outstanding): the
// acknowledgements of one stream come back in order, so waiting for them
// in order costs nothing, and the caller's checkpoint moves in order.
// Safe for concurrent use.
//
// done must not wait for a Publish on the same publisher (it holds one of
// the MaxPending places until it returns), and should return quickly: the
// next publication's done waits for it.
type Publisher struct {
	c *Conn

	turn  chan struct{} // one Publish sends at a time: send order = call order
	slots chan struct{} // a token per outstanding publication

	mu        sync.Mutex
	queue     []outstanding // sent, done not yet called; in send order
	acking    bool          // the goroutine calling done is running
	issued    uint64        // publications sent
	completed uint64        // publications whose done returned
	flushes   []flushWaiter

	restoring   bool      // a restoreStream runs
	lastRestore time.Time // when the last one started
}

// restoreInterval spaces the attempts to create a missing stream again.
const restoreInterval = 5 * time.Second

// outstanding is a publication sent and not yet reported.
type outstanding struct {
	fut     jetstream.PubAckFuture
	eventID string
	done    func(ports.PublishResult)
}

// flushWaiter is a Flush waiting for completed to reach upTo.
type flushWaiter struct {
	upTo uint64
	ch   chan struct{}
}

var _ ports.EventPublisher = (*Publisher)(nil)

// NewPublisher returns a publisher on c's stream.
func NewPublisher(c *Conn) *Publisher {
	return &Publisher{
		c:     c,
		turn:  make(chan struct{}, 1),
		slots: make(chan struct{}, c.cfg.MaxPending),
	}
}

// Publish sends ev (with hdr as message headers, Nats-Msg-Id = ev.ID
// besides) and returns once it is on its way; done reports the
// server's answer. An acknowledgement that does not come within
// Config.PublishTimeout, a lost connection and a closed Conn are errors in
// done wrapping ports.ErrUnavailable: the caller republishes and the
// duplicate window makes that safe. A returned error means nothing was
// sent and done will not be called. A message the server refuses whatever
// the retry (larger than its max_payload or the stream's maximum message
// size, an invalid subject) fails with an error wrapping
// domain.ErrPermanent, in the returned error or in done.
func (p *Publisher) Publish(ctx context.Context, ev domain.Event, hdr ports.Headers, done func(ports.PublishResult)) error {
	if ev.ID == "" {
		return errors.New("nats: publish: event has no id (the deduplication key)")
	}
	body, err := ev.Envelope()
	if err != nil {
		return fmt.Errorf("nats: publish event %s: encode: %w", ev.ID, err)
	}
	msg := nats.NewMsg(Subject(p.c.cfg.Stream.SubjectPrefix, &ev))
	msg.Data = body
	for k, v := range hdr {
		msg.Header.Set(k, v)
	}
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	if err := checkMessage(p.c.nc, msg); err != nil {
		return interpretError("publish event "+ev.ID, err)
	}

	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("nats: publish event %s: %w", ev.ID, ctx.Err())
	}
	defer func() { <-p.turn }()
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("nats: publish event %s: %w", ev.ID, ctx.Err())
	case <-p.c.closed:
		return fmt.Errorf("nats: publish event %s: %w: %w", ev.ID, ports.ErrUnavailable, nats.ErrConnectionClosed)
	}
	fut, err := p.c.js.PublishMsgAsync(msg, jetstream.WithExpectStream(p.c.cfg.Stream.Name))
	if err != nil {
		<-p.slots
		if p.c.nc.IsClosed() { // some client errors lose the cause's type
			return fmt.Errorf("nats: publish event %s: %w: %w", ev.ID, ports.ErrUnavailable, err)
		}
		return interpretError("publish event "+ev.ID, err)
	}

	p.mu.Lock()
	p.queue = append(p.queue, outstanding{fut: fut, eventID: ev.ID, done: done})
	p.issued++
	if !p.acking {
		p.acking = true
		go p.report()
	}
	p.mu.Unlock()
	return nil
}

// maxSubjectBytes bounds a subject (domain.MaxSubjectBytes): an over-long
// entity type must fail its own publication, not every publication.
const maxSubjectBytes = domain.MaxSubjectBytes

// checkMessage refuses, before anything is sent on nc, a message the
// server would refuse by closing the connection, which every user of nc
// shares: larger than its max_payload (the client skips that check while
// reconnecting), or with an over-long subject (the client does not check
// it). The error names the size and the limit and wraps nats.ErrBadSubject
// or nats.ErrMaxPayload.
func checkMessage(nc *nats.Conn, msg *nats.Msg) error {
	if len(msg.Subject) > maxSubjectBytes {
		return fmt.Errorf("subject of %d bytes is longer than %d: %w", len(msg.Subject), maxSubjectBytes, nats.ErrBadSubject)
	}
	size := int64(len(msg.Data) + len(msg.Subject))
	for k, vs := range msg.Header {
		for _, v := range vs {
			size += int64(len(k) + len(v) + 4)
		}
	}
	if limit := nc.MaxPayload(); limit > 0 && size > limit {
		return fmt.Errorf("message of about %d bytes is larger than the server's max_payload of %d bytes: %w", size, limit, nats.ErrMaxPayload)
	}
	return nil
}

// report calls done for the outstanding publications in send order, and
// ends when none is left (Publish starts it again).
func (p *Publisher) report() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.queue = p.queue[:0:0] // let a burst's backing array go
			p.acking = false
			p.mu.Unlock()
			return
		}
		o := p.queue[0]
		p.queue[0] = outstanding{}
		p.queue = p.queue[1:]
		p.mu.Unlock()

		res := p.await(o.fut, o.eventID)
		if o.done != nil {
			o.done(res)
		}
		p.mu.Lock()
		p.completed++
		waiters := p.flushes[:0]
		for _, w := range p.flushes {
			if w.upTo <= p.completed {
				close(w.ch)
			} else {
				waiters = append(waiters, w)
			}
		}
		p.flushes = waiters
		p.mu.Unlock()
		<-p.slots
	}
}

// await returns the future's outcome.
func (p *Publisher) await(fut jetstream.PubAckFuture, eventID string) ports.PublishResult {
	var res ports.PublishResult
	select {
	case ack := <-fut.Ok():
		res = ports.PublishResult{Duplicate: ack.Duplicate, Sequence: ack.Sequence}
	case err := <-fut.Err():
		res.Err = interpretError("publish event "+eventID, err)
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			p.restoreStream()
		}
	case <-p.c.closed:
		// Close does not resolve outstanding futures: fail them here.
		select {
		case ack := <-fut.Ok():
			res = ports.PublishResult{Duplicate: ack.Duplicate, Sequence: ack.Sequence}
		default:
			res.Err = fmt.Errorf("nats: publish event %s: %w: %w", eventID, ports.ErrUnavailable, nats.ErrConnectionClosed)
		}
	}
	return res
}

// restoreStream creates the stream again (EnsureStream), in the
// background and at most once per restoreInterval, after a publication
// found no stream answering on its subject: deleted by an operator, or a
// memory stream lost with its server's restart. The publication's error
// stands (the caller republishes); without this, a bridge retried
// against the missing stream for good.
func (p *Publisher) restoreStream() {
	p.mu.Lock()
	if p.restoring || time.Since(p.lastRestore) < restoreInterval {
		p.mu.Unlock()
		return
	}
	p.restoring, p.lastRestore = true, time.Now()
	p.mu.Unlock()
	go func() {
		defer func() {
			p.mu.Lock()
			p.restoring = false
			p.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
		defer cancel()
		name := p.c.cfg.Stream.Name
		if _, err := p.c.js.Stream(ctx, name); err == nil {
			return // it answers again (a server that was restarting)
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			p.c.logger.Warn("a publication found no stream answering, and the stream cannot be looked up", "stream", name, "error", err)
			return
		}
		if err := p.c.EnsureStream(ctx); err != nil {
			p.c.logger.Error("the stream is missing and cannot be created again", "stream", name, "error", err)
			return
		}
		p.c.logger.Warn("the stream was missing (deleted, or a memory stream lost with its server): created it again; events published meanwhile are republished", "stream", name)
	}()
}

// restoreTimeout bounds one restoreStream.
const restoreTimeout = 10 * time.Second

// Flush waits until every publication whose Publish returned before the
// call got its done callback (and the callback returned), or ctx ends.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	if p.completed >= p.issued {
		p.mu.Unlock()
		return nil
	}
	w := flushWaiter{upTo: p.issued, ch: make(chan struct{})}
	p.flushes = append(p.flushes, w)
	p.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats: flush publications: %w", ctx.Err())
	}
}

// Pending is the number of outstanding publications.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int(p.issued - p.completed)
}
