package memory_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

func TestRetriesConformance(t *testing.T) {
	t.Parallel()
	porttest.RunRetryStore(t, func(*testing.T) porttest.RetryStores {
		dl := memory.NewDeadLetters(time.Now)
		r := memory.NewRetries(dl, time.Now)
		return porttest.RetryStores{Retries: r, Counter: r, DeadLetters: dl}
	})
}

// TestRetriesKeepWhatTheCallerParked checks that the store copies what it
// is given and what it hands out.
func TestRetriesKeepWhatTheCallerParked(t *testing.T) {
	t.Parallel()
	clock := newClock()
	r := memory.NewRetries(memory.NewDeadLetters(clock.Now), clock.Now)
	data := map[string]any{"k": "v"}
	acts := []ports.RetryAction{{Action: "a", Endpoint: "e", Due: clock.Now()}}
	it, _, err := r.Park(t.Context(), ports.RetryItem{Event: domain.Event{ID: "e1", Data: data}, Observer: "o", EntityKey: "k", Actions: acts})
	if err != nil {
		t.Fatal(err)
	}
	data["k"], acts[0].Action = "changed", "changed"
	if !it.CreatedAt.Equal(clock.Now()) {
		t.Errorf("CreatedAt = %v, want the injected clock's %v", it.CreatedAt, clock.Now())
	}
	got, err := r.ClaimDue(t.Context(), ports.RetryClaim{Holder: "h", Now: clock.Now(), TTL: time.Minute}, 1, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("ClaimDue = %v, %v", got, err)
	}
	if got[0].Event.Data["k"] != "v" || got[0].Actions[0].Action != "a" {
		t.Fatalf("stored item shares the caller's memory: %+v", got[0])
	}
}

func TestDeliveryLogConformance(t *testing.T) {
	t.Parallel()
	porttest.RunDeliveryLog(t, func(*testing.T) ports.DeliveryLog { return memory.NewDeliveryLog(0) })
}

