package adminhttp_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// durableSetup serves the API over memory stores with token "tok" and
// the durable-delivery routes set by configure, through conform.
func durableSetup(t *testing.T, configure func(cfg *adminhttp.Config)) *bundle {
	t.Helper()
	b := newBundle(t)
	cfg := b.config("tok")
	configure(&cfg)
	b.serve(t, cfg)
	return b
}

func TestEndpointsRoute(t *testing.T) {
	t.Parallel()
	retries := memory.NewRetries(memory.NewDeadLetters(nil), nil)
	for i, ep := range []string{"https://down:443", "https://down:443", "https://idle:443"} {
		ev := domain.Event{ID: string(rune('a' + i)), EntityType: "Order", EntityID: "1"}
		if _, _, err := retries.Park(t.Context(), ports.RetryItem{Event: ev, Observer: "hooks", EntityKey: ev.EntityKey(),
			Actions: []ports.RetryAction{{Action: "w", Endpoint: ep, Due: time.Now()}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Every field set somewhere, so that conform checks each against the
	// schema.
	probe := time.Now().Add(time.Minute)
	live := []application.EndpointStatus{{Endpoint: "https://down:443", State: application.CircuitOpen, ConsecutiveFailures: 5,
		Since: time.Now(), NextProbe: &probe, LastError: "status 503", Failed: 5, Deferred: 2, BreakerFailures: 5},
		{Endpoint: "https://up:443", State: application.CircuitClosed, InFlight: 1, Succeeded: 7, BreakerFailures: 5,
			RateLimit: 2.5, RateBurst: 5, MaxConcurrent: 4}}
	b := durableSetup(t, func(cfg *adminhttp.Config) {
		cfg.Endpoints = &admin.Endpoints{Live: func() []application.EndpointStatus { return live }, Retries: retries}
	})
	code, body := b.call(t, "GET", "/api/observers/endpoints", "tok", "")
	if code != 200 {
		t.Fatalf("GET /endpoints = %d %v", code, body)
	}
	eps := body["endpoints"].([]any)
	want := []struct {
		name   string
		parked float64
		state  string
	}{{"https://down:443", 2, "open"}, {"https://idle:443", 1, ""}, {"https://up:443", 0, "closed"}}
	if len(eps) != len(want) {
		t.Fatalf("endpoints = %v, want %d", eps, len(want))
	}
	for i, w := range want {
		e := eps[i].(map[string]any)
		state := ""
		if l, ok := e["live"].(map[string]any); ok {
			state, _ = l["state"].(string)
		}
		if e["endpoint"] != w.name || e["parked"] != w.parked || state != w.state {
			t.Errorf("endpoints[%d] = %v, want %s with %v parked, state %q", i, e, w.name, w.parked, w.state)
		}
	}
	if code, _ := b.call(t, "GET", "/api/observers/endpoints", "", ""); code != 401 {
		t.Errorf("without the token = %d, want 401", code)
	}
	none := durableSetup(t, func(*adminhttp.Config) {})
	if code, _ := none.call(t, "GET", "/api/observers/endpoints", "tok", ""); code != 404 {
		t.Errorf("in a process without actions = %d, want 404", code)
	}
}

func TestDeliveriesRoute(t *testing.T) {
	t.Parallel()
	log := memory.NewDeliveryLog(0)
	now := time.Now()
	// Every field set somewhere, so that conform checks each against the
	// schema.
	for i, r := range []ports.DeliveryRecord{
		{EventID: "e1", Observer: "o", Endpoint: "https://x:443", Outcome: ports.DeliveryTransient, StatusCode: 503, At: now.Add(-3 * time.Hour),
			Trigger: application.TriggerLive, Error: "status 503", Response: "busy"},
		{EventID: "e1", Observer: "o", Endpoint: "https://x:443", Outcome: ports.DeliverySucceeded, StatusCode: 200, At: now.Add(-time.Hour),
			Trigger: application.TriggerRetry, Response: `{"ok": true}`},
		{EventID: "e2", Observer: "p", Endpoint: "https://y:443", Outcome: ports.DeliveryPermanent, StatusCode: 400, At: now,
			Trigger: application.TriggerResend, Error: "status 400"},
	} {
		r.Attempt, r.Action, r.ActionType, r.Latency = i+1, "hook", domain.ActionWebhook, time.Duration(i+1)*time.Millisecond
		if err := log.Append(t.Context(), []ports.DeliveryRecord{r}); err != nil {
			t.Fatal(err)
		}
	}
	b := durableSetup(t, func(cfg *adminhttp.Config) { cfg.Deliveries = &admin.Deliveries{Log: log} })
	cases := []struct {
		query string
		code  int
		n     int
	}{
		{"", 200, 3},
		{"?event=e1", 200, 2},
		{"?observer=p", 200, 1},
		{"?endpoint=https://x:443&status=failed", 200, 1},
		{"?status=200", 200, 1},
		{"?since=2h", 200, 2},
		{"?until=2h", 200, 1},
		{"?limit=1", 200, 1},
		{"?status=nope", 400, 0},
		{"?since=yesterday", 400, 0},
		{"?limit=x", 400, 0},
		{"?limit=5000", 400, 0},
		{"?limit=5000000", 400, 0}, // named as sent (it was clamped to 1048576 first)
		{"?evnet=e1", 400, 0},      // a typo is refused, not ignored (it would list everything)
	}
	for _, c := range cases {
		code, body := b.call(t, "GET", "/api/observers/deliveries"+c.query, "tok", "")
		if code != c.code {
			t.Errorf("GET /deliveries%s = %d %v, want %d", c.query, code, body, c.code)
			continue
		}
		if code == 200 {
			if got := len(body["deliveries"].([]any)); got != c.n {
				t.Errorf("GET /deliveries%s: %d records, want %d", c.query, got, c.n)
			}
		}
	}
	if _, body := b.call(t, "GET", "/api/observers/deliveries?limit=5000000", "tok", ""); !strings.Contains(fmt.Sprint(body["error"]), `"5000000"`) {
		t.Errorf("a limit over the bound: error %v, want it to name the value sent", body["error"])
	}
	none := durableSetup(t, func(cfg *adminhttp.Config) { cfg.Deliveries = &admin.Deliveries{} })
	if code, _ := none.call(t, "GET", "/api/observers/deliveries", "tok", ""); code != 503 {
		t.Errorf("without a delivery log = %d, want 503", code)
	}
	// The client speaks the same API.
	c := adminhttp.NewClient(b.srv.URL, "tok", time.Second)
	page, err := c.Deliveries(t.Context(), admin.DeliveryQuery{EventID: "e1", Status: "ok", Since: now.Add(-2 * time.Hour)})
	if err != nil || len(page.Deliveries) != 1 || page.Deliveries[0].StatusCode != 200 {
		t.Fatalf("Client.Deliveries = %+v, %v", page, err)
	}
}

func TestResendRoute(t *testing.T) {
	t.Parallel()
	var b *bundle
	var ran []string
	exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
		ran = append(ran, ev.ID+":"+obs.Name+"/"+act.Name)
		if act.Name == "bad" {
			return errors.New("status 500")
		}
		return nil
	})
	quiet, err := domain.CompileCondition("total > 100")
	if err != nil {
		t.Fatal(err)
	}
	obs := []domain.Observer{{Name: "hooks", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, OnFailure: domain.FailureDLQ,
		Retry: domain.DefaultRetryPolicy, Actions: []domain.Action{{Name: "good", Type: domain.ActionLog}, {Name: "bad", Type: domain.ActionLog}}},
		// Its condition is false for ev-1: its action is reported skipped.
		{Name: "big-orders", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, Condition: quiet, OnFailure: domain.FailureDLQ,
			Retry: domain.DefaultRetryPolicy, Actions: []domain.Action{{Name: "notify", Type: domain.ActionLog}}}}
	m := domain.NewMatcher(obs)
	b = durableSetup(t, func(cfg *adminhttp.Config) {
		cfg.Resend = &admin.Resend{Stores: cfg.State.Stores, Resender: func(context.Context) (*application.Resender, error) {
			return &application.Resender{Executor: exec, Matcher: func() *domain.Matcher { return m }}, nil
		}}
	})
	if _, err := b.src.Append(t.Context(), domain.Event{ID: "ev-1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "1"}); err != nil {
		t.Fatal(err)
	}
	code, body := b.call(t, "POST", "/api/observers/events/ev-1/resend", "tok", "")
	if code != 200 || body["succeeded"] != 1.0 || body["failed"] != 1.0 || body["skipped"] != 1.0 || body["store"] != "memory" {
		t.Fatalf("resend = %d %v, want both actions of hooks run, one failing, and big-orders' skipped", code, body)
	}
	code, body = b.call(t, "POST", "/api/observers/events/ev-1/resend", "tok", `{"action": "good"}`)
	if code != 200 || body["succeeded"] != 1.0 || body["failed"] != 0.0 {
		t.Fatalf("resend of one action = %d %v", code, body)
	}
	if len(ran) != 3 || ran[2] != "ev-1:hooks/good" {
		t.Errorf("ran %v", ran)
	}
	for _, c := range []struct {
		path, body string
		code       int
	}{
		{"/api/observers/events/nope/resend", "", 404},
		{"/api/observers/events/ev-1/resend", `{"observer": "nope"}`, 400},
		{"/api/observers/events/ev-1/resend?observer=hooks", "", 400}, // the observer goes in the body: not every observer's actions
		{"/api/observers/events/ev-1/resend", `{"action": "missing"}`, 400},
		{"/api/observers/events/ev-1/resend", `{"unknown": 1}`, 400},
	} {
		if code, body := b.call(t, "POST", c.path, "tok", c.body); code != c.code {
			t.Errorf("POST %s %s = %d %v, want %d", c.path, c.body, code, body, c.code)
		}
	}
	c := adminhttp.NewClient(b.srv.URL, "tok", time.Second)
	rep, err := c.Resend(t.Context(), admin.ResendRequest{EventID: "ev-1", Action: "bad"})
	if err != nil || rep.Failed != 1 || rep.OK() {
		t.Fatalf("Client.Resend = %+v, %v", rep, err)
	}
	if _, err := c.Resend(t.Context(), admin.ResendRequest{EventID: "missing"}); !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("Client.Resend(missing) = %v, want ports.ErrNotFound", err)
	}
	noActions := durableSetup(t, func(cfg *adminhttp.Config) {
		cfg.Resend = &admin.Resend{Stores: cfg.State.Stores, Resender: func(context.Context) (*application.Resender, error) { return nil, admin.ErrNoActions }}
	})
	if _, err := noActions.src.Append(t.Context(), domain.Event{ID: "ev-1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "1"}); err != nil {
		t.Fatal(err)
	}
	if code, _ := noActions.call(t, "POST", "/api/observers/events/ev-1/resend", "tok", ""); code != 503 {
		t.Errorf("resend in a process without actions = %d, want 503", code)
	}
}

// The status report (GET /state, as status --json) shows the retries
// parked in a store and the endpoint states reported to it; conform checks
// them against the schema with every field set.
func TestStateReportsParkedRetriesAndEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t, "tok")
	ctx := t.Context()
	failed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, id := range []string{"ev-1", "ev-2"} { // one key: the second waits behind the first
		ev := domain.Event{ID: id, EventType: domain.EventInsert, EntityType: "Order", EntityID: "o1"}
		if _, _, err := b.retries.Park(ctx, ports.RetryItem{Event: ev, Observer: "hooks", EntityKey: ev.EntityKey(),
			Actions: []ports.RetryAction{{Action: "ok-hook", ActionType: domain.ActionWebhook, Endpoint: "https://down:443", Attempts: 3,
				LastError: "status 503", FirstFailure: failed, Due: failed.Add(time.Hour)}}}); err != nil {
			t.Fatal(err)
		}
	}
	probe := failed.Add(time.Minute)
	if err := b.states.Report(ctx, ports.EndpointState{Endpoint: "https://down:443", Holder: "worker-1", State: application.CircuitOpen,
		ConsecutiveFailures: 5, Since: failed, NextProbe: &probe, LastError: "status 503", ReportedAt: failed}); err != nil {
		t.Fatal(err)
	}
	code, body := b.call(t, "GET", "/api/observers/state", "tok", "")
	if code != 200 {
		t.Fatalf("state = %d %v", code, body)
	}
	db := body["databases"].([]any)[0].(map[string]any)
	parked, _ := db["parked_retries"].(map[string]any)
	if parked == nil || parked["due"] != 1.0 || parked["waiting"] != 1.0 || parked["oldest_failure"] != "2026-01-02T03:04:05Z" ||
		parked["by_endpoint"].(map[string]any)["https://down:443"] != 2.0 || parked["by_observer"].(map[string]any)["hooks"] != 2.0 {
		t.Errorf("parked_retries = %v, want 1 due and 1 waiting for hooks on https://down:443", db["parked_retries"])
	}
	eps, _ := db["endpoints"].([]any)
	if len(eps) != 1 || eps[0].(map[string]any)["state"] != "open" || eps[0].(map[string]any)["holder"] != "worker-1" ||
		eps[0].(map[string]any)["next_probe"] != "2026-01-02T03:05:05Z" {
		t.Errorf("endpoints = %v, want https://down:443 open, reported by worker-1", db["endpoints"])
	}
}
