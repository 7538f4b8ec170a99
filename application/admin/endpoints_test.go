package admin_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application/admin"
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

func TestDeliveriesQuery(t *testing.T) {
	t.Parallel()
	log := memory.NewDeliveryLog(0)
	base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	for i, r := range []ports.DeliveryRecord{
		{EventID: "e1", Observer: "o", Endpoint: "x", Outcome: ports.DeliveryTransient, StatusCode: 503},
		{EventID: "e1", Observer: "o", Endpoint: "x", Outcome: ports.DeliverySucceeded, StatusCode: 200},
		{EventID: "e2", Observer: "o", Endpoint: "y", Outcome: ports.DeliveryPermanent, StatusCode: 400},
	} {
		r.At = base.Add(time.Duration(i) * time.Minute)
		if err := log.Append(t.Context(), []ports.DeliveryRecord{r}); err != nil {
			t.Fatal(err)
		}
	}
	d := &admin.Deliveries{Log: log}
	cases := []struct {
		name    string
		q       admin.DeliveryQuery
		want    int
		wantErr string
	}{
		{"all", admin.DeliveryQuery{}, 3, ""},
		{"ok", admin.DeliveryQuery{Status: "ok"}, 1, ""},
		{"failed", admin.DeliveryQuery{Status: "FAILED"}, 2, ""},
		{"code", admin.DeliveryQuery{Status: "503"}, 1, ""},
		{"event and endpoint", admin.DeliveryQuery{EventID: "e1", Endpoint: "x"}, 2, ""},
		{"window", admin.DeliveryQuery{Since: base.Add(time.Minute), Until: base.Add(2 * time.Minute)}, 1, ""},
		{"bad status", admin.DeliveryQuery{Status: "meh"}, 0, "status"},
		{"bad code", admin.DeliveryQuery{Status: "42"}, 0, "status"},
		{"limit too big", admin.DeliveryQuery{Limit: 5000}, 0, "limit"},
		{"until before since", admin.DeliveryQuery{Since: base.Add(time.Hour), Until: base}, 0, "until"},
	}
	for _, tc := range cases {
		page, err := d.List(t.Context(), tc.q)
		if tc.wantErr != "" {
			var re *admin.RequestError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want a RequestError naming %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(page.Deliveries) != tc.want {
			t.Errorf("%s: %d records, %v; want %d", tc.name, len(page.Deliveries), err, tc.want)
		}
	}
	page, err := d.List(t.Context(), admin.DeliveryQuery{Limit: 2})
	if err != nil || page.NextBefore != page.Deliveries[1].ID {
		t.Errorf("full page: next_before %d, want %d", page.NextBefore, page.Deliveries[1].ID)
	}
	if _, err := (&admin.Deliveries{}).List(t.Context(), admin.DeliveryQuery{}); !errors.Is(err, admin.ErrNoDeliveryLog) {
		t.Errorf("without a log: %v, want ErrNoDeliveryLog", err)
	}
}
