package ports

import (
	"context"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// DeadLetter is an action that failed for the last time, or an input that
// could not become an event (then Observer and Action are empty and Raw
// holds its bytes).
type DeadLetter struct {
	ID          int64
	Event       domain.Event
	Observer    string
	Action      string
	ActionType  domain.ActionType
	Error       string
	Attempts    int
	Raw         []byte
	CreatedAt   time.Time
	LastRetryAt time.Time // zero until `dlq retry` ran it
}

// DeadLetterSink parks failed work durably.
//
// Add stores d (ID and CreatedAt are assigned) and returns its ID; once it
// returns nil the item survives a restart (durable adapters). An error
// wrapping domain.ErrPermanent means d can never be stored as it is (a
// value the store refuses, such as a \u0000 in a jsonb column); an item
// whose text fields are valid UTF-8 without NUL bytes, whose event has no
// data and whose other bytes are in Raw can always be stored. Safe for
// concurrent use.
type DeadLetterSink interface {
	Add(ctx context.Context, d DeadLetter) (int64, error)
}

// DeadLetterFilter narrows List. Zero values mean no filter; Limit 0 means
// the adapter's default (100).
type DeadLetterFilter struct {
	Observer string
	Limit    int
	AfterID  int64 // list items with ID > AfterID (paging)
	// Brief lists the items without their payload: Event holds only its
	// ID and Raw is nil (every other field as stored), so that a page
	// takes the same memory whatever the events weigh. An event that Get could
	// not decode is noted in Error as Get notes it. Listings and paging
	// use it; Get returns an item whole.
	Brief bool
}

// DeadLetterStore is the sink plus administration.
//
// List returns items in ascending ID order. Get returns ErrNotFound for an
// unknown ID; so does Remove. MarkRetried records a failed retry: attempts
// grow by one, Error and LastRetryAt are replaced. Stats counts items per
// observer ("" for inputs that were not events). Safe for concurrent use.
type DeadLetterStore interface {
	DeadLetterSink
	List(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error)
	Get(ctx context.Context, id int64) (DeadLetter, error)
	Remove(ctx context.Context, id int64) error
	MarkRetried(ctx context.Context, id int64, errText string, at time.Time) error
	Stats(ctx context.Context) (map[string]int, error)
}
