package application_test

import (
	"fmt"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
)

// TestBlockedKeysHasEvent: HasEvent answers as Has does for the event's
// entity key, with and without other keys blocked.
func TestBlockedKeysHasEvent(t *testing.T) {
	t.Parallel()
	b := application.NewBlockedKeys()
	ev1, ev2 := event("", "Order", "1", nil), event("", "Order", "2", nil)
	if b.HasEvent("hooks", &ev1) {
		t.Fatal("an empty set has Order 1")
	}
	b.Add("hooks", ev1.EntityKey())
	for _, c := range []struct {
		obs  string
		ev   *domain.Event
		want bool
	}{{"hooks", &ev1, true}, {"hooks", &ev2, false}, {"audit", &ev1, false}} {
		if got := b.HasEvent(c.obs, c.ev); got != c.want || got != b.Has(c.obs, c.ev.EntityKey()) {
			t.Errorf("HasEvent(%s, %s) = %v, want %v (as Has)", c.obs, c.ev.EntityID, got, c.want)
		}
	}
	b.Done("hooks", ev1.EntityKey())
	if b.HasEvent("hooks", &ev1) {
		t.Error("Order 1 still blocked after its item completed")
	}
}

// TestBlockedKeysBoundsItsMemory: past the exact bounds (keys and bytes)
// keys are counted in the fixed table: every counted key stays blocked
// (never a false "free") until its items are done, and then nothing is.
func TestBlockedKeysBoundsItsMemory(t *testing.T) {
	t.Parallel()
	for name, lim := range map[string]application.BlockedKeysLimits{
		"keys":  {MaxKeys: 8, Counters: 1 << 14},
		"bytes": {MaxBytes: 8 * (5 + 16 + 64), Counters: 1 << 14}, // 8 entries: "hooks", the key and the overhead
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := application.NewBlockedKeysWithLimits(lim)
			const n = 1000
			key := func(i int) string { return fmt.Sprintf("Order:%010d", i) }
			for i := range n {
				b.Add("hooks", key(i))
				if i%3 == 0 {
					b.Add("hooks", key(i)) // two items
				}
			}
			items := n + (n+2)/3
			if exact := b.Len() - int(b.Spilled()); exact != 8 {
				t.Errorf("%d keys counted exactly, want the bound 8", exact)
			}
			if got := int(b.Spilled()); got != items-8-3 { // keys 0, 3 and 6 (two items each) fit exactly
				t.Errorf("%d items counted past the bound, want %d", got, items-8-3)
			}
			for i := range n {
				if !b.Has("hooks", key(i)) {
					t.Fatalf("key %d is not blocked", i)
				}
			}
			for i := range n {
				b.Done("hooks", key(i))
				if i%3 == 0 && !b.Has("hooks", key(i)) {
					t.Fatalf("key %d free with one of its two items still parked", i)
				}
			}
			for i := 0; i < n; i += 3 {
				if !b.Has("hooks", key(i)) {
					t.Fatalf("key %d freed by other keys' Done with one of its items still parked", i)
				}
			}
			for i := 0; i < n; i += 3 {
				b.Done("hooks", key(i))
			}
			if b.Len() != 0 || b.Spilled() != 0 {
				t.Errorf("Len %d, Spilled %d after every item was done; want 0", b.Len(), b.Spilled())
			}
			for i := range n {
				if b.Has("hooks", key(i)) {
					t.Fatalf("key %d still blocked after its items were done", i)
				}
			}
		})
	}
}

// TestBlockedKeysFullCounters: a key counted more times than a counter
// holds stays blocked until the table is empty, and is free after.
func TestBlockedKeysFullCounters(t *testing.T) {
	t.Parallel()
	b := application.NewBlockedKeysWithLimits(application.BlockedKeysLimits{MaxKeys: 1, Counters: 64})
	b.Add("hooks", "Order:0")
	const items = 1<<16 + 10
	for range items {
		b.Add("hooks", "Order:1")
	}
	for range items - 1 {
		b.Done("hooks", "Order:1")
	}
	if !b.Has("hooks", "Order:1") {
		t.Fatal("Order:1 free with one item still parked")
	}
	b.Done("hooks", "Order:1")
	if b.Has("hooks", "Order:1") || b.Spilled() != 0 {
		t.Errorf("Order:1 blocked (spilled %d) after all its items were done", b.Spilled())
	}
	if !b.Has("hooks", "Order:0") {
		t.Error("Order:0, counted exactly, lost")
	}
}

// TestBlockedKeysLoadStaysBounded: Load takes a store's keys one at a
// time into the same bounds.
func TestBlockedKeysLoadStaysBounded(t *testing.T) {
	t.Parallel()
	store := memory.NewRetries(memory.NewDeadLetters(nil), nil)
	const n = 300
	for i := range n {
		ev := event(fmt.Sprint("e", i), "Order", fmt.Sprint(i), nil)
		parkNow(t, store, ev)
	}
	b := application.NewBlockedKeysWithLimits(application.BlockedKeysLimits{MaxKeys: 10, Counters: 1 << 12})
	b.Add("stale", "Order:x") // replaced by the store's counts
	if err := b.Load(t.Context(), store); err != nil {
		t.Fatal(err)
	}
	if exact, spilled := b.Len()-int(b.Spilled()), b.Spilled(); exact != 10 || spilled != n-10 {
		t.Errorf("loaded %d keys exactly and %d items past the bound; want 10 and %d", exact, spilled, n-10)
	}
	for i := range n {
		ev := event("", "Order", fmt.Sprint(i), nil)
		if !b.HasEvent("hooks", &ev) {
			t.Fatalf("loaded key %d is not blocked", i)
		}
	}
	if b.Has("stale", "Order:x") {
		t.Error("a key counted before Load survived it")
	}
}

// TestBlockedKeysKeyInBothPlaces: a key counted in the table and then,
// once the exact map has room again, in the map too stays blocked until
// all its items are done.
func TestBlockedKeysKeyInBothPlaces(t *testing.T) {
	t.Parallel()
	b := application.NewBlockedKeysWithLimits(application.BlockedKeysLimits{MaxKeys: 1, Counters: 1 << 10})
	b.Add("hooks", "Order:0") // fills the map
	b.Add("hooks", "Order:1") // in the table
	b.Done("hooks", "Order:0")
	b.Add("hooks", "Order:1") // now in the map as well
	if b.Spilled() != 1 || b.Len() != 2 {
		t.Fatalf("Len %d, Spilled %d; want Order:1 counted once in each place", b.Len(), b.Spilled())
	}
	b.Done("hooks", "Order:1")
	if !b.Has("hooks", "Order:1") {
		t.Fatal("Order:1 free with one of its two items still parked")
	}
	b.Done("hooks", "Order:1")
	if b.Has("hooks", "Order:1") || b.Len() != 0 {
		t.Errorf("Order:1 blocked (Len %d) after both its items were done", b.Len())
	}
}
