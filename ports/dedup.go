package ports

import (
	"context"
	"time"
)

// ClaimResult is the answer to a Deduplicator claim.
type ClaimResult int

// The claim results.
const (
	// ClaimAcquired: the caller holds the claim and must process the event.
	ClaimAcquired ClaimResult = iota + 1
	// ClaimDone: the event was already processed within the window; skip it.
	ClaimDone
	// ClaimBusy: another holder's claim has not expired; try again later.
	ClaimBusy
)

func (c ClaimResult) String() string {
	switch c {
	case ClaimAcquired:
		return "acquired"
	case ClaimDone:
		return "done"
	case ClaimBusy:
		return "busy"
	}
	return "unknown"
}

// Deduplicator makes each event be processed once across processes.
//
// Claim takes eventID for the holder identified by token until now+lease
// and returns ClaimAcquired; a holder that already has the claim extends it
// and gets ClaimAcquired again. When the event was marked done within its
// window Claim returns ClaimDone; when another token holds an unexpired
// claim it returns ClaimBusy. Of several concurrent claimers of a free
// event exactly one gets ClaimAcquired.
//
// MarkDone records eventID as processed for window, whoever holds the
// claim. Release drops token's claim (a no-op when token does not hold it),
// so the event can be claimed again at once; it never removes a done mark.
//
// ClaimMany is Claim for several events at once (one round trip for a
// networked adapter): it returns one result per id, in order, each what
// Claim would have answered for it, or an error and no results (claims
// it took before failing expire after their lease). MarkDoneMany is
// MarkDone for every id, in one round trip; on error some may be marked.
// An empty ids list does nothing.
//
// A claim never outlives its lease: a holder that dies leaves the event
// claimable after the lease, never marked done. Safe for concurrent use;
// shared between processes for networked adapters.
type Deduplicator interface {
	Claim(ctx context.Context, eventID, token string, lease time.Duration) (ClaimResult, error)
	MarkDone(ctx context.Context, eventID string, window time.Duration) error
	Release(ctx context.Context, eventID, token string) error
	ClaimMany(ctx context.Context, eventIDs []string, token string, lease time.Duration) ([]ClaimResult, error)
	MarkDoneMany(ctx context.Context, eventIDs []string, window time.Duration) error
}

// ResultCache remembers which actions already succeeded for an event, so a
// redelivered event does not repeat them.
//
// Get reports whether key holds a stored success (false after the TTL).
// Put stores a success for ttl; callers put only successes. GetMany and
// PutMany do the same for several keys in one round trip: GetMany returns
// one answer per key, in order, or an error and no answers; PutMany
// stores every key (on error, some may be stored). Safe for concurrent
// use; shared between processes for networked adapters.
type ResultCache interface {
	Get(ctx context.Context, key string) (bool, error)
	Put(ctx context.Context, key string, ttl time.Duration) error
	GetMany(ctx context.Context, keys []string) ([]bool, error)
	PutMany(ctx context.Context, keys []string, ttl time.Duration) error
}

// ClaimLookUp is a capability of a Deduplicator whose store also holds a
// ResultCache's entries (the Redis adapters over one client): it claims
// events and looks up action results in one round trip, where the two
// calls would each cost one.
//
// ClaimManyLookUp answers ClaimMany(ctx, eventIDs, token, lease) and
// cache.GetMany(ctx, keys) together when cache is a result cache over the
// same store, and returns ok true; the answers and errors are each what
// that call would have returned (a failed round trip fails both). When
// cache is another store's, or the adapter cannot combine the two at the
// moment, it does nothing and returns ok false: the caller makes the two
// calls itself.
type ClaimLookUp interface {
	ClaimManyLookUp(ctx context.Context, eventIDs []string, token string, lease time.Duration, cache ResultCache, keys []string) (ClaimLookUpResult, bool)
}

// ClaimLookUpResult is ClaimManyLookUp's answer: ClaimMany's and GetMany's.
type ClaimLookUpResult struct {
	Claims   []ClaimResult
	ClaimErr error
	Hits     []bool
	// LookUpErr is GetMany's error; Hits is nil with it.
	LookUpErr error
}
