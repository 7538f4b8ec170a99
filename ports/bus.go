package ports

import (
	"context"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// PublishResult is the broker's answer to one publication.
type PublishResult struct {
	// Duplicate is true when the broker had already stored a message with
	// the same id within its duplicate window (nothing new was stored).
	Duplicate bool
	// Sequence is the stored message's position in the stream.
	Sequence uint64
	// Err is set when the publication failed; it was not stored.
	Err error
}

// EventPublisher publishes events to the bus for workers.
//
// Publish queues ev, with hdr as the message's headers (may be nil), and
// returns at once unless the publisher's bound of
// unacknowledged publications is reached, in which case it blocks until
// there is room or ctx ends. done is called exactly once, from another
// goroutine, when the broker acknowledged the message as stored durably
// (or as a duplicate, dedupe key = ev.ID) or the publication failed.
// Publications of one publisher are stored in the order of Publish calls
// when they succeed. Safe for concurrent use.
type EventPublisher interface {
	Publish(ctx context.Context, ev domain.Event, hdr Headers, done func(PublishResult)) error
}

// Delivery is one message handed to a worker. Exactly one of Ack, Nak or
// Term ends it; until then the broker redelivers it after its ack wait.
type Delivery interface {
	// Data is the message body (an event envelope, or garbage).
	Data() []byte
	// Headers are the headers it was published with (nil for none).
	Headers() Headers
	// Attempt counts deliveries of this message, from 1.
	Attempt() int
	// LastAttempt reports whether the broker will not deliver it again.
	LastAttempt() bool
	// Ack tells the broker the message is finished.
	Ack(ctx context.Context) error
	// Nak asks for redelivery after delay.
	Nak(ctx context.Context, delay time.Duration) error
	// InProgress resets the ack-wait timer of a long-running message.
	InProgress(ctx context.Context) error
	// Term tells the broker never to deliver the message again.
	Term(ctx context.Context) error
}

// EventConsumer hands messages to workers; several consumers (processes)
// share one durable subscription, each message going to one of them.
//
// Consume calls handle for each delivery, from up to `concurrency`
// goroutines at once, until ctx ends; it then stops fetching, waits for
// the handle calls in progress and returns nil. Unacknowledged messages are
// redelivered by the broker (to any consumer) after the ack wait.
type EventConsumer interface {
	Consume(ctx context.Context, concurrency int, handle func(ctx context.Context, d Delivery)) error
}
