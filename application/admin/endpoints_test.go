package admin_test

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestStatusCountsParkedRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rep, err := b.state.Status(t.Context())
	if err != nil || rep.Databases[0].ParkedRetries != nil {
		t.Fatalf("status of a store without a retry store = %+v, %v; want no parked_retries", rep, err)
	}
	retries := memory.NewRetries(b.dl, nil)
	b.store.Retries = retries
	first := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	for i, obs := range []string{"hooks", "hooks", "audit"} {
		ev := domain.Event{ID: string(rune('a' + i)), EntityType: "Order", EntityID: "1"}
		if _, _, err := retries.Park(t.Context(), ports.RetryItem{Event: ev, Observer: obs, EntityKey: ev.EntityKey(),
			Actions: []ports.RetryAction{{Action: "w", Endpoint: "https://x:443", FirstFailure: first, Due: first}}}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = b.state.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Databases[0].ParkedRetries
	if c == nil || c.Due != 2 || c.Waiting != 1 || c.ByObserver["hooks"] != 2 || c.ByEndpoint["https://x:443"] != 3 || !c.OldestFailure.Equal(first) {
		t.Fatalf("parked retries = %+v", c)
	}
}
