package ports

import (
	"context"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// BatchEvent is one event of a batch with its entry in the batch: the
// body its unbatched delivery would send.
type BatchEvent struct {
	Event *domain.Event
	Body  []byte
}

// ActionBatch is one delivery of several events for one action of one
// observer. ID identifies the delivery (domain.BatchID of its events): the
// same events in the same order have the same ID, so a receiver can tell a
// retried batch from a new one.
type ActionBatch struct {
	ID       string
	Observer *domain.Observer
	Action   *domain.Action
	Events   []BatchEvent
}

// BatchExecutor delivers batches of events for batched actions
// (domain.BatchingOf(act) != nil).
//
// BatchBody renders ev's entry of a batch: exactly what the unbatched
// delivery of ev would send as its body. Its error is the event's own
// failure (domain.Permanent when rendering cannot succeed).
//
// ExecuteBatch delivers every event of b in one request identified by
// b.ID, and returns as ActionExecutor.Execute does: nil when the receiver
// took the whole batch, domain.Permanent or a transient error (maybe with
// domain.Transient's retry-after) that applies to every event of b alike;
// the batch is never delivered in part. It returns promptly when ctx ends,
// and its errors carry no secret. Safe for concurrent use.
type BatchExecutor interface {
	BatchBody(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) ([]byte, error)
	ExecuteBatch(ctx context.Context, b ActionBatch) error
}
