package porttest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// RunDeadLetterStore checks the ports.DeadLetterStore contract. newStore
// must return an empty, isolated store on every call.
func RunDeadLetterStore(t *testing.T, newStore func(t *testing.T) ports.DeadLetterStore) {
	t.Helper()

	t.Run("AddAssignsIncreasingIDsAndCreatedAt", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		start := time.Now()
		var last int64
		for i := range 3 {
			d := sampleDeadLetter(i, "obs")
			d.ID = -5                                                 // assigned by the store, not taken from the input
			d.CreatedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) // likewise
			id := mustAdd(t, s, d)
			if id <= last {
				t.Fatalf("Add #%d returned ID %d, want > %d", i, id, last)
			}
			last = id
			got := mustGet(t, s, id)
			if got.ID != id {
				t.Fatalf("Get(%d).ID = %d", id, got.ID)
			}
			// A generous sanity window: the store's clock is this machine's.
			if got.CreatedAt.Before(start.Add(-time.Hour)) || got.CreatedAt.After(time.Now().Add(time.Hour)) {
				t.Fatalf("CreatedAt = %v, want about %v", got.CreatedAt, start)
			}
		}
	})

	t.Run("GetRoundTripsEveryField", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		retried := time.Now().UTC().Truncate(time.Microsecond).Add(-time.Minute)
		cases := []struct {
			name string
			give ports.DeadLetter
		}{
			{"ActionFailure", sampleDeadLetter(1, "order-shipped")},
			{"UpdateWithChanges", func() ports.DeadLetter {
				d := sampleDeadLetter(2, "order-updated")
				d.Event = sampleEvent(2, domain.EventUpdate)
				d.LastRetryAt = retried
				return d
			}()},
			{"InvalidInput", ports.DeadLetter{
				Event:    domain.Event{ID: "7f0c1d7e-5c1a-4e0e-9d55-0d3f3b8d2a10", EntityType: "Order"},
				Error:    "unknown modification type \"BOGUS\": invalid event",
				Attempts: 1,
				Raw:      []byte("{\"modification_type\":\"BOGUS\",\"bin\":\"\x00\xff\xfe\"}\n\x00\x01\x02"),
			}},
			// The form that can always be stored (see ports.DeadLetterSink):
			// the event without data, the original in Raw.
			{"FallbackForm", ports.DeadLetter{
				Event:      domain.Event{ID: "e-\uFFFD", EventType: domain.EventInsert, EntityType: "Order", EntityID: "o-1"},
				Observer:   "order-shipped",
				Action:     "hook",
				ActionType: domain.ActionWebhook,
				Error:      "400 [stored in fallback form, the original is in raw: \uFFFD]",
				Attempts:   3,
				Raw:        []byte(`{"id":"e-\u0000","data":{"note":"a\u0000b"}}` + "\x00\xff"),
			}},
		}
		for _, tc := range cases {
			id := mustAdd(t, s, tc.give)
			got := mustGet(t, s, id)
			if d := diffDeadLetter(tc.give, got); d != "" {
				t.Errorf("%s: Get(%d): %s", tc.name, id, d)
			}
		}
	})

	t.Run("UnknownIDIsNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		id := mustAdd(t, s, sampleDeadLetter(1, "obs"))
		if _, err := s.Get(ctx, id+1000); !errors.Is(err, ports.ErrNotFound) {
			t.Fatalf("Get(unknown) error = %v, want ports.ErrNotFound", err)
		}
		if err := s.Remove(ctx, id+1000); !errors.Is(err, ports.ErrNotFound) {
			t.Fatalf("Remove(unknown) error = %v, want ports.ErrNotFound", err)
		}
		if err := s.Remove(ctx, id); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, ports.ErrNotFound) {
			t.Fatalf("Get(removed) error = %v, want ports.ErrNotFound", err)
		}
		if err := s.Remove(ctx, id); !errors.Is(err, ports.ErrNotFound) {
			t.Fatalf("Remove(removed) error = %v, want ports.ErrNotFound", err)
		}
		if items := mustList(t, s, ports.DeadLetterFilter{}); len(items) != 0 {
			t.Fatalf("List after Remove = %d items, want 0", len(items))
		}
	})

	t.Run("ListBrief", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		full := sampleDeadLetter(1, "a")
		full.Raw = []byte("the input as it came")
		input := sampleDeadLetter(2, "") // an input that was not an event
		input.Event = domain.Event{ID: input.Event.ID}
		input.Raw = []byte{0xff, 0x00, 'x'}
		for _, d := range []ports.DeadLetter{full, input} {
			mustAdd(t, s, d)
		}
		got := mustList(t, s, ports.DeadLetterFilter{Brief: true})
		if len(got) != 2 {
			t.Fatalf("List(Brief) = %d items, want 2", len(got))
		}
		for i, want := range []ports.DeadLetter{full, input} {
			if got[i].Raw != nil || !reflect.DeepEqual(got[i].Event, domain.Event{ID: want.Event.ID}) {
				t.Errorf("item %d listed briefly: Event %+v, Raw %q; want the event's id alone and no raw", i, got[i].Event, got[i].Raw)
			}
			want.Event, want.Raw = domain.Event{ID: want.Event.ID}, nil
			if d := diffDeadLetter(want, got[i]); d != "" {
				t.Errorf("item %d listed briefly: %s", i, d)
			}
			whole, err := s.Get(t.Context(), got[i].ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(whole.Raw) == 0 {
				t.Errorf("item %d: Get after a brief List has no raw input", i)
			}
		}
	})

	t.Run("ListOrderFilterLimitAndPaging", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var all, ofA []int64
		for i, obs := range []string{"a", "b", "a", "", "b", "a", "a"} {
			id := mustAdd(t, s, sampleDeadLetter(i, obs))
			all = append(all, id)
			if obs == "a" {
				ofA = append(ofA, id)
			}
		}
		cases := []struct {
			name   string
			filter ports.DeadLetterFilter
			want   []int64
		}{
			{"All", ports.DeadLetterFilter{}, all},
			{"Observer", ports.DeadLetterFilter{Observer: "a"}, ofA},
			{"UnknownObserver", ports.DeadLetterFilter{Observer: "zzz"}, nil},
			{"Limit", ports.DeadLetterFilter{Limit: 3}, all[:3]},
			{"AfterID", ports.DeadLetterFilter{AfterID: all[2]}, all[3:]},
			{"AfterIDAndLimit", ports.DeadLetterFilter{AfterID: all[1], Limit: 2}, all[2:4]},
			{"ObserverAfterIDLimit", ports.DeadLetterFilter{Observer: "a", AfterID: ofA[0], Limit: 2}, ofA[1:3]},
			{"AfterLast", ports.DeadLetterFilter{AfterID: all[len(all)-1]}, nil},
		}
		for _, tc := range cases {
			got := ids(mustList(t, s, tc.filter))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) && (len(got) != 0 || len(tc.want) != 0) {
				t.Errorf("%s: List(%+v) = %v, want %v", tc.name, tc.filter, got, tc.want)
			}
		}
		// Paging with AfterID visits every item exactly once, in order.
		var paged []int64
		for after := int64(0); ; {
			page := mustList(t, s, ports.DeadLetterFilter{AfterID: after, Limit: 2})
			if len(page) == 0 {
				break
			}
			if len(page) > 2 {
				t.Fatalf("page of %d items, want at most 2", len(page))
			}
			paged = append(paged, ids(page)...)
			after = page[len(page)-1].ID
		}
		if fmt.Sprint(paged) != fmt.Sprint(all) {
			t.Fatalf("paged IDs = %v, want %v", paged, all)
		}
		// List returns full items.
		items := mustList(t, s, ports.DeadLetterFilter{Observer: "b", Limit: 1})
		if len(items) != 1 {
			t.Fatalf("List = %d items, want 1", len(items))
		}
		if d := diffDeadLetter(sampleDeadLetter(1, "b"), items[0]); d != "" {
			t.Fatalf("List item: %s", d)
		}
	})

	t.Run("ListDefaultLimitIs100", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for i := range 101 {
			mustAdd(t, s, ports.DeadLetter{Observer: "o", Action: "log-1", Error: "e", Attempts: 1,
				Event: domain.Event{ID: fmt.Sprint(i), EntityType: "Order", EventType: domain.EventInsert}})
		}
		if n := len(mustList(t, s, ports.DeadLetterFilter{})); n != 100 {
			t.Fatalf("List with Limit 0 = %d items, want 100", n)
		}
		if n := len(mustList(t, s, ports.DeadLetterFilter{Limit: 500})); n != 101 {
			t.Fatalf("List with Limit 500 = %d items, want 101", n)
		}
	})

	t.Run("MarkRetried", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		give := sampleDeadLetter(1, "obs")
		give.Attempts = 3
		id := mustAdd(t, s, give)
		other := mustAdd(t, s, sampleDeadLetter(2, "obs"))
		at := time.Now().UTC().Truncate(time.Microsecond)
		for round := 1; round <= 2; round++ {
			at = at.Add(time.Second)
			msg := fmt.Sprintf("still failing (%d)", round)
			if err := s.MarkRetried(ctx, id, msg, at); err != nil {
				t.Fatalf("MarkRetried: %v", err)
			}
			got := mustGet(t, s, id)
			want := give
			want.Attempts = 3 + round
			want.Error = msg
			want.LastRetryAt = at
			if d := diffDeadLetter(want, got); d != "" {
				t.Fatalf("after MarkRetried #%d: %s", round, d)
			}
		}
		if got := mustGet(t, s, other); got.Attempts != 2 || !got.LastRetryAt.IsZero() {
			t.Fatalf("another item changed: attempts %d, last retry %v", got.Attempts, got.LastRetryAt)
		}
	})

	t.Run("Stats", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		stats, err := s.Stats(ctx)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if len(stats) != 0 {
			t.Fatalf("Stats of an empty store = %v", stats)
		}
		var removeMe int64
		for i, obs := range []string{"a", "b", "a", "", "c"} {
			id := mustAdd(t, s, sampleDeadLetter(i, obs))
			if obs == "c" {
				removeMe = id
			}
		}
		if err := s.Remove(ctx, removeMe); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		stats, err = s.Stats(ctx)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		want := map[string]int{"a": 2, "b": 1, "": 1}
		if !maps.Equal(stats, want) {
			t.Fatalf("Stats = %v, want %v", stats, want)
		}
	})

	t.Run("ConcurrentAdds", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		const writers, each = 8, 6
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			seen = map[int64]bool{}
			errs = make(chan error, writers*each)
		)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					id, err := s.Add(ctx, sampleDeadLetter(i, fmt.Sprintf("obs-%d", w)))
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					if seen[id] {
						errs <- fmt.Errorf("ID %d assigned twice", id)
					}
					seen[id] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		items := mustList(t, s, ports.DeadLetterFilter{Limit: writers * each * 2})
		if len(items) != writers*each {
			t.Fatalf("List = %d items, want %d", len(items), writers*each)
		}
		for i, d := range items {
			if !seen[d.ID] {
				t.Fatalf("listed ID %d was never returned by Add", d.ID)
			}
			if i > 0 && d.ID <= items[i-1].ID {
				t.Fatalf("List not in ascending ID order at %d: %d after %d", i, d.ID, items[i-1].ID)
			}
		}
		stats, err := s.Stats(ctx)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		for w := range writers {
			if n := stats[fmt.Sprintf("obs-%d", w)]; n != each {
				t.Fatalf("Stats[obs-%d] = %d, want %d", w, n, each)
			}
		}
	})
}

