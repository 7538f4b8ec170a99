package bootstrap_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
)

// TestDryRunShowsTheBatchShape: the dry run of a batched webhook action
// shows its batching and the batch document its event would go in.
func TestDryRunShowsTheBatchShape(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte(`
[[observers]]
name = "created"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
name = "hook"
type = "webhook"
url = "https://hooks.example.com/orders"
signing_secret_env = "HOOK_SECRET"
[observers.actions.batch]
max_events = 250
max_wait = "15ms"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := actions.DebugEvent(cfg, secretEnv, []byte(`{"id": "ev-1", "event_type": "INSERT", "entity_type": "Order", "entity_id": "o-1", "data": {"total": 5}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Matched) != 1 || len(rep.Matched[0].Actions) != 1 {
		t.Fatalf("report = %+v", rep)
	}
	raw, err := json.Marshal(rep.Matched[0].Actions[0])
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Webhook struct {
			Headers map[string]string `json:"headers"`
			Body    string            `json:"body"`
			Batch   map[string]any    `json:"batch"`
		} `json:"webhook"`
		Lines []string `json:"lines"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	wh := out.Webhook
	id := domain.BatchID("created", "hook", []string{"ev-1"})
	if wh.Batch["max_events"] != 250.0 || wh.Batch["max_bytes"] != float64(config.DefaultBatchBytes) || wh.Batch["max_wait"] != "15ms" {
		t.Errorf("batch = %v", wh.Batch)
	}
	var doc struct {
		Type    string            `json:"type"`
		BatchID string            `json:"batch_id"`
		Events  []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal([]byte(wh.Body), &doc); err != nil || doc.Type != "batch" || doc.BatchID != id || len(doc.Events) != 1 ||
		!strings.Contains(string(doc.Events[0]), `"id":"ev-1"`) || wh.Headers["webhook-id"] != id {
		t.Errorf("body %s (%v), webhook-id %q: want the batch document of this event", wh.Body, err, wh.Headers["webhook-id"])
	}
}
