package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// The operator commands' text output, from reports as the use cases
// build them (application/admin and bootstrap test how they are built).

func render(t *testing.T, write func(*bytes.Buffer) error) string {
	t.Helper()
	var out bytes.Buffer
	if err := write(&out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, text)
		}
	}
}

func TestWriteStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	saved, expires := now.Add(-time.Minute), now.Add(time.Minute)
	p1 := ports.Position{TxID: 812, Seq: 3}
	rep := admin.StatusReport{Topology: "postgres-only", Databases: []admin.DatabaseStatus{{
		Name: "database", URL: "postgres://postgres@127.0.0.1:5432/app", Now: now,
		Checkpoints: []admin.CheckpointStatus{
			{Name: "default", Configured: true, Stored: true, Position: p1, UpdatedAt: &saved, Backlog: 2,
				Lease: admin.LeaseStatus{Name: "reader:default", Holder: "replica-7", ExpiresAt: &expires, Active: true}},
			{Name: "old-reader", Stored: true, UpdatedAt: &saved, Backlog: 3, Lease: admin.LeaseStatus{Name: "reader:old-reader"}},
		},
		DeadLetters: map[string]int{"hooks": 2, "": 1}, DeadLetterTotal: 3,
	}}}
	text := render(t, func(w *bytes.Buffer) error { return writeStatus(w, rep, false) })
	mustContain(t, "status text", text, "default", p1.String(), "held by replica-7", "old-reader (not in this configuration)", "free",
		"dead letters: 3 (", "hooks: 2", "oldest open transaction")
	js := render(t, func(w *bytes.Buffer) error { return writeStatus(w, rep, true) })
	mustContain(t, "status JSON", js, `"dead_letters_total": 3`, `"holder": "replica-7"`)
}

func deadLetterView() admin.DeadLetterView {
	ev := domain.Event{ID: "ev-o1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "o1",
		Data: map[string]any{"status": "new"}, Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return admin.DeadLetterView{ID: 7, EventID: ev.ID, Observer: "hooks", Action: "ok-hook", ActionType: "webhook",
		Error: "webhook: status 503", Attempts: 5, CreatedAt: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC), Event: &ev}
}

func TestWriteDeadLetters(t *testing.T) {
	t.Parallel()
	items := []admin.DeadLetterView{deadLetterView()}
	text := render(t, func(w *bytes.Buffer) error { return writeDeadLetters(w, items, 1, false) })
	mustContain(t, "listing", text, "hooks", "ok-hook", "ev-o1", "webhook: status 503", "--after 7")
	js := render(t, func(w *bytes.Buffer) error { return writeDeadLetters(w, items, 1, true) })
	if strings.Contains(js, `"event"`) || !strings.Contains(js, `"items"`) {
		t.Errorf("listing JSON carries the event or lacks items:\n%s", js)
	}
	// A full page names the next one's cursor, as GET /dlq does: a script
	// paging on next_after stopped after the first page before.
	if !strings.Contains(js, `"next_after": 7`) {
		t.Errorf("full page's JSON lacks next_after 7:\n%s", js)
	}
	if js := render(t, func(w *bytes.Buffer) error { return writeDeadLetters(w, items, 2, true) }); strings.Contains(js, "next_after") {
		t.Errorf("a page short of its limit has next_after:\n%s", js)
	}
	if text := render(t, func(w *bytes.Buffer) error { return writeDeadLetters(w, nil, 0, false) }); !strings.Contains(text, "no dead letters") {
		t.Errorf("empty listing = %q", text)
	}

	show := render(t, func(w *bytes.Buffer) error { return writeDeadLetter(w, deadLetterView(), false) })
	mustContain(t, "show", show, "observer:    hooks", "attempts:    5", `"entity_id": "o1"`, "webhook: status 503")
}

func TestWriteRetries(t *testing.T) {
	t.Parallel()
	rep := admin.RetryReport{Results: []admin.RetryResult{
		{ID: 1, EventID: "e1", Observer: "hooks", Action: "ok-hook", Status: admin.RetrySucceeded},
		{ID: 2, EventID: "e2", Observer: "hooks", Action: "fail-hook", Status: admin.RetryFailed, Error: "status 500"},
		{ID: 3, Status: admin.RetryNotRetryable, Error: "input"},
		{ID: 4, Status: admin.RetryNotRetryable, Error: "gone"},
	}, Succeeded: 1, Failed: 1, NotRetryable: 2}
	text := render(t, func(w *bytes.Buffer) error { return writeRetryReport(w, rep, false) })
	mustContain(t, "retry-all", text, "1 succeeded, 1 failed, 2 not retryable", "dead letter 2 (hooks/fail-hook, event e2): failed again, kept: status 500")
	one := render(t, func(w *bytes.Buffer) error { return writeRetryResult(w, rep.Results[0], false) })
	mustContain(t, "retry", one, "dead letter 1 (hooks/ok-hook, event e1): succeeded, removed")
	rep.Omitted, rep.Succeeded = 7, 8
	text = render(t, func(w *bytes.Buffer) error { return writeRetryReport(w, rep, false) })
	mustContain(t, "retry-all with outcomes omitted", text, "(7 more outcomes not listed: the first 4 are)", "8 succeeded, 1 failed, 2 not retryable")
}

