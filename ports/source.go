package ports

import (
	"context"
	"errors"
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

// OversizeTextChars is how many characters of each text field (entity
// type, event type, entity id, user) a source keeps in the record of an
// entry over its per-event limit: enough to name it in its dead letter.
const OversizeTextChars = 200

// Record is one entry read from a source. When the entry cannot become an
// event, Err says why (wrapping domain.ErrInvalidEvent), Raw holds its
// bytes and Event carries what could be read (at least ID when known).
// Size is what the record weighs in bytes as the source counts them (the
// change log: the JSON text of object_data and object_data_before, or for
// a small payload its stored size, and its text columns (entity type,
// event type, entity key, user); an invalid record: at least len(Raw));
// readers bound their memory by it.
type Record struct {
	Position Position
	Event    domain.Event
	Err      error
	Raw      []byte
	Size     int64
	// Headers came with the event from the bus (the trace context of the
	// bridge that published it); nil for a record read from a source.
	Headers Headers
}

// ReadLimit bounds one Read: at most Rows entries are examined (Rows must
// be positive), and the records returned weigh at most Bytes in all (their
// Size) unless the first alone weighs more (it is still returned, so a
// read always makes progress); Bytes 0 means no byte bound.
type ReadLimit struct {
	Rows  int
	Bytes int64
}

// ErrEventTooLarge marks (with domain.ErrInvalidEvent) an entry larger
// than the source's per-event limit: it is returned as an invalid record
// whose Raw identifies it (its position, id, entity and size, not its
// payload), and the payload is never loaded.
var ErrEventTooLarge = errors.New("event larger than the per-event limit")

// Batch is the result of one Read. End is the last position the read
// examined, including entries that were skipped (NOOP and READ rows, or
// rows of entities the source was told no observer wants); it equals the
// requested position when nothing was examined. A reader continues from
// End. Skipped counts the entries examined and not returned: with
// len(Records) it is how many the read examined (a source that does not
// count them leaves it 0).
type Batch struct {
	Records []Record
	End     Position
	Skipped int
}

// EventSource reads events in a stable order.
//
// Read examines up to limit.Rows entries strictly after `after`, in
// position order, and returns those that are events or invalid inputs,
// stopping early at the byte budget limit.Bytes (see ReadLimit). An entry
// larger than the source's per-event limit is returned as an invalid
// record wrapping ErrEventTooLarge, without its payload. It never
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
	Read(ctx context.Context, after Position, limit ReadLimit) (Batch, error)
	Wait(ctx context.Context) error
}

// CheckpointStore keeps, per reader name, the position up to which every
// event is finished.
//
// Load returns ok=false when the name has no checkpoint. Save overwrites;
// a later Load returns what the last successful Save stored, also from
// another process (durable adapters).
//
// SaveFenced saves as Save does, but only while fence.Holder holds the
// lease fence.Lease (unexpired, by the lease store's clock) in the Lease
// that keeps its state with this store (the same database schema, the same
// memory lease table); the check and the write are one atomic step. When
// the holder does not hold the lease (another holder took it, it was
// released, it expired, or it was never taken) nothing is written and the
// error wraps ErrLeaseLost. So a reader that lost its lease can never
// overwrite the checkpoint of the reader that took over, nor a checkpoint
// an operator moved. Safe for concurrent use.
type CheckpointStore interface {
	Load(ctx context.Context, name string) (pos Position, ok bool, err error)
	Save(ctx context.Context, name string, pos Position) error
	SaveFenced(ctx context.Context, name string, pos Position, fence Fence) error
}

// Fence names the lease a checkpoint save depends on.
type Fence struct {
	Lease  string // the lease's name, e.g. "reader:default"
	Holder string // who must hold it
}

// IsZero reports an unset fence.
func (f Fence) IsZero() bool { return f == Fence{} }

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
