package porttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// CacheHarness is a result cache under test.
type CacheHarness struct {
	// Cache is the instance under test, isolated from other harnesses.
	Cache ports.ResultCache
	// Other is a second instance over Cache's state; set exactly when
	// StoreFeatures.SharedAcrossInstances.
	Other ports.ResultCache
	// Advance moves the instances' clock forward; set exactly when
	// StoreFeatures.ExpiryByClock.
	Advance func(d time.Duration)
}

// RunResultCache checks the ports.ResultCache contract. newHarness must
// return an isolated harness on every call, consistent with features.
func RunResultCache(t *testing.T, features StoreFeatures, newHarness func(t *testing.T) CacheHarness) {
	t.Helper()
	const ttl = time.Hour
	newCache := func(t *testing.T) (ports.ResultCache, func(time.Duration)) {
		t.Helper()
		h := newHarness(t)
		checkStoreHarness(t, features, h.Other != nil, h.Advance != nil)
		return h.Cache, passTime(h.Advance)
	}
	shared := func(t *testing.T) (a, b ports.ResultCache, wait func(time.Duration)) {
		t.Helper()
		if !features.SharedAcrossInstances {
			t.Skip("instances of this adapter share no state")
		}
		h := newHarness(t)
		checkStoreHarness(t, features, h.Other != nil, h.Advance != nil)
		return h.Cache, h.Other, passTime(h.Advance)
	}

	t.Run("MissOnUnknownKey", func(t *testing.T) {
		t.Parallel()
		c, _ := newCache(t)
		mustCacheGet(t, c, newResultKey("webhook-1"), false)
	})

	t.Run("PutThenHit", func(t *testing.T) {
		t.Parallel()
		c, _ := newCache(t)
		key := newResultKey("webhook-1")
		mustCachePut(t, c, key, ttl)
		mustCacheGet(t, c, key, true)
		mustCacheGet(t, c, key, true) // reading does not consume the entry
	})

	t.Run("KeysAreIndependent", func(t *testing.T) {
		t.Parallel()
		c, _ := newCache(t)
		k1 := newResultKey("webhook-1")
		k2 := newResultKey("webhook-2")
		mustCachePut(t, c, k1, ttl)
		mustCacheGet(t, c, k1, true)
		mustCacheGet(t, c, k2, false)
		mustCacheGet(t, c, k1+"x", false) // no prefix matching
		mustCacheGet(t, c, k1[:len(k1)-1], false)
	})

	t.Run("EntryExpiresAfterTTL", func(t *testing.T) {
		t.Parallel()
		c, wait := newCache(t)
		short, long := newResultKey("webhook-1"), newResultKey("webhook-2")
		mustCachePut(t, c, short, 300*time.Millisecond)
		mustCachePut(t, c, long, ttl)
		mustCacheGet(t, c, short, true)
		wait(time.Second) // well past the 300ms TTL
		mustCacheGet(t, c, short, false)
		mustCacheGet(t, c, long, true)
	})

	t.Run("PutTwiceRefreshesTTL", func(t *testing.T) {
		t.Parallel()
		c, wait := newCache(t)
		key := newResultKey("webhook-1")
		mustCachePut(t, c, key, 300*time.Millisecond)
		mustCachePut(t, c, key, ttl)
		mustCacheGet(t, c, key, true)
		wait(time.Second) // well past the first 300ms TTL
		mustCacheGet(t, c, key, true)
	})

	t.Run("ManyAnswersEachAsOneWould", func(t *testing.T) {
		t.Parallel()
		c, wait := newCache(t)
		stored, short, missing := newResultKey("webhook-1"), newResultKey("webhook-2"), newResultKey("webhook-3")
		if err := c.PutMany(t.Context(), []string{stored}, ttl); err != nil {
			t.Fatalf("PutMany: %v", err)
		}
		if err := c.PutMany(t.Context(), []string{short}, 300*time.Millisecond); err != nil {
			t.Fatalf("PutMany: %v", err)
		}
		keys := []string{missing, stored, short, stored}
		mustCacheGetMany(t, c, keys, []bool{false, true, true, true})
		wait(time.Second) // well past the 300ms TTL
		mustCacheGetMany(t, c, keys, []bool{false, true, false, true})
		if err := c.PutMany(t.Context(), []string{missing, short}, ttl); err != nil {
			t.Fatalf("PutMany: %v", err)
		}
		mustCacheGetMany(t, c, keys, []bool{true, true, true, true})
		mustCacheGetMany(t, c, nil, []bool{})
		if err := c.PutMany(t.Context(), nil, ttl); err != nil {
			t.Fatalf("PutMany(no keys): %v", err)
		}
		if err := c.PutMany(t.Context(), []string{newResultKey("webhook-4")}, 0); err == nil {
			t.Fatal("PutMany with a zero ttl: no error")
		}
	})

	// Two instances over one state (two processes, in production) see
	// each other's entries.
	t.Run("PutIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b, _ := shared(t)
		key := newResultKey("webhook-1")
		mustCacheGet(t, b, key, false)
		mustCachePut(t, a, key, time.Hour)
		mustCacheGet(t, b, key, true)
	})

	t.Run("ExpiryIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b, wait := shared(t)
		key := newResultKey("webhook-1")
		mustCachePut(t, a, key, 300*time.Millisecond)
		mustCacheGet(t, b, key, true)
		wait(time.Second) // well past the 300ms TTL
		mustCacheGet(t, b, key, false)
	})
}

// newResultKey builds a key shaped like the application's: event id,
// observer and action.
func newResultKey(action string) string { return uuid.NewString() + ":order-shipped:" + action }

func mustCacheGet(t *testing.T, c ports.ResultCache, key string, want bool) {
	t.Helper()
	got, err := c.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if got != want {
		t.Fatalf("Get(%q) = %v, want %v", key, got, want)
	}
}

func mustCachePut(t *testing.T, c ports.ResultCache, key string, ttl time.Duration) {
	t.Helper()
	if err := c.Put(t.Context(), key, ttl); err != nil {
		t.Fatalf("Put(%q, %v): %v", key, ttl, err)
	}
}

func mustCacheGetMany(t *testing.T, c ports.ResultCache, keys []string, want []bool) {
	t.Helper()
	got, err := c.GetMany(t.Context(), keys)
	if err != nil {
		t.Fatalf("GetMany(%d keys): %v", len(keys), err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("GetMany = %v, want %v", got, want)
	}
}
