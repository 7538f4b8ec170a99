package porttest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// StoreFeatures says what a Deduplicator or ResultCache adapter can do, so
// that the suite runs every case that applies (watermill's
// pubsub/tests.Features).
type StoreFeatures struct {
	// SharedAcrossInstances: the harness hands out a second instance over
	// the same state (another process's, in production; the same instance
	// when the state lives in one process), and the suite checks that each
	// sees the other's writes.
	SharedAcrossInstances bool
	// ExpiryByClock: the instances judge expiry by a clock the harness
	// moves (Advance). Otherwise they judge it by real time, and each
	// expiry case waits about a second with 300ms leases and TTLs.
	ExpiryByClock bool
}

// DedupHarness is a deduplicator under test.
type DedupHarness struct {
	// Dedup is the instance under test, isolated from other harnesses.
	Dedup ports.Deduplicator
	// Other is a second instance over Dedup's state; set exactly when
	// StoreFeatures.SharedAcrossInstances.
	Other ports.Deduplicator
	// Advance moves the instances' clock forward; set exactly when
	// StoreFeatures.ExpiryByClock.
	Advance func(d time.Duration)
}

// RunDeduplicator checks the ports.Deduplicator contract. newHarness must
// return an isolated harness on every call, consistent with features.
func RunDeduplicator(t *testing.T, features StoreFeatures, newHarness func(t *testing.T) DedupHarness) {
	t.Helper()
	const lease, window = time.Minute, time.Hour
	newDedup := func(t *testing.T) (ports.Deduplicator, func(time.Duration)) {
		t.Helper()
		h := newHarness(t)
		checkStoreHarness(t, features, h.Other != nil, h.Advance != nil)
		return h.Dedup, passTime(h.Advance)
	}
	shared := func(t *testing.T) (a, b ports.Deduplicator, wait func(time.Duration)) {
		t.Helper()
		if !features.SharedAcrossInstances {
			t.Skip("instances of this adapter share no state")
		}
		h := newHarness(t)
		checkStoreHarness(t, features, h.Other != nil, h.Advance != nil)
		return h.Dedup, h.Other, passTime(h.Advance)
	}

	t.Run("FirstClaimWinsOthersBusy", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		ev := newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
		mustDedupClaim(t, d, ev, "c", lease, ports.ClaimBusy)
	})

	t.Run("EventsAreIndependent", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		e1, e2 := newEventID(), newEventID()
		mustDedupClaim(t, d, e1, "a", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, e2, "b", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, d, e1, window)
		mustDedupClaim(t, d, e2, "a", lease, ports.ClaimBusy)
		mustDedupClaim(t, d, e1, "b", lease, ports.ClaimDone)
	})

	t.Run("SameTokenReclaims", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		ev := newEventID()
		for range 3 {
			mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		}
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
	})

	t.Run("ReclaimExtendsLease", func(t *testing.T) {
		t.Parallel()
		d, wait := newDedup(t)
		ev := newEventID()
		mustDedupClaim(t, d, ev, "a", 300*time.Millisecond, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		wait(time.Second) // well past the first 300ms lease
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
	})

	t.Run("MarkDoneAnswersDoneToEveryone", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		ev := newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, d, ev, window)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimDone)
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimDone)
		mustDedupMarkDone(t, d, ev, window) // marking again is fine
		mustDedupClaim(t, d, ev, "c", lease, ports.ClaimDone)
	})

	t.Run("MarkDoneWithoutClaim", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		ev := newEventID()
		mustDedupMarkDone(t, d, ev, window)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimDone)
	})

	t.Run("ExactlyOneConcurrentClaimerWins", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		for round := range 3 {
			ev := newEventID()
			const claimers = 20
			var (
				results = make([]ports.ClaimResult, claimers)
				errs    = make([]error, claimers)
			)
			atOnce(claimers, func(i int) {
				results[i], errs[i] = d.Claim(t.Context(), ev, fmt.Sprintf("token-%d", i), lease)
			})
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
		d, wait := newDedup(t)
		ev := newEventID()
		mustDedupClaim(t, d, ev, "a", 300*time.Millisecond, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
		wait(time.Second) // well past the 300ms lease
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimBusy)
	})

	t.Run("DoneMarkExpiresAfterWindow", func(t *testing.T) {
		t.Parallel()
		d, wait := newDedup(t)
		ev := newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, d, ev, 300*time.Millisecond)
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimDone)
		wait(time.Second) // well past the 300ms window
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimBusy)
	})

	t.Run("ReleaseByHolderFreesAtOnce", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		ev := newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupRelease(t, d, ev, "a")
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimBusy)
	})

	t.Run("ReleaseByNonHolderIsNoOp", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		ev := newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupRelease(t, d, ev, "b")
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimBusy)
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupRelease(t, d, newEventID(), "a") // releasing an event nobody claimed is fine
	})

	t.Run("ReleaseKeepsDoneMark", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		ev := newEventID()
		mustDedupClaim(t, d, ev, "a", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, d, ev, window)
		mustDedupRelease(t, d, ev, "a")
		mustDedupRelease(t, d, ev, "b")
		mustDedupClaim(t, d, ev, "b", lease, ports.ClaimDone)
	})

	t.Run("ClaimManyAnswersEachAsClaimWould", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		free, own, others, done := newEventID(), newEventID(), newEventID(), newEventID()
		mustDedupClaim(t, d, own, "a", lease, ports.ClaimAcquired)
		mustDedupClaim(t, d, others, "b", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, d, done, window)
		ids := []string{free, own, others, done}
		got, err := d.ClaimMany(t.Context(), ids, "a", lease)
		if err != nil {
			t.Fatalf("ClaimMany: %v", err)
		}
		want := []ports.ClaimResult{ports.ClaimAcquired, ports.ClaimAcquired, ports.ClaimBusy, ports.ClaimDone}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("ClaimMany = %v, want %v", got, want)
		}
		mustDedupClaim(t, d, free, "b", lease, ports.ClaimBusy) // taken by the batch
		if res, err := d.ClaimMany(t.Context(), nil, "a", lease); err != nil || len(res) != 0 {
			t.Fatalf("ClaimMany(no ids) = %v, %v; want nothing", res, err)
		}
		if _, err := d.ClaimMany(t.Context(), []string{newEventID(), ""}, "a", lease); err == nil {
			t.Fatal("ClaimMany with an empty id: no error")
		}
	})

	t.Run("MarkDoneManyMarksEvery", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		ids := []string{newEventID(), newEventID(), newEventID()}
		mustDedupClaim(t, d, ids[0], "a", lease, ports.ClaimAcquired)
		if err := d.MarkDoneMany(t.Context(), ids, window); err != nil {
			t.Fatalf("MarkDoneMany: %v", err)
		}
		for _, id := range ids {
			mustDedupClaim(t, d, id, "b", lease, ports.ClaimDone)
		}
		if err := d.MarkDoneMany(t.Context(), nil, window); err != nil {
			t.Fatalf("MarkDoneMany(no ids): %v", err)
		}
		if err := d.MarkDoneMany(t.Context(), []string{newEventID()}, 0); err == nil {
			t.Fatal("MarkDoneMany with a zero window: no error")
		}
	})

	t.Run("ClaimManyExactlyOneConcurrentWinner", func(t *testing.T) {
		t.Parallel()
		d, _ := newDedup(t)
		ids := []string{newEventID(), newEventID(), newEventID()}
		const claimers = 10
		var (
			results = make([][]ports.ClaimResult, claimers)
			errs    = make([]error, claimers)
		)
		atOnce(claimers, func(i int) {
			results[i], errs[i] = d.ClaimMany(t.Context(), ids, fmt.Sprintf("token-%d", i), lease)
		})
		for j := range ids {
			acquired := 0
			for i := range claimers {
				if errs[i] != nil {
					t.Fatalf("ClaimMany by token-%d: %v", i, errs[i])
				}
				if results[i][j] == ports.ClaimAcquired {
					acquired++
				}
			}
			if acquired != 1 {
				t.Fatalf("event %d: %d of %d concurrent batches acquired it, want exactly 1", j, acquired, claimers)
			}
		}
	})

	// Two instances over one state (two processes, in production) see
	// each other's claims, done marks and releases.
	t.Run("ClaimIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b, _ := shared(t)
		ev := newEventID()
		mustDedupClaim(t, a, ev, "proc-a", lease, ports.ClaimAcquired)
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimBusy)
		mustDedupClaim(t, b, ev, "proc-a", lease, ports.ClaimAcquired) // the same holder through the other instance
	})

	t.Run("DoneIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b, _ := shared(t)
		ev := newEventID()
		mustDedupClaim(t, a, ev, "proc-a", lease, ports.ClaimAcquired)
		mustDedupMarkDone(t, a, ev, window)
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimDone)
	})

	t.Run("ReleaseIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b, _ := shared(t)
		ev := newEventID()
		mustDedupClaim(t, a, ev, "proc-a", lease, ports.ClaimAcquired)
		mustDedupRelease(t, b, ev, "proc-b") // not the holder: no effect
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimBusy)
		mustDedupRelease(t, a, ev, "proc-a")
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimAcquired)
	})

	t.Run("ExpiryIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b, wait := shared(t)
		ev := newEventID()
		mustDedupClaim(t, a, ev, "proc-a", 300*time.Millisecond, ports.ClaimAcquired)
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimBusy)
		wait(time.Second) // well past the 300ms lease
		mustDedupClaim(t, b, ev, "proc-b", lease, ports.ClaimAcquired)
	})
}

// atOnce runs f(0) … f(n-1) in n goroutines released together and waits
// for them.
func atOnce(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// passTime returns how the suite lets time pass: the harness's clock when
// it has one, else a real wait (a correctness wait, not a speed target).
func passTime(advance func(time.Duration)) func(time.Duration) {
	if advance != nil {
		return advance
	}
	return time.Sleep
}

// checkStoreHarness fails the test when a harness contradicts its
// features, so that a flag cannot silently skip or weaken a case.
func checkStoreHarness(t *testing.T, f StoreFeatures, hasOther, hasAdvance bool) {
	t.Helper()
	var problems []string
	if f.SharedAcrossInstances != hasOther {
		problems = append(problems, fmt.Sprintf("SharedAcrossInstances is %v but a second instance is given: %v", f.SharedAcrossInstances, hasOther))
	}
	if f.ExpiryByClock != hasAdvance {
		problems = append(problems, fmt.Sprintf("ExpiryByClock is %v but Advance is given: %v", f.ExpiryByClock, hasAdvance))
	}
	if len(problems) > 0 {
		t.Fatalf("inconsistent store harness: %s", strings.Join(problems, "; "))
	}
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
