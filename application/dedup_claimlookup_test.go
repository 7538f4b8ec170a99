package application_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// combinedStore is a fakeDedup whose store holds cache's entries too: it
// answers ports.ClaimLookUp for that cache (and declines any other), as
// the Redis adapters over one client do.
type combinedStore struct {
	*fakeDedup
	cache     *fakeCache
	combined  atomic.Int32 // ClaimManyLookUp calls answered
	lookUpErr error        // returned for the lookups when set
}

var _ ports.ClaimLookUp = (*combinedStore)(nil)

func (s *combinedStore) ClaimManyLookUp(ctx context.Context, ids []string, token string, lease time.Duration, cache ports.ResultCache, keys []string) (ports.ClaimLookUpResult, bool) {
	if cache != ports.ResultCache(s.cache) {
		return ports.ClaimLookUpResult{}, false
	}
	s.combined.Add(1)
	var r ports.ClaimLookUpResult
	r.Claims, r.ClaimErr = s.ClaimMany(ctx, ids, token, lease)
	if s.lookUpErr != nil {
		r.LookUpErr = s.lookUpErr
		return r, true
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	r.Hits = make([]bool, len(keys))
	for i, k := range keys {
		r.Hits[i] = s.cache.keys[k]
	}
	return r, true
}

// TestDedupClaimsAndLooksUpInOneCallWhenTheStoreCan: with a store that
// holds the cache's entries (ports.ClaimLookUp), a prepared batch and a
// step that claims on its own each make one combined call and no separate
// lookup, and its answers count: a stored success is not run again.
func TestDedupClaimsAndLooksUpInOneCallWhenTheStoreCan(t *testing.T) {
	t.Parallel()
	cache := &fakeCache{keys: map[string]bool{"c-0:o:a": true, "c-solo:o:b": true}}
	store := &combinedStore{fakeDedup: newFakeDedup(), cache: cache}
	b := buildDecorators(t, store, cache, true)
	ctx := t.Context()

	runs := prepared(t, b, "c", 3)
	if got := store.combined.Load(); got != 1 {
		t.Fatalf("Prepare made %d combined calls for 3 events, want 1", got)
	}
	for _, run := range runs {
		if _, done := b.proc.Step(ctx, run); !done {
			t.Fatalf("run %s not done", run.Record.Event.ID)
		}
	}
	b.proc.Finish(ctx, runs...)
	runToEnd(t, b.proc, decoratorRecord("c-solo")) // not prepared: the step claims
	if got := store.combined.Load(); got != 2 {
		t.Errorf("%d combined calls in all, want 2 (the batch, the lone step)", got)
	}
	if got := cache.gets.Load(); got != 0 {
		t.Errorf("%d separate GetMany calls, want none", got)
	}
	// c-0's a and c-solo's b had succeeded before: 4 runs, 3 of each.
	if a, bb := b.calls["a"].Load(), b.calls["b"].Load(); a != 3 || bb != 3 {
		t.Errorf("actions ran a=%d b=%d times, want 3 each", a, bb)
	}
	for _, id := range []string{"c-0", "c-1", "c-2", "c-solo"} {
		if got := store.state(id); got != "done" {
			t.Errorf("%s is %q, want done", id, got)
		}
	}
}

// TestDedupCombinedLookupFailsOpen: lookups that fail in the combined call
// fail open as separate ones do (the actions run, the fail-open metric
// counts), and the claims of the same call are used.
func TestDedupCombinedLookupFailsOpen(t *testing.T) {
	t.Parallel()
	cache := &fakeCache{keys: map[string]bool{"f-0:o:a": true}}
	store := &combinedStore{fakeDedup: newFakeDedup(), cache: cache, lookUpErr: errRedisDown}
	b := buildDecorators(t, store, cache, true)
	ctx := t.Context()
	runs := prepared(t, b, "f", 2)
	for _, run := range runs {
		if _, done := b.proc.Step(ctx, run); !done {
			t.Fatalf("run %s not done", run.Record.Event.ID)
		}
	}
	b.proc.Finish(ctx, runs...)
	if a, bb := b.calls["a"].Load(), b.calls["b"].Load(); a != 2 || bb != 2 {
		t.Errorf("actions ran a=%d b=%d times, want 2 each (no lookup answered)", a, bb)
	}
	if b.metrics.failOpen.Load() == 0 {
		t.Error("no fail-open reported for the failed lookups")
	}
	if got := store.calls.Load(); got != 2 {
		t.Errorf("%d claims, want the 2 of the combined call", got)
	}
}
