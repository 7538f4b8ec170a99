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
// A claim never outlives its lease: a holder that dies leaves the event
// claimable after the lease, never marked done. Safe for concurrent use;
// shared between processes for networked adapters.
type Deduplicator interface {
	Claim(ctx context.Context, eventID, token string, lease time.Duration) (ClaimResult, error)
	MarkDone(ctx context.Context, eventID string, window time.Duration) error
	Release(ctx context.Context, eventID, token string) error
}

// ResultCache remembers which actions already succeeded for an event, so a
// redelivered event does not repeat them.
//
// Get reports whether key holds a stored success (false after the TTL).
// Put stores a success for ttl; callers put only successes. Safe for
// concurrent use; shared between processes for networked adapters.
type ResultCache interface {
	Get(ctx context.Context, key string) (bool, error)
	Put(ctx context.Context, key string, ttl time.Duration) error
}
