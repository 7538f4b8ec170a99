package porttest

import (
	"slices"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// ClaimLookUpHarness is a deduplicator with the ports.ClaimLookUp
// capability under test.
type ClaimLookUpHarness struct {
	// Dedup implements ports.ClaimLookUp.
	Dedup ports.Deduplicator
	// Cache is a result cache over Dedup's store: ClaimManyLookUp
	// combines its lookups with the claims.
	Cache ports.ResultCache
	// Foreign is a result cache over another store, which
	// ClaimManyLookUp declines.
	Foreign ports.ResultCache
}

// RunClaimLookUp checks the ports.ClaimLookUp contract. newHarness must
// return an isolated harness on every call.
func RunClaimLookUp(t *testing.T, newHarness func(t *testing.T) ClaimLookUpHarness) {
	t.Helper()
	const lease, window, ttl = time.Minute, time.Hour, time.Hour
	open := func(t *testing.T) (ClaimLookUpHarness, ports.ClaimLookUp) {
		t.Helper()
		h := newHarness(t)
		cl, ok := h.Dedup.(ports.ClaimLookUp)
		if !ok {
			t.Fatalf("%T does not implement ports.ClaimLookUp", h.Dedup)
		}
		return h, cl
	}

	t.Run("AnswersAsClaimManyAndGetManyWould", func(t *testing.T) {
		t.Parallel()
		h, cl := open(t)
		ctx := t.Context()
		free, others, done, own := newEventID(), newEventID(), newEventID(), newEventID()
		mustDedupClaim(t, h.Dedup, others, "b", lease, ports.ClaimAcquired)
		if err := h.Dedup.MarkDone(ctx, done, window); err != nil {
			t.Fatalf("MarkDone: %v", err)
		}
		mustDedupClaim(t, h.Dedup, own, "a", lease, ports.ClaimAcquired)
		stored, missing := newEventID()+":obs:act", newEventID()+":obs:act"
		if err := h.Cache.Put(ctx, stored, ttl); err != nil {
			t.Fatalf("Put: %v", err)
		}

		r, ok := cl.ClaimManyLookUp(ctx, []string{free, others, done, own}, "a", lease, h.Cache, []string{stored, missing, stored})
		if !ok {
			t.Fatal("ClaimManyLookUp declined a cache over its own store")
		}
		if r.ClaimErr != nil || r.LookUpErr != nil {
			t.Fatalf("ClaimManyLookUp: claim error %v, lookup error %v", r.ClaimErr, r.LookUpErr)
		}
		if want := []ports.ClaimResult{ports.ClaimAcquired, ports.ClaimBusy, ports.ClaimDone, ports.ClaimAcquired}; !slices.Equal(r.Claims, want) {
			t.Errorf("claims = %v, want %v", r.Claims, want)
		}
		if want := []bool{true, false, true}; !slices.Equal(r.Hits, want) {
			t.Errorf("hits = %v, want %v", r.Hits, want)
		}
		// The claim was taken, as ClaimMany takes it.
		mustDedupClaim(t, h.Dedup, free, "b", lease, ports.ClaimBusy)
		mustDedupClaim(t, h.Dedup, free, "a", lease, ports.ClaimAcquired)
	})

	t.Run("DeclinesACacheOfAnotherStore", func(t *testing.T) {
		t.Parallel()
		h, cl := open(t)
		ev := newEventID()
		if _, ok := cl.ClaimManyLookUp(t.Context(), []string{ev}, "a", lease, h.Foreign, []string{ev + ":obs:act"}); ok {
			t.Fatal("ClaimManyLookUp answered for a cache over another store")
		}
		// Declining does nothing: the event is still free.
		mustDedupClaim(t, h.Dedup, ev, "b", lease, ports.ClaimAcquired)
	})
}
