package porttest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// The retry store suite's helpers: items to park, and the calls that
// fail the test on an error.

// retryItem is a parked webhook action of event i, due at at(due).
func retryItem(i int, observer, key, endpoint string, due time.Duration) ports.RetryItem {
	ev := sampleEvent(i, domain.EventInsert)
	ev.ID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	return ports.RetryItem{
		Event: ev, Observer: observer, EntityKey: key,
		Actions: []ports.RetryAction{{
			Action: "webhook-1a2b3c4d", ActionType: domain.ActionWebhook, Endpoint: endpoint,
			Attempts: 3, LastError: "transient: connection refused", FirstFailure: at(-10 * time.Second), Due: at(due),
		}},
	}
}

func mustPark(t *testing.T, s ports.RetryStore, it ports.RetryItem) ports.RetryItem {
	t.Helper()
	got, created, err := s.Park(t.Context(), it)
	if err != nil {
		t.Fatalf("Park: %v", err)
	}
	if !created {
		t.Fatalf("Park of a new item (event %s, observer %s) reported it parked before", it.Event.ID, it.Observer)
	}
	return got
}

func mustClaim(t *testing.T, s ports.RetryStore, c ports.RetryClaim, limit int, skip []string) []ports.RetryItem {
	t.Helper()
	got, err := s.ClaimDue(t.Context(), c, limit, skip)
	if err != nil {
		t.Fatalf("ClaimDue: %v", err)
	}
	return got
}

func claimOne(t *testing.T, s ports.RetryStore, holder string, now time.Time) ports.RetryItem {
	t.Helper()
	got := mustClaim(t, s, ports.RetryClaim{Holder: holder, Now: now, TTL: time.Minute}, 10, nil)
	if len(got) != 1 {
		t.Fatalf("ClaimDue at %v = %v, want one item", now, itemIDs(got))
	}
	return got[0]
}

func mustKeys(t *testing.T, s ports.RetryStore) []ports.RetryKey {
	t.Helper()
	var keys []ports.RetryKey
	err := s.Keys(t.Context(), func(k ports.RetryKey) error {
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	return keys
}

func mustCounts(t *testing.T, c ports.RetryCounter) ports.RetryCounts {
	t.Helper()
	got, err := c.Counts(t.Context())
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return got
}

func itemIDs(items []ports.RetryItem) []int64 {
	out := make([]int64, 0, len(items))
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func sameIDs(a, b []int64) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// diffActions compares actions field by field, times by instant.
func diffActions(want, got []ports.RetryAction) string {
	if len(want) != len(got) {
		return fmt.Sprintf("%d actions, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Action != g.Action || w.ActionType != g.ActionType || w.Endpoint != g.Endpoint || w.Attempts != g.Attempts ||
			w.LastError != g.LastError || !w.FirstFailure.Equal(g.FirstFailure) || !w.Due.Equal(g.Due) {
			return fmt.Sprintf("actions[%d] = %+v, want %+v", i, g, w)
		}
	}
	return ""
}
