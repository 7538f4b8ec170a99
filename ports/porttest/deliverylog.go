package porttest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// RunDeliveryLog checks the ports.DeliveryLog contract. newLog must
// return an empty, isolated log on every call.
func RunDeliveryLog(t *testing.T, newLog func(t *testing.T) ports.DeliveryLog) {
	t.Helper()

	t.Run("AppendListRoundTripsNewestFirst", func(t *testing.T) {
		t.Parallel()
		l := newLog(t)
		recs := []ports.DeliveryRecord{
			delivery(1, "orders", "https://a:443", ports.DeliverySucceeded, 204, 0),
			delivery(2, "orders", "https://a:443", ports.DeliveryTransient, 503, time.Second),
			delivery(3, "audit", "https://b:443", ports.DeliveryPermanent, 400, 2*time.Second),
		}
		recs[1].Error, recs[1].Response = "transient: status 503: Zoë \"quoted\"", strings.Repeat("r", ports.MaxResponseSnippet)
		mustAppendDeliveries(t, l, recs)
		got := mustListDeliveries(t, l, ports.DeliveryFilter{})
		if len(got) != 3 {
			t.Fatalf("List = %d records, want 3", len(got))
		}
		for i, g := range got {
			want := recs[len(recs)-1-i]
			if d := diffDelivery(want, g); d != "" {
				t.Errorf("record %d (newest first): %s", i, d)
			}
			if g.ID == 0 || (i > 0 && g.ID >= got[i-1].ID) {
				t.Errorf("IDs %d after %d: want assigned, descending", g.ID, got[max(i-1, 0)].ID)
			}
		}
	})

	t.Run("Filters", func(t *testing.T) {
		t.Parallel()
		l := newLog(t)
		recs := []ports.DeliveryRecord{
			delivery(1, "orders", "https://a:443", ports.DeliverySucceeded, 204, 0),
			delivery(2, "orders", "https://a:443", ports.DeliveryTransient, 503, time.Minute),
			delivery(3, "audit", "https://b:443", ports.DeliveryPermanent, 400, 2*time.Minute),
			delivery(4, "audit", "https://b:443", ports.DeliverySucceeded, 200, 3*time.Minute),
			delivery(5, "orders", "log:orders/log-1", ports.DeliveryTransient, 0, 4*time.Minute),
		}
		recs[4].EventID = recs[1].EventID // another attempt of event 2
		mustAppendDeliveries(t, l, recs)
		events := func(rs []ports.DeliveryRecord) []string {
			var out []string
			for _, r := range rs {
				out = append(out, fmt.Sprintf("%d", r.Attempt))
			}
			return out
		}
		cases := []struct {
			name string
			f    ports.DeliveryFilter
			want []string // Attempt of each record, newest first
		}{
			{"all", ports.DeliveryFilter{}, []string{"5", "4", "3", "2", "1"}},
			{"event", ports.DeliveryFilter{EventID: recs[1].EventID}, []string{"5", "2"}},
			{"observer", ports.DeliveryFilter{Observer: "audit"}, []string{"4", "3"}},
			{"endpoint", ports.DeliveryFilter{Endpoint: "https://a:443"}, []string{"2", "1"}},
			{"failed", ports.DeliveryFilter{Failed: true}, []string{"5", "3", "2"}},
			{"succeeded", ports.DeliveryFilter{Succeeded: true}, []string{"4", "1"}},
			{"status code", ports.DeliveryFilter{StatusCode: 503}, []string{"2"}},
			{"since", ports.DeliveryFilter{Since: at(2 * time.Minute)}, []string{"5", "4", "3"}},
			{"until", ports.DeliveryFilter{Until: at(2 * time.Minute)}, []string{"2", "1"}},
			{"since and until", ports.DeliveryFilter{Since: at(time.Minute), Until: at(3 * time.Minute)}, []string{"3", "2"}},
			{"limit", ports.DeliveryFilter{Limit: 2}, []string{"5", "4"}},
			{"combined", ports.DeliveryFilter{Observer: "orders", Failed: true, Limit: 1}, []string{"5"}},
			{"nothing", ports.DeliveryFilter{Observer: "none"}, nil},
		}
		for _, tc := range cases {
			if got := events(mustListDeliveries(t, l, tc.f)); !slices.Equal(got, tc.want) {
				t.Errorf("%s: attempts %v, want %v", tc.name, got, tc.want)
			}
		}
		page := mustListDeliveries(t, l, ports.DeliveryFilter{Limit: 2})
		next := mustListDeliveries(t, l, ports.DeliveryFilter{Limit: 2, BeforeID: page[1].ID})
		if got := events(next); !slices.Equal(got, []string{"3", "2"}) {
			t.Errorf("second page = %v, want [3 2]", got)
		}
		if _, err := l.List(t.Context(), ports.DeliveryFilter{Limit: -1}); err == nil {
			t.Error("List with a negative limit succeeded")
		}
	})

	t.Run("PruneDeletesOldRecords", func(t *testing.T) {
		t.Parallel()
		l := newLog(t)
		var recs []ports.DeliveryRecord
		for i := range 10 {
			recs = append(recs, delivery(i+1, "orders", "e", ports.DeliverySucceeded, 200, time.Duration(i)*time.Hour))
		}
		mustAppendDeliveries(t, l, recs)
		n, err := l.Prune(t.Context(), at(4*time.Hour))
		if err != nil || n != 4 {
			t.Fatalf("Prune = %d, %v; want the 4 records older than 4h", n, err)
		}
		got := mustListDeliveries(t, l, ports.DeliveryFilter{})
		if len(got) != 6 || got[len(got)-1].At.Before(at(4*time.Hour)) {
			t.Fatalf("after Prune: %d records, oldest %v", len(got), got[len(got)-1].At)
		}
		if n, err := l.Prune(t.Context(), at(4*time.Hour)); err != nil || n != 0 {
			t.Errorf("Prune again = %d, %v; want 0", n, err)
		}
	})

	t.Run("AppendStoresAwkwardText", func(t *testing.T) {
		t.Parallel()
		l := newLog(t)
		r := delivery(1, "orders", "e", ports.DeliveryTransient, 500, 0)
		r.Error, r.Response = "nul \x00 byte", "invalid \xff\xfe utf-8"
		mustAppendDeliveries(t, l, []ports.DeliveryRecord{r})
		got := mustListDeliveries(t, l, ports.DeliveryFilter{})
		if len(got) != 1 || !strings.HasPrefix(got[0].Error, "nul ") || !strings.HasPrefix(got[0].Response, "invalid ") {
			t.Fatalf("stored %+v", got)
		}
	})

	t.Run("ConcurrentAppends", func(t *testing.T) {
		t.Parallel()
		l := newLog(t)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 25 {
					if err := l.Append(t.Context(), []ports.DeliveryRecord{delivery(w*100+i, "o", "e", ports.DeliverySucceeded, 200, 0)}); err != nil {
						t.Errorf("Append: %v", err)
					}
				}
			})
		}
		wg.Wait()
		if got := mustListDeliveries(t, l, ports.DeliveryFilter{Limit: 1000}); len(got) != 100 {
			t.Fatalf("%d records after 100 concurrent appends", len(got))
		}
	})
}