func TestWriteReplay(t *testing.T) {
	t.Parallel()
	p3 := ports.Position{TxID: 900, Seq: 12}
	res := admin.ReplayResult{Reader: "default", Database: "database", Since: time.Now(), Old: p3, OldStored: true,
		New: ports.Position{TxID: 899, Seq: 10}, Moved: true, Reread: 2, Backlog: 2, Dedup: "dedup is enabled"}
	text := render(t, func(w *bytes.Buffer) error { return writeReplay(w, res, false) })
	mustContain(t, "replay text", text, p3.String(), "2 row(s) will be read again", "note: dedup is enabled")
	res.Moved, res.Reason = false, "nothing to do"
	text = render(t, func(w *bytes.Buffer) error { return writeReplay(w, res, false) })
	mustContain(t, "unchanged replay", text, "checkpoint unchanged at "+p3.String()+": nothing to do")
}

const debugObservers = `
[redis]
url = "redis://127.0.0.1:1"
key_prefix = "observer:" # the observer's own keys, never in front of the cache action's

[[observers]]
name = "shipped"
entity = "Order"
events = ["UPDATE"]
condition = "status == 'shipped' && field_changed('status')"
[[observers.actions]]
type = "webhook"
url = "https://hooks.example.com/orders?token=abc123"
signing_secret_env = "HOOK_SECRET"
headers = { Authorization = "Bearer top-secret-token", X-Team = "logistics" }
body_template = '{"order": "{{ event.entity_id }}", "note": "{{ note }}", "gift": "{{ data.gift_wrap }}"}'
[[observers.actions]]
type = "log"
level = "warn"
message_template = "order {{ event.entity_id }} went from {{ changes.status.old }} to {{ status }}"
[[observers.actions]]
type = "cache"
key_pattern = "order:{{ sku }}:*"
key_prefix = "app:"

[[observers]]
name = "big-orders"
entity = "*"
events = ["UPDATE"]
condition = "total > 1000"
[[observers.actions]]
type = "log"

[[observers]]
name = "created"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "log"
`

const debugInput = `{
  "id": "7d1c0d5e-0b7c-4d5c-9b1e-1f7c0a3e9a01",
  "event_type": "UPDATE",
  "entity_type": "Order",
  "entity_id": "o-42",
  "data": {"status": "shipped", "note": "fragile \"glass\"", "sku": "A*1", "total": 250.00},
  "before": {"status": "paid", "note": "fragile \"glass\"", "sku": "A*1", "total": 250}
}`

// The dry run prints what each action would do, and never a secret.
func TestWriteDebugReport(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte("topology = \"postgres-redis\"\n"+debugObservers), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	secretEnv := func(k string) (string, bool) {
		return "whsec_YS1icmFuZC1uZXctMzItYnl0ZS1zaWduaW5nLWtleSE=", k == "HOOK_SECRET"
	}
	rep, err := actions.DebugEvent(cfg, secretEnv, []byte(debugInput))
	if err != nil {
		t.Fatal(err)
	}
	for _, asJSON := range []bool{false, true} {
		var out bytes.Buffer
		if err := writeDebugReport(&out, rep, asJSON); err != nil {
			t.Fatal(err)
		}
		text := out.String()
		for _, secret := range []string{"top-secret-token", "abc123", "whsec_", "YS1icmFuZC1uZXctMzItYnl0ZS1zaWduaW5nLWtleSE="} {
			if strings.Contains(text, secret) {
				t.Errorf("json=%v: output contains the secret %q:\n%s", asJSON, secret, text)
			}
		}
		if asJSON {
			var back admin.DebugReport
			if err := json.Unmarshal(out.Bytes(), &back); err != nil || len(back.Matched) != 2 {
				t.Errorf("JSON output does not decode: %v", err)
			}
			continue
		}
		for _, want := range []string{
			"observer shipped: matches",
			"condition: status == 'shipped' && field_changed('status') => true, actions would run",
			"field_changed('status')  => true",
			"condition: total > 1000 => false, actions would NOT run",
			"POST https://hooks.example.com/orders?token=redacted (signed with 1 secret)",
			"Authorization: (redacted)",
			`body: {"order": "o-42"`,
			"missing placeholders: gift_wrap",
			"log at warn: order o-42 went from paid to shipped",
			`invalidate app:order:A\*1:*`,
			"created: handles INSERT events, not UPDATE",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("text output lacks %q:\n%s", want, text)
			}
		}
	}
}
