package porttest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// RunDeduplicator checks the ports.Deduplicator contract. newDedup must
// return an isolated instance on every call. The expiry cases wait about a
// second with 300ms leases and windows; the adapter must judge expiry by a
// real clock.
func RunDeduplicator(t *testing.T, newDedup func(t *testing.T) ports.Deduplicator) {
	t.Helper()
	const lease, window = time.Minute, time.Hour

	t.Run("FirstClaimWinsOthersBusy", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
		mustDedupClaim(t, d, ev, "c", lease, ports.ClaimBusy)
	})

	t.Run("EventsAreIndependent", func(t *testing.T) {
		t.Parallel()
		d, e1, e2 := newDedup(t), newEventID(), newEventID()
		mustDedupClaim(t, d, e1, "a", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, e2, "b", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, d, e1, window)
		mustDedupClaim(t, d, e2, "a", lease, ports.ClaimBusy)
		mustDedupClaim(t, d, e1, "b", lease, ports.ClaimDone)
	})

	t.Run("SameTokenReclaims", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		for range 3 {
			mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		}
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
	})

	t.Run("ReclaimExtendsLease", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		mustDedupClaim(t, d, ev, "a", 300*time.Millisecond, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		time.Sleep(time.Second) // correctness wait: well past the first 300ms lease
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
	})

	t.Run("MarkDoneAnswersDoneToEveryone", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, d, ev, window)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimDone)
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimDone)
		mustDedupMarkDone(t, d, ev, window) // marking again is fine
		mustDedupClaim(t, d, ev, "c", lease, ports.ClaimDone)
	})

	t.Run("MarkDoneWithoutClaim", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		mustDedupMarkDone(t, d, ev, window)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimDone)
	})

	t.Run("ExactlyOneConcurrentClaimerWins", func(t *testing.T) {
		t.Parallel()
		d := newDedup(t)
		for round := range 3 {
			ev := newEventID()
			const claimers = 20
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				results = make([]ports.ClaimResult, claimers)
				errs    = make([]error, claimers)
			)
			for i := range claimers {
				wg.Go(func() {
					<-start
					results[i], errs[i] = d.Claim(t.Context(), ev, fmt.Sprintf("token-%d", i), lease)
				})
			}
			close(start)
			wg.Wait()
			acquired := 0
			for i, res := range results {
				if errs[i] != nil {
					t.Fatalf("round %d: Claim by token-%d: %v", round, i, errs[i])
				}
				switch res {
				case ports.ClaimAcquired:
					acquired++
				case ports.ClaimBusy:
				default:
					t.Fatalf("round %d: Claim by token-%d = %v, want acquired or busy", round, i, res)
				}
			}
			if acquired != 1 {
				t.Fatalf("round %d: %d of %d concurrent claimers acquired, want exactly 1", round, acquired, claimers)
			}
		}
	})

	t.Run("ClaimExpiresAfterLease", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		mustDedupClaim(t, d, ev, "a", 300*time.Millisecond, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
		time.Sleep(time.Second) // correctness wait: well past the 300ms lease
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimBusy)
	})

	t.Run("DoneMarkExpiresAfterWindow", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, d, ev, 300*time.Millisecond)
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimDone)
		time.Sleep(time.Second) // correctness wait: well past the 300ms window
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimBusy)
	})

	t.Run("ReleaseByHolderFreesAtOnce", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupRelease(t, d, ev, "a")
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimBusy)
	})

	t.Run("ReleaseByNonHolderIsNoOp", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupRelease(t, d, ev, "b")
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupRelease(t, d, newEventID(), "a") // releasing an event nobody claimed is fine
	})

	t.Run("ReleaseKeepsDoneMark", func(t *testing.T) {
		t.Parallel()
		d, ev := newDedup(t), newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, d, ev, window)
		mustDedupRelease(t, d, ev, "a")
		mustDedupRelease(t, d, ev, "b")
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimDone)
	})
}

// RunDeduplicatorShared checks that two instances over one backing store
// (two processes, in production) see each other's claims, done marks and
// releases. newPair returns two such instances, isolated from other calls.
func RunDeduplicatorShared(t *testing.T, newPair func(t *testing.T) (a, b ports.Deduplicator)) {
	t.Helper()
	const lease, window = time.Minute, time.Hour

	t.Run("ClaimIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b := newPair(t)
		ev := newEventID()
		mustDedupClaim(t, a, ev, "proc-a", lease, ports.ClaimAcquired)
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimBusy)
		mustDedupClaim(t, b, ev, "proc-a", lease, ports.ClaimAcquired) // the same holder through the other instance
	})

	t.Run("DoneIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b := newPair(t)
		ev := newEventID()
		mustDedupClaim(t, a, ev, "proc-a", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, a, ev, window)
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimDone)
	})

	t.Run("ReleaseIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b := newPair(t)
		ev := newEventID()
		mustDedupClaim(t, a, ev, "proc-a", lease, ports.ClaimAcquired)
		mustDedupRelease(t, b, ev, "proc-b") // not the holder: no effect
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimBusy)
		mustDedupRelease(t, a, ev, "proc-a")
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimAcquired)
	})
}

func newEventID() string { return uuid.NewString() }

func mustDedupClaim(t *testing.T, d ports.Deduplicator, eventID, token string, lease time.Duration, want ports.ClaimResult) {
	t.Helper()
	got, err := d.Claim(t.Context(), eventID, token, lease)
	if err != nil {
		t.Fatalf("Claim(%s, %q, %v): %v", eventID, token, lease, err)
	}
	if got != want {
		t.Fatalf("Claim(%s, %q, %v) = %v, want %v", eventID, token, lease, got, want)
	}
}

func mustDedupMarkDone(t *testing.T, d ports.Deduplicator, eventID string, window time.Duration) {
	t.Helper()
	if err := d.MarkDone(t.Context(), eventID, window); err != nil {
		t.Fatalf("MarkDone(%s, %v): %v", eventID, window, err)
	}
}

func mustDedupRelease(t *testing.T, d ports.Deduplicator, eventID, token string) {
	t.Helper()
	if err := d.Release(t.Context(), eventID, token); err != nil {
		t.Fatalf("Release(%s, %q): %v", eventID, token, err)
	}
}
