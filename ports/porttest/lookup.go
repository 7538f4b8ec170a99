package porttest

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// runEventLookup checks ChangeLogInspector.Event (RunChangeLogInspector
// runs it): an entry is found by its event id, as Read returns it.
func runEventLookup(t *testing.T, newHarness func(t *testing.T) InspectorHarness) {
	t.Run("EventByID", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		want := []domain.Event{sampleEvent(1, domain.EventInsert), sampleEvent(2, domain.EventUpdate)}
		for _, ev := range want {
			mustAppend(t, SourceHarness{Append: h.Append}, ev)
		}
		recs, _ := readUntil(t, h.Source, ports.Position{}, 10, 2)
		for i, ev := range want {
			got, err := h.Inspector.Event(t.Context(), ev.ID)
			if err != nil {
				t.Fatalf("Event(%s): %v", ev.ID, err)
			}
			if got.Position != recs[i].Position || got.Err != nil {
				t.Errorf("Event(%s) at %s (err %v), want %s as read", ev.ID, got.Position, got.Err, recs[i].Position)
			}
			if d := diffEvent(recs[i].Event, got.Event); d != "" || got.Event.ID != ev.ID {
				t.Errorf("Event(%s) differs from the entry as read: %s", ev.ID, d)
			}
		}
		for _, id := range []string{uuid.NewString(), "not-a-uuid", ""} {
			if _, err := h.Inspector.Event(t.Context(), id); !errors.Is(err, ports.ErrNotFound) {
				t.Errorf("Event(%q) = %v, want ports.ErrNotFound", id, err)
			}
		}
	})
}
