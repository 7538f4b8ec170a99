package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// TestReorderedActionsKeepTheirIdentity: actions are known by their
// content, not their position. After the actions of an observer are
// reordered in the file, `dlq retry` re-runs the action that failed (not
// the one now at its position), and a redelivered event's cached result
// still skips the action that had succeeded (not the one now at its
// position).
func TestReorderedActionsKeepTheirIdentity(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rd := newRedisEnv(t, "")
	failing := &atomic.Bool{}
	failing.Store(true)
	ledger := newReceiver(t, func(receipt) int { // fails for good until told otherwise
		if failing.Load() {
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	})
	audit := newReceiver(t, nil)
	timeout := 10 * time.Second
	ledgerAct := config.ActionConfig{Type: "webhook", URL: ledger.URL(), Timeout: &timeout}
	auditAct := config.ActionConfig{Type: "webhook", URL: audit.URL(), Timeout: &timeout}
	observer := func(actions ...config.ActionConfig) config.ObserverConfig {
		o := webhookObserver("orders", "Order", "", durablePolicy(3, time.Second))
		o.Actions = actions
		return o
	}
	v1, v2 := observer(ledgerAct, auditAct), observer(auditAct, ledgerAct)
	configure := func(o config.ObserverConfig) config.Config {
		cfg := b.config(o)
		rd.configure(&cfg)
		cfg.Performance.EnableDedup = false // the event is read again below: only the result cache may skip work
		return cfg
	}

	app := b.start(t, configure(v1))
	id := b.insert(t, orders(1)...)[0]
	audit.waitDelivered(t, []string{id})
	waitFor(t, "the ledger action dead-lettered", func() bool { return len(b.deadLetters(t)) == 1 })
	b.waitCheckpointAtEnd(t)
	app.stop(t)
	dl := b.deadLetters(t)[0]
	if want := actionIdentity(t, v1, 0); dl.Action != want {
		t.Fatalf("dead letter action %q, want the ledger action %q", dl.Action, want)
	}

	// dlq retry with the reordered file runs the ledger action.
	failing.Store(false)
	file := writeFile(t, "reordered.toml", reorderedConfig(t, b, rd, v2))
	out, errOut, code := cli(t, cliEnv(), "dlq", "retry", "1", "--config", file, "--json")
	if code != 0 || !strings.Contains(out, `"succeeded"`) {
		t.Fatalf("dlq retry exit %d: %s%s", code, out, errOut)
	}
	if n := len(ledger.delivered()); n != 1 {
		t.Errorf("ledger receiver got %d successful requests after dlq retry, want 1 (the retried action)", n)
	}
	if n := len(audit.all()); n != 1 {
		t.Errorf("audit receiver got %d requests, want 1: dlq retry ran the action now at the failed one's position", n)
	}

	// The event read again with the reordered file: the audit action's
	// cached success skips it; the ledger action, never cached, runs.
	b.setCheckpoint(t, position{})
	app = b.start(t, configure(v2))
	waitFor(t, "the ledger action run again", func() bool { return len(ledger.delivered()) == 2 })
	b.waitCheckpointAtEnd(t)
	if n := len(audit.all()); n != 1 {
		t.Errorf("audit receiver got %d requests, want 1: its cached success was not found under its identity", n)
	}
	if got := app.metric(t, "fraiseql_observer_cache_hits_total"); got != 1 {
		t.Errorf("cache_hits_total = %v, want 1 (the audit action)", got)
	}
}

// reorderedConfig writes the configuration of the CLI: the test's
// database and Redis, and observer o.
func reorderedConfig(t testing.TB, b *testBundle, rd *redisEnv, o config.ObserverConfig) string {
	t.Helper()
	var acts strings.Builder
	for _, a := range o.Actions {
		fmt.Fprintf(&acts, "[[observers.actions]]\ntype = %q\nurl = %q\ntimeout = \"10s\"\n", a.Type, a.URL)
	}
	entity, _ := json.Marshal(o.Entity)
	return fmt.Sprintf(`topology = "postgres-redis"
[database]
url = %q
[redis]
url = %q
key_prefix = %q
[http]
listen = ""
[security]
allowed_networks = ["127.0.0.1/32"]
[[observers]]
name = %q
entity = %s
events = ["INSERT", "UPDATE", "DELETE", "CUSTOM"]
%s`, b.dbURL, rd.url, rd.prefix, o.Name, entity, acts.String())
}