// delivery is attempt i of a webhook action, at at(offset).
func delivery(i int, observer, endpoint, outcome string, status int, offset time.Duration) ports.DeliveryRecord {
	return ports.DeliveryRecord{
		At: at(offset), EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Observer: observer,
		Action: "webhook-1a2b3c4d", ActionType: domain.ActionWebhook, Endpoint: endpoint, Attempt: i,
		Trigger: "live", Outcome: outcome, StatusCode: status, Latency: time.Duration(i) * 1500 * time.Microsecond,
	}
}

func mustAppendDeliveries(t *testing.T, l ports.DeliveryLog, recs []ports.DeliveryRecord) {
	t.Helper()
	if err := l.Append(t.Context(), recs); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func mustListDeliveries(t *testing.T, l ports.DeliveryLog, f ports.DeliveryFilter) []ports.DeliveryRecord {
	t.Helper()
	got, err := l.List(t.Context(), f)
	if err != nil {
		t.Fatalf("List(%+v): %v", f, err)
	}
	return got
}

// diffDelivery compares every field but ID; times by instant, latency to
// the microsecond.
func diffDelivery(want, got ports.DeliveryRecord) string {
	g, w := got, want
	g.ID, w.ID = 0, 0
	if !g.At.Equal(w.At) {
		return fmt.Sprintf("At = %v, want %v", g.At, w.At)
	}
	g.At, w.At = time.Time{}, time.Time{}
	g.Latency, w.Latency = g.Latency.Truncate(time.Microsecond), w.Latency.Truncate(time.Microsecond)
	if g != w {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	return ""
}
