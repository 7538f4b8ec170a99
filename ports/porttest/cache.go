package porttest

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// RunResultCache checks the ports.ResultCache contract. newCache must
// return an isolated instance on every call. The expiry cases wait about a
// second with a 300ms TTL; the adapter must judge expiry by a real clock.
func RunResultCache(t *testing.T, newCache func(t *testing.T) ports.ResultCache) {
	t.Helper()
	const ttl = time.Hour

	t.Run("MissOnUnknownKey", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		mustCacheGet(t, c, newResultKey("webhook-1"), false)
	})

	t.Run("PutThenHit", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		key := newResultKey("webhook-1")
		mustCachePut(t, c, key, ttl)
		mustCacheGet(t, c, key, true)
		mustCacheGet(t, c, key, true) // reading does not consume the entry
	})

	t.Run("KeysAreIndependent", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
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
		c := newCache(t)
		short, long := newResultKey("webhook-1"), newResultKey("webhook-2")
		mustCachePut(t, c, short, 300*time.Millisecond)
		mustCachePut(t, c, long, ttl)
		mustCacheGet(t, c, short, true)
		time.Sleep(time.Second) // correctness wait: well past the 300ms TTL
		mustCacheGet(t, c, short, false)
		mustCacheGet(t, c, long, true)
	})

	t.Run("PutTwiceRefreshesTTL", func(t *testing.T) {
		t.Parallel()
		c := newCache(t)
		key := newResultKey("webhook-1")
		mustCachePut(t, c, key, 300*time.Millisecond)
		mustCachePut(t, c, key, ttl)
		mustCacheGet(t, c, key, true)
		time.Sleep(time.Second) // correctness wait: well past the first 300ms TTL
		mustCacheGet(t, c, key, true)
	})
}

// RunResultCacheShared checks that two instances over one backing store see
// each other's entries. newPair returns two such instances, isolated from
// other calls.
func RunResultCacheShared(t *testing.T, newPair func(t *testing.T) (a, b ports.ResultCache)) {
	t.Helper()
	t.Run("PutIsSeenByTheOther", func(t *testing.T) {
		t.Parallel()
		a, b := newPair(t)
		key := newResultKey("webhook-1")
		mustCacheGet(t, b, key, false)
		mustCachePut(t, a, key, time.Hour)
		mustCacheGet(t, b, key, true)
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
