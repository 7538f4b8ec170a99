package memory_test

import (
	"errors"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestLeaseUsesInjectedClock(t *testing.T) {
	t.Parallel()
	clock := newClock()
	l := memory.NewLease(clock.Now)
	ctx := t.Context()
	acquire := func(holder string) bool {
		t.Helper()
		held, err := l.Acquire(ctx, "reader", holder, 10*time.Second)
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		return held
	}
	if !acquire("a") || acquire("b") {
		t.Fatal("a should hold the lease, b be refused")
	}
	clock.Advance(9 * time.Second)
	if acquire("b") {
		t.Fatal("b took the lease before it expired")
	}
	clock.Advance(2 * time.Second)
	if !acquire("b") {
		t.Fatal("b could not take an expired lease")
	}
	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, err := l.Acquire(ctx, "x", "a", ttl); err == nil {
			t.Fatalf("Acquire with ttl %v succeeded", ttl)
		}
	}
}

func TestDeadLettersExtras(t *testing.T) {
	t.Parallel()
	clock := newClock()
	s := memory.NewDeadLetters(clock.Now)
	ctx := t.Context()
	data := map[string]any{"k": "v"}
	raw := []byte("raw")
	id, err := s.Add(ctx, ports.DeadLetter{Observer: "o", Raw: raw,
		Event: domain.Event{ID: "e", EntityType: "Order", Data: data}})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	data["k"], raw[0] = "changed", 'X'
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Event.Data["k"] != "v" || string(got.Raw) != "raw" {
		t.Fatalf("stored item shares the caller's memory: %v %q", got.Event.Data, got.Raw)
	}
	if !got.CreatedAt.Equal(clock.Now()) {
		t.Fatalf("CreatedAt = %v, want the clock's %v", got.CreatedAt, clock.Now())
	}
	if n, err := s.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v; want 1", n, err)
	}
	if err := s.MarkRetried(ctx, id+1, "e", clock.Now()); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("MarkRetried(unknown) = %v, want ports.ErrNotFound", err)
	}
	if _, err := s.List(ctx, ports.DeadLetterFilter{Limit: -1}); err == nil {
		t.Fatal("List with a negative limit succeeded")
	}
}
