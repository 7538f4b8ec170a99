package ports

import (
	"context"
	"strconv"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// Position is a totally ordered place in an event source: the change log
// orders by (TxID, Seq), where TxID is the writing transaction's id and Seq
// the row's key; sources without transactions leave TxID zero.
type Position struct {
	TxID uint64 `json:"txid"`
	Seq  int64  `json:"seq"`
}

// Less orders positions by TxID, then Seq.
func (p Position) Less(q Position) bool {
	if p.TxID != q.TxID {
		return p.TxID < q.TxID
	}
	return p.Seq < q.Seq
}

// IsZero reports the start of the source.
func (p Position) IsZero() bool { return p == Position{} }

// Record is one entry read from a source. When the entry cannot become an
// event, Err says why (wrapping domain.ErrInvalidEvent), Raw holds its
// bytes and Event carries what could be read (at least ID when known).
type Record struct {
	Position Position
	Event    domain.Event
	Err      error
	Raw      []byte
	// Headers came with the event from the bus (the trace context of the
	// bridge that published it); nil for a record read from a source.
	Headers Headers
}

// Batch is the result of one Read. End is the last position the read
// examined, including entries that were skipped (NOOP and READ rows); it
// equals the requested position when nothing was examined. A reader
// continues from End.
type Batch struct {
	Records []Record
	End     Position
}

// EventSource reads events in a stable order.
//
// Read examines up to limit entries strictly after `after`, in position
// order, and returns those that are events or invalid inputs. It never
// returns an entry while an earlier position may still appear (for the
// change log: rows of transactions that have not committed yet hold back
// everything after them), so a reader that continues from Batch.End never
// skips one. Entries that are deliberately not events (NOOP, READ) are
// examined but not returned. An empty batch is not an error.
//
// Wait blocks until new records may be readable, until the source's poll
// interval passes, or until ctx ends (then it returns ctx.Err()). Spurious
// wake-ups are allowed.
//
// Safe for concurrent use.
type EventSource interface {
	Read(ctx context.Context, after Position, limit int) (Batch, error)
	Wait(ctx context.Context) error
}

// CheckpointStore keeps, per reader name, the position up to which every
// event is finished.
//
// Load returns ok=false when the name has no checkpoint. Save overwrites;
// a later Load returns what the last successful Save stored, also from
// another process (durable adapters). Safe for concurrent use.
type CheckpointStore interface {
	Load(ctx context.Context, name string) (pos Position, ok bool, err error)
	Save(ctx context.Context, name string, pos Position) error
}

// Lease makes at most one holder at a time active for a name.
//
// Acquire takes the lease for holder when it is free or expired, or renews
// it when holder already has it, and returns held=true until now+ttl.
// When another holder has an unexpired lease it returns held=false.
// Release gives the lease up if holder has it (no error otherwise).
// Safe for concurrent use; exactly one of several concurrent callers for a
// free lease gets held=true.
type Lease interface {
	Acquire(ctx context.Context, name, holder string, ttl time.Duration) (held bool, err error)
	Release(ctx context.Context, name, holder string) error
}

// String renders the position as "txid/seq".
func (p Position) String() string {
	return strconv.FormatUint(p.TxID, 10) + "/" + strconv.FormatInt(p.Seq, 10)
}
