package ports

import (
	"context"
	"errors"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// ErrClaimLost is returned when an item is settled by a holder whose
// claim another holder has taken over (the claim had expired).
var ErrClaimLost = errors.New("claim lost to another holder")

// RetryState is where a parked item stands in the queue of its key (its
// observer and entity).
type RetryState string

// The retry states.
const (
	// RetryDue: the first item of its key; it runs once Due has passed.
	RetryDue RetryState = "due"
	// RetryWaiting: an earlier item of the same key is parked; this one
	// becomes due when every earlier one is completed.
	RetryWaiting RetryState = "waiting"
)

// RetryAction is one unfinished action of a parked item.
type RetryAction struct {
	// Action is the action's identity (domain.Action.Name).
	Action     string            `json:"action"`
	ActionType domain.ActionType `json:"action_type"`
	// Endpoint is where the action delivers (see the endpoint guard).
	Endpoint string `json:"endpoint"`
	// Attempts counts the attempts made so far (0: never attempted, e.g.
	// parked behind an earlier item or while its endpoint was down).
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
	// FirstFailure is when its first attempt failed (zero before).
	FirstFailure time.Time `json:"first_failure,omitzero"`
	// Due is when its next attempt may run.
	Due time.Time `json:"due"`
	// Woken is set when MakeDue made it due ahead of its backoff: an
	// action is woken once in its parked life. One that fails again
	// after (a payload the receiver refuses while it answers others)
	// waits out its backoff: woken at each recovery, it was retried at
	// every probe interval, kept the circuit flapping and used up its
	// attempts in minutes.
	Woken bool `json:"woken,omitempty"`
}

// RetryItem is one event's unfinished actions of one observer, parked
// durably until they are due.
type RetryItem struct {
	ID       int64
	Event    domain.Event
	Observer string
	// EntityKey is the event's domain.Event.EntityKey: items of one
	// observer and entity key run one after the other, in parking order.
	EntityKey string
	Actions   []RetryAction
	// The store derives the fields below.
	Endpoints []string  // the distinct endpoints of Actions
	Due       time.Time // the earliest Due of Actions
	State     RetryState
	CreatedAt time.Time
}

// RetryClaim is who claims items, by the caller's clock, and for how long.
type RetryClaim struct {
	Holder string
	Now    time.Time
	TTL    time.Duration
	// Next, when set, is the holder Complete claims the key's next item
	// for (default Holder): a holder of its own, which the caller can
	// Release if Complete's answer is lost.
	Next string
}

// RetryKey is an observer and an entity key with parked items.
type RetryKey struct {
	Observer  string
	EntityKey string
	// Items counts the key's parked items (Keys sets it).
	Items int64
}

// RetryStore parks unfinished actions durably, so that the reader's
// checkpoint can move past their events while a receiver is down, and
// hands them to retry runners when they are due.
//
// Park stores item (ID, Endpoints, Due, State and CreatedAt are
// assigned; Due is the earliest Due of its actions) and returns it as
// stored, with created=true. The store keeps the order of each key
// (Observer, EntityKey): an item is RetryDue when no other item of its key
// is parked, else RetryWaiting behind them, decided under a per-key lock
// so that a concurrent Complete never leaves a key without a due head.
// Parking the same event for the same observer again returns the stored
// item with created=false and changes nothing.
//
// ClaimDue claims up to limit RetryDue items whose Due is not after
// c.Now and which nobody holds (or whose claim expired), for c.Holder
// until c.Now+c.TTL, earliest Due first; concurrent callers never get the
// same item. Items whose every endpoint is in skip are left alone.
//
// Reschedule replaces the actions of an item that holder claimed (its
// Endpoints and Due follow them), stores dead (the dead letters of the
// actions that failed for good) in the same transaction, and releases the
// claim. Complete deletes item (its ID, Observer and EntityKey, as
// claimed) when c.Holder claimed it, stores dead in the same transaction
// and makes the next waiting item of its key due (in parking order) and
// returns it; next.ID is 0 when the key has no item left. When next is
// due at c.Now (and nobody holds it) it is claimed for c.Next (c.Holder
// when Next is empty) until c.Now+c.TTL and claimed is true: the caller runs or reschedules it.
// Both return an error wrapping ErrNotFound for an unknown item and
// ErrClaimLost when another holder claimed it since; then nothing
// changed.
//
// Release drops every claim holder holds, leaving those items as they
// were (claimable at once), and returns how many it released. A runner
// claims with a holder name of its own per ClaimDue call and releases it
// when that call fails: the store may have committed the claim without
// the runner reading its answer, and those items would otherwise wait out
// their claim. Release with no such claim returns 0.
//
// Renew extends every claim holder holds to until (a runner whose item's
// actions run longer than a third of its claim renews it, so that no
// other runner takes the item meanwhile) and returns how many it
// extended; 0 when holder holds none any more.
//
// MakeDue makes every action of endpoint in RetryDue items due at now
// (their items too), but those woken before (RetryAction.Woken), which it
// marks woken, and returns how many items it changed; waiting items keep
// their place. Keys calls fn for every key with parked items and
// how many it has, one at a time and in no particular order, without
// holding them all in memory (fn must not call the store; its error ends
// the listing and is returned). Repair makes
// the first item of every key due when it is waiting (a safety net:
// nothing should strand a key) and returns how many it changed.
//
// Every change is durable once the call returns nil (durable adapters);
// times are the caller's. Safe for concurrent use, also from several
// processes for networked adapters.
type RetryStore interface {
	Park(ctx context.Context, item RetryItem) (stored RetryItem, created bool, err error)
	ClaimDue(ctx context.Context, c RetryClaim, limit int, skip []string) ([]RetryItem, error)
	Reschedule(ctx context.Context, id int64, holder string, actions []RetryAction, dead []DeadLetter) error
	Complete(ctx context.Context, item RetryItem, c RetryClaim, dead []DeadLetter) (next RetryItem, claimed bool, err error)
	Release(ctx context.Context, holder string) (int64, error)
	Renew(ctx context.Context, holder string, until time.Time) (int64, error)
	MakeDue(ctx context.Context, endpoint string, now time.Time) (int64, error)
	Keys(ctx context.Context, fn func(RetryKey) error) error
	Repair(ctx context.Context) (int64, error)
}

// RetryCounts is what a RetryStore holds, for status and metrics.
type RetryCounts struct {
	Due     int64 `json:"due"`
	Waiting int64 `json:"waiting"`
	// ByObserver and ByEndpoint count items (an item with actions on two
	// endpoints counts for both).
	ByObserver map[string]int64 `json:"by_observer"`
	ByEndpoint map[string]int64 `json:"by_endpoint"`
	// OldestFailure is the earliest first failure of any parked action
	// (zero when none failed yet).
	OldestFailure time.Time `json:"oldest_failure,omitzero"`
}

// RetryCounter counts what a RetryStore holds. Safe for concurrent use.
type RetryCounter interface {
	Counts(ctx context.Context) (RetryCounts, error)
}

// EndpointState is an endpoint's circuit as a process last reported it.
type EndpointState struct {
	Endpoint string `json:"endpoint"`
	// Holder is the process that reported it.
	Holder              string     `json:"holder"`
	State               string     `json:"state"` // closed, half_open, open
	ConsecutiveFailures int        `json:"consecutive_failures"`
	Since               time.Time  `json:"since"` // of the state
	NextProbe           *time.Time `json:"next_probe,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	ReportedAt          time.Time  `json:"reported_at"`
}

// EndpointStates keeps the last reported circuit state of each endpoint,
// so that status can show it without asking the running processes.
//
// Report stores s for s.Endpoint, replacing what any process reported for
// it before. List returns every stored state in endpoint order. Safe for
// concurrent use.
type EndpointStates interface {
	Report(ctx context.Context, s EndpointState) error
	List(ctx context.Context) ([]EndpointState, error)
}
