package memory_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// The store keeps at most its bounds of items and bytes: an Add past
// either is refused (wrapping ports.ErrUnavailable: the writer retries),
// and removing an item makes room again.
func TestDeadLettersRefuseAddsPastTheirBounds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dl := func(i int, blob string) ports.DeadLetter {
		return ports.DeadLetter{Event: domain.Event{ID: "ev", EntityType: "Order", EventType: domain.EventInsert, Data: map[string]any{"blob": blob}},
			Observer: "o", Action: "a", Error: "boom", Attempts: i}
	}
	t.Run("items", func(t *testing.T) {
		t.Parallel()
		s := memory.NewDeadLetters(nil).WithBounds(2, 0)
		first, err := s.Add(ctx, dl(1, ""))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(ctx, dl(2, "")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(ctx, dl(3, "")); !errors.Is(err, ports.ErrUnavailable) || !strings.Contains(err.Error(), "full") {
			t.Fatalf("third Add into a store of 2 = %v, want refused as full", err)
		}
		if err := s.Remove(ctx, first); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(ctx, dl(3, "")); err != nil {
			t.Errorf("Add after a Remove = %v, want room", err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		t.Parallel()
		s := memory.NewDeadLetters(nil).WithBounds(0, 5000)
		if _, err := s.Add(ctx, dl(1, strings.Repeat("x", 1500))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(ctx, dl(2, strings.Repeat("x", 1500))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(ctx, dl(3, strings.Repeat("x", 1500))); !errors.Is(err, ports.ErrUnavailable) {
			t.Fatalf("a third 1.5 KB item into 5 000 bytes = %v, want refused", err)
		}
		if n, err := s.Count(ctx); err != nil || n != 2 {
			t.Errorf("Count = %d, %v; want 2", n, err)
		}
	})
}
