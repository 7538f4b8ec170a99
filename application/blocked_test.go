package application_test

import (
	"testing"

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
