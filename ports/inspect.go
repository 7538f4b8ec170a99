package ports

import (
	"context"
	"time"
)

// The ports of this file serve the operator use cases (application/admin):
// status, checkpoint moves and replay. They read state; none of them is on
// the hot path.

// CheckpointRecord is a stored checkpoint and when it was last saved, by
// the store's clock.
type CheckpointRecord struct {
	Name      string
	Position  Position
	UpdatedAt time.Time
}

// CheckpointLister lists the checkpoints a CheckpointStore holds.
//
// List returns every stored checkpoint in name order, each with the time
// of its last successful Save by the store's clock. Safe for concurrent
// use.
type CheckpointLister interface {
	List(ctx context.Context) ([]CheckpointRecord, error)
}

// LeaseState is who holds a lease, as the lease store sees it.
type LeaseState struct {
	Name string
	// Holder is "" when nobody took the lease or it was released; an
	// expired lease keeps naming its last holder.
	Holder    string
	ExpiresAt time.Time // zero when Holder is ""
	// Active is true while Holder's lease has not expired.
	Active bool
	// Now is the store's clock when the state was read.
	Now time.Time
}

// LeaseInspector tells who holds a Lease.
//
// State reads the lease called name; a name nobody holds has Holder ""
// and Active false. Expiry is judged by the store's clock, as Acquire
// judges it, and Now is that clock. Safe for concurrent use.
type LeaseInspector interface {
	State(ctx context.Context, name string) (LeaseState, error)
}

// ChangeLogInspector answers questions about an EventSource without
// reading events.
//
// Backlog counts the entries after `after`: what a reader resuming there
// still has to examine, entries not readable yet (rows of transactions
// that wait behind an older open one) included. CountBetween counts the
// entries after `after` up to and including upTo (0 when upTo is not
// after `after`). FirstSince returns the position of the first entry, in
// reading order, among those created at or after since; ok is false when
// there is none. OldestTransactionAge is the age of the oldest open
// transaction that holds readers back, 0 when there is none (always 0 for
// a source without transactions). Event returns the entry whose event id
// is id, as Read returns it (an invalid entry with Err set), or an error
// wrapping ErrNotFound when there is none (also for an id that cannot be
// one, such as a non-UUID in a change log); entries of transactions that
// have not committed are not found. Safe for concurrent use.
type ChangeLogInspector interface {
	Backlog(ctx context.Context, after Position) (int64, error)
	CountBetween(ctx context.Context, after, upTo Position) (int64, error)
	FirstSince(ctx context.Context, since time.Time) (pos Position, ok bool, err error)
	OldestTransactionAge(ctx context.Context) (time.Duration, error)
	Event(ctx context.Context, id string) (Record, error)
}

// DeadLetterCounter counts the items of a DeadLetterStore (the dlq_items
// gauge). Count is cheaper than Stats. Safe for concurrent use.
type DeadLetterCounter interface {
	Count(ctx context.Context) (int64, error)
}
