package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestDurableCommandUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"deliveries", "extra"}, "takes no arguments"},
		{[]string{"deliveries", "--since", "yesterday"}, "--since"},
		{[]string{"deliveries", "--until", "-5m"}, "--until"},
		{[]string{"deliveries", "--limit", "-1"}, "must not be negative"},
		// Checked before connecting (no configuration is needed to say so):
		{[]string{"deliveries", "--status", "weird"}, "--status: \"weird\""},
		{[]string{"deliveries", "--since", "1h", "--until", "2h"}, "--until: must be after since"},
		{[]string{"deliveries", "--limit", "5000"}, "--limit: 5000"},
		{[]string{"deliveries", "--action", "x"}, "flag provided but not defined"},
		{[]string{"resend"}, "one event id"},
		{[]string{"resend", "a", "b"}, "one event id"},
		{[]string{"resend", "a", "--status", "ok"}, "flag provided but not defined"},
	}
	for _, c := range cases {
		_, stderr, code := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want 2 mentioning %q", c.args, code, stderr, c.stderr)
		}
	}
}

func TestWriteDeliveriesAndResend(t *testing.T) {
	t.Parallel()
	page := admin.DeliveryPage{NextBefore: 7, Deliveries: []ports.DeliveryRecord{{
		ID: 8, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), EventID: "e1", Observer: "orders", Action: "webhook-1a2b3c4d",
		Endpoint: "https://hooks.example.com:443", Attempt: 2, Trigger: "retry", Outcome: ports.DeliveryTransient,
		StatusCode: 503, Latency: 1500 * time.Microsecond, Error: "transient:\nstatus 503",
	}}}
	var out bytes.Buffer
	if err := writeDeliveries(&out, page, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"e1", "orders/webhook-1a2b3c4d", "https://hooks.example.com:443", "retry", "transient", "503", "1.5ms", "transient: status 503", "--before 7"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := writeDeliveries(&out, admin.DeliveryPage{}, false); err != nil || !strings.Contains(out.String(), "no attempt recorded matches") {
		t.Errorf("empty page: %q %v", out.String(), err)
	}
	out.Reset()
	rep := admin.ResendReport{EventID: "e1", Store: "database", Succeeded: 1, Failed: 1, Skipped: 1, Results: []admin.ResendResult{
		{Observer: "o", Action: "a", Succeeded: true}, {Observer: "o", Action: "b", Error: "status 500"}, {Observer: "p", Action: "c", Skipped: "condition is false"}}}
	if err := writeResend(&out, rep, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"event e1 (from database)", "o/a: succeeded", "o/b: failed: status 500", "p/c: skipped (condition is false)", "1 succeeded, 1 failed, 1 skipped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("resend output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestWriteDurableStatus(t *testing.T) {
	t.Parallel()
	probe := time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC)
	d := admin.DatabaseStatus{
		ParkedRetries: &ports.RetryCounts{Due: 2, Waiting: 5, ByObserver: map[string]int64{"orders": 7}, ByEndpoint: map[string]int64{"https://x:443": 7},
			OldestFailure: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		Endpoints: []ports.EndpointState{{Endpoint: "https://x:443", Holder: "proc-1", State: "open", ConsecutiveFailures: 5,
			Since: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), NextProbe: &probe, LastError: "transient: status 503", ReportedAt: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}},
	}
	var out bytes.Buffer
	writeDurable(&out, d)
	for _, want := range []string{"parked retries: 2 due, 5 waiting", "oldest first failure 2026-01-01T00:00:00Z", "by observer: orders: 7",
		"by endpoint: https://x:443: 7", "endpoint https://x:443: open since 2026-01-02T03:04:00Z, 5 consecutive failures, next probe 2026-01-02T03:05:00Z",
		"last error: transient: status 503", "reported by proc-1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
}