func sampleDeadLetter(i int, observer string) ports.DeadLetter {
	ev := sampleEvent(i, domain.EventInsert)
	ev.Source = "db-main"
	ev.ID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i) // stable, so List items can be compared
	ev.EntityID = "order-" + fmt.Sprint(i)
	ev.TenantID, ev.UserID = "tenant-1", "user-1"
	ev.Timestamp = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	return ports.DeadLetter{
		Event:      ev,
		Observer:   observer,
		Action:     "webhook-1",
		ActionType: domain.ActionWebhook,
		Error:      fmt.Sprintf("transient: POST https://example.com/hooks: 503 Service Unavailable (%d)", i),
		Attempts:   2,
	}
}

// diffDeadLetter compares every stored field except ID and CreatedAt, which
// the store assigns.
func diffDeadLetter(want, got ports.DeadLetter) string {
	switch {
	case want.Observer != got.Observer:
		return fmt.Sprintf("Observer = %q, want %q", got.Observer, want.Observer)
	case want.Action != got.Action:
		return fmt.Sprintf("Action = %q, want %q", got.Action, want.Action)
	case want.ActionType != got.ActionType:
		return fmt.Sprintf("ActionType = %q, want %q", got.ActionType, want.ActionType)
	case want.Error != got.Error:
		return fmt.Sprintf("Error = %q, want %q", got.Error, want.Error)
	case want.Attempts != got.Attempts:
		return fmt.Sprintf("Attempts = %d, want %d", got.Attempts, want.Attempts)
	case !bytes.Equal(want.Raw, got.Raw):
		return fmt.Sprintf("Raw = %q, want %q", got.Raw, want.Raw)
	case !want.LastRetryAt.Equal(got.LastRetryAt):
		return fmt.Sprintf("LastRetryAt = %v, want %v", got.LastRetryAt, want.LastRetryAt)
	case got.CreatedAt.IsZero():
		return "CreatedAt is zero"
	}
	if d := diffEvent(want.Event, got.Event); d != "" {
		return "Event: " + d
	}
	return ""
}

func mustAdd(t *testing.T, s ports.DeadLetterStore, d ports.DeadLetter) int64 {
	t.Helper()
	id, err := s.Add(t.Context(), d)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	return id
}

func mustGet(t *testing.T, s ports.DeadLetterStore, id int64) ports.DeadLetter {
	t.Helper()
	d, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return d
}

func mustList(t *testing.T, s ports.DeadLetterStore, f ports.DeadLetterFilter) []ports.DeadLetter {
	t.Helper()
	items, err := s.List(t.Context(), f)
	if err != nil {
		t.Fatalf("List(%+v): %v", f, err)
	}
	return items
}

func ids(items []ports.DeadLetter) []int64 {
	out := make([]int64, 0, len(items))
	for _, d := range items {
		out = append(out, d.ID)
	}
	return out
}
