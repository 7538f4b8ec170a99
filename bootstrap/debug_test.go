package bootstrap_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

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

[[observers]]
name = "users"
entity = "User"
events = ["UPDATE"]
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

func debugConfig(t *testing.T) config.Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte("topology = \"postgres-redis\"\n"+debugObservers), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// hookSecret is a valid Standard Webhooks secret (32 bytes).
const hookSecret = "whsec_YS1icmFuZC1uZXctMzItYnl0ZS1zaWduaW5nLWtleSE="

func secretEnv(k string) (string, bool) {
	if k == "HOOK_SECRET" {
		return hookSecret, true
	}
	return "", false
}

func TestDebugEvent(t *testing.T) {
	t.Parallel()
	cfg := debugConfig(t)
	rep, err := actions.DebugEvent(cfg, secretEnv, []byte(debugInput))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.ChangesComputed || len(rep.Event.Changes) != 1 {
		t.Errorf("changes = %v (computed %v), want only status (250.00 == 250)", rep.Event.Changes, rep.ChangesComputed)
	}
	if len(rep.Matched) != 2 || rep.Matched[0].Name != "shipped" || rep.Matched[1].Name != "big-orders" {
		t.Fatalf("matched = %+v, want shipped and big-orders", rep.Matched)
	}
	shipped, big := rep.Matched[0], rep.Matched[1]
	if !shipped.Result || big.Result {
		t.Errorf("condition results: shipped %v, big-orders %v; want true, false", shipped.Result, big.Result)
	}
	wantTrace := map[string]any{"status == 'shipped'": true, "field_changed('status')": true, "status": "shipped"}
	for _, tr := range shipped.Trace {
		if w, ok := wantTrace[tr.Expr]; ok && w != tr.Value {
			t.Errorf("trace %s = %v, want %v", tr.Expr, tr.Value, w)
		}
		delete(wantTrace, tr.Expr)
	}
	if len(wantTrace) > 0 {
		t.Errorf("trace lacks %v: %+v", wantTrace, shipped.Trace)
	}
	skipped := map[string]string{}
	for _, s := range rep.NotMatched {
		skipped[s.Name] = s.Reason
	}
	if !strings.Contains(skipped["created"], "INSERT") || !strings.Contains(skipped["users"], "entity User") || len(skipped) != 2 {
		t.Errorf("not matched = %v", skipped)
	}

	if len(shipped.Actions) != 3 {
		t.Fatalf("actions = %+v", shipped.Actions)
	}
	// The details as the dry run's JSON shows them, keyed by action type.
	details := func(i int) map[string]any {
		t.Helper()
		raw, err := json.Marshal(shipped.Actions[i])
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		d, _ := m[shipped.Actions[i].Type].(map[string]any)
		return d
	}
	wh := details(0)
	if wh == nil || wh["method"] != "POST" || wh["signing"] != "signed with 1 secret" || wh["headers"].(map[string]any)["X-Team"] != "logistics" {
		t.Fatalf("webhook = %+v", wh)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(wh["body"].(string)), &body); err != nil {
		t.Fatalf("rendered body is not JSON: %v\n%s", err, wh["body"])
	}
	if body["order"] != "o-42" || body["note"] != `fragile "glass"` || body["gift"] != "" {
		t.Errorf("rendered body = %v", body)
	}
	if m := shipped.Actions[0].Missing; len(m) != 1 || m[0] != "gift_wrap" {
		t.Errorf("missing placeholders = %v, want [gift_wrap]", m)
	}
	if lg := details(1); lg == nil || lg["level"] != "warn" || lg["message"] != "order o-42 went from paid to shipped" {
		t.Errorf("log = %+v", lg)
	}
	if c := details(2); c == nil || c["pattern"] != `app:order:A\*1:*` || c["mode"] != "SCAN MATCH + UNLINK" {
		t.Errorf("cache = %+v, want the sku glob-escaped after the key prefix", c)
	}
}

func TestDebugEventInputs(t *testing.T) {
	t.Parallel()
	cfg := debugConfig(t)
	cases := []struct {
		name  string
		input string
		ok    bool
	}{
		{"not JSON", "{", false},
		{"no entity type", `{"id": "1", "event_type": "INSERT"}`, false},
		{"unknown kind", `{"id": "1", "event_type": "MERGE", "entity_type": "Order"}`, false},
		{"insert without before", `{"id": "1", "event_type": "INSERT", "entity_type": "Order", "data": {}}`, true},
	}
	for _, c := range cases {
		rep, err := actions.DebugEvent(cfg, secretEnv, []byte(c.input))
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok %v", c.name, err, c.ok)
		}
		if c.ok && (rep.ChangesComputed || len(rep.Matched) != 1 || rep.Matched[0].Name != "created") {
			t.Errorf("%s: report = %+v", c.name, rep)
		}
	}
}
