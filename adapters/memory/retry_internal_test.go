package memory

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// TestRetriesRepairReleasesAStrandedKey strands a key (its head removed
// behind the store's back) and checks that Repair makes the next item due.
func TestRetriesRepairReleasesAStrandedKey(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := NewRetries(NewDeadLetters(nil), nil)
	var items []ports.RetryItem
	for _, id := range []string{"e1", "e2"} {
		it, _, err := r.Park(t.Context(), ports.RetryItem{Event: domain.Event{ID: id}, Observer: "o", EntityKey: "k",
			Actions: []ports.RetryAction{{Action: "a", Endpoint: "e", Due: now}}})
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
	}
	r.mu.Lock()
	delete(r.items, items[0].ID)
	r.keys[ports.RetryKey{Observer: "o", EntityKey: "k"}] = []int64{items[1].ID}
	r.mu.Unlock()
	if n, err := r.Repair(t.Context()); err != nil || n != 1 {
		t.Fatalf("Repair = %d, %v; want 1", n, err)
	}
	got, err := r.ClaimDue(t.Context(), ports.RetryClaim{Holder: "h", Now: now, TTL: time.Minute}, 10, nil)
	if err != nil || len(got) != 1 || got[0].ID != items[1].ID {
		t.Fatalf("ClaimDue after Repair = %v, %v; want item %d", got, err, items[1].ID)
	}
}