func TestDeliveryLogKeepsTheNewest(t *testing.T) {
	t.Parallel()
	l := memory.NewDeliveryLog(3)
	for i := range 5 {
		if err := l.Append(t.Context(), []ports.DeliveryRecord{{EventID: string(rune('a' + i))}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.List(t.Context(), ports.DeliveryFilter{})
	if err != nil || len(got) != 3 || got[0].EventID != "e" || got[2].EventID != "c" {
		t.Fatalf("List = %+v, %v; want the newest 3", got, err)
	}
}

// The log is bounded in bytes too: past the bound the oldest records go,
// the newest always stays.
func TestDeliveryLogKeepsWithinItsBytes(t *testing.T) {
	t.Parallel()
	l := memory.NewDeliveryLog(0).WithMaxBytes(4096)
	for i := range 10 {
		r := ports.DeliveryRecord{EventID: fmt.Sprint(i), Response: strings.Repeat("x", 1000)}
		if err := l.Append(t.Context(), []ports.DeliveryRecord{r}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.List(t.Context(), ports.DeliveryFilter{})
	if err != nil || len(got) != 3 || got[0].EventID != "9" || got[2].EventID != "7" {
		t.Fatalf("List = %d records, %v; want the newest 3 (about 1.1 KB each within 4 KiB)", len(got), err)
	}
	huge := ports.DeliveryRecord{EventID: "huge", Response: strings.Repeat("y", 10000)}
	if err := l.Append(t.Context(), []ports.DeliveryRecord{huge}); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.List(t.Context(), ports.DeliveryFilter{}); len(got) != 1 || got[0].EventID != "huge" {
		t.Fatalf("after a record over the bound alone: %d records, want it alone", len(got))
	}
}

func TestEndpointStatesConformance(t *testing.T) {
	t.Parallel()
	porttest.RunEndpointStates(t, func(*testing.T) ports.EndpointStates { return memory.NewEndpointStates() })
}

// A settle that dead-letters actions moves them from the retry store to
// the dead-letter queue whatever the queue's bounds (the item held them
// already; a refusal would re-run the item's actions once its claim
// expired), all of them together.
func TestRetriesSettleDeadLettersPastTheQueueBounds(t *testing.T) {
	t.Parallel()
	clock := newClock()
	dl := memory.NewDeadLetters(clock.Now).WithBounds(1, 0)
	if _, err := dl.Add(t.Context(), ports.DeadLetter{Observer: "o", Action: "x", Error: "earlier"}); err != nil {
		t.Fatal(err)
	}
	r := memory.NewRetries(dl, clock.Now)
	acts := []ports.RetryAction{{Action: "a", Endpoint: "e", Due: clock.Now()}, {Action: "b", Endpoint: "e", Due: clock.Now()}}
	if _, _, err := r.Park(t.Context(), ports.RetryItem{Event: domain.Event{ID: "e1"}, Observer: "o", EntityKey: "k", Actions: acts}); err != nil {
		t.Fatal(err)
	}
	got, err := r.ClaimDue(t.Context(), ports.RetryClaim{Holder: "h", Now: clock.Now(), TTL: time.Minute}, 1, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("ClaimDue = %v, %v", got, err)
	}
	dead := []ports.DeadLetter{{Event: got[0].Event, Observer: "o", Action: "a", Error: "gone"}, {Event: got[0].Event, Observer: "o", Action: "b", Error: "gone"}}
	left := []ports.RetryAction{{Action: "c", Endpoint: "e", Due: clock.Now().Add(time.Hour)}}
	if err := r.Reschedule(t.Context(), got[0].ID, "h", left, dead); err != nil {
		t.Fatalf("Reschedule with two dead letters into a full queue: %v", err)
	}
	if n, err := dl.Count(t.Context()); err != nil || n != 3 {
		t.Errorf("dead letters = %d, %v; want 3 (the earlier one and both moved)", n, err)
	}
}

// The store is bounded in items and bytes: a Park past either is refused
// with ports.ErrUnavailable (the processor keeps the actions in memory and
// the event in flight), an item parked again is still found, and a
// completed item frees its room.
func TestRetriesAreBounded(t *testing.T) {
	t.Parallel()
	clock := newClock()
	item := func(id string, payload int) ports.RetryItem {
		return ports.RetryItem{Event: domain.Event{ID: id, Data: map[string]any{"blob": strings.Repeat("x", payload)}},
			Observer: "o", EntityKey: id, Actions: []ports.RetryAction{{Action: "a", Endpoint: "e", Due: clock.Now()}}}
	}
	r := memory.NewRetries(memory.NewDeadLetters(clock.Now), clock.Now).WithBounds(2, 0)
	for _, id := range []string{"e1", "e2"} {
		if _, _, err := r.Park(t.Context(), item(id, 10)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.Park(t.Context(), item("e3", 10)); !errors.Is(err, ports.ErrUnavailable) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("third Park into a store of 2 items = %v, want ErrUnavailable saying it is full", err)
	}
	if _, created, err := r.Park(t.Context(), item("e1", 10)); err != nil || created {
		t.Fatalf("Park of an item already there = created %v, %v; want it found", created, err)
	}
	claim := ports.RetryClaim{Holder: "h", Now: clock.Now(), TTL: time.Minute}
	got, err := r.ClaimDue(t.Context(), claim, 1, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("ClaimDue = %v, %v", got, err)
	}
	if _, _, err := r.Complete(t.Context(), got[0], claim, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Park(t.Context(), item("e3", 10)); err != nil {
		t.Fatalf("Park after an item completed: %v", err)
	}

	byBytes := memory.NewRetries(memory.NewDeadLetters(clock.Now), clock.Now).WithBounds(0, 4096)
	if _, _, err := byBytes.Park(t.Context(), item("big1", 2000)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := byBytes.Park(t.Context(), item("big2", 3000)); !errors.Is(err, ports.ErrUnavailable) {
		t.Fatalf("Park past the byte bound = %v, want ErrUnavailable", err)
	}
	// A rescheduled item weighs its new actions (a long error here); a
	// completed one gives its bytes back.
	got, err = byBytes.ClaimDue(t.Context(), claim, 1, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("ClaimDue = %v, %v", got, err)
	}
	long := []ports.RetryAction{{Action: "a", Endpoint: "e", Due: clock.Now(), LastError: strings.Repeat("e", 1500)}}
	if err := byBytes.Reschedule(t.Context(), got[0].ID, "h", long, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := byBytes.Park(t.Context(), item("small", 10)); !errors.Is(err, ports.ErrUnavailable) {
		t.Fatalf("Park after the item grew past the bound = %v, want ErrUnavailable", err)
	}
	if got, err = byBytes.ClaimDue(t.Context(), claim, 1, nil); err != nil || len(got) != 1 {
		t.Fatalf("ClaimDue = %v, %v", got, err)
	}
	if _, _, err := byBytes.Complete(t.Context(), got[0], claim, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := byBytes.Park(t.Context(), item("big2", 3000)); err != nil {
		t.Fatalf("Park after the big item completed: %v", err)
	}
}
