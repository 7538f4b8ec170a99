package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
)

const batchedHook = `
[[observers]]
name = "orders"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
url = "https://example.com/orders"
`

func loadBatched(t *testing.T, extra string) ([]domain.Observer, error) {
	t.Helper()
	cfg, err := config.Load(writeConfig(t, batchedHook+extra), nil)
	if err != nil {
		return nil, err
	}
	return config.LoadObservers(cfg, nil, config.Checks{})
}

func TestWebhookBatch(t *testing.T) {
	t.Parallel()
	obs, err := loadBatched(t, "[observers.actions.batch]\n")
	if err != nil {
		t.Fatal(err)
	}
	want := domain.Batching{MaxEvents: 100, MaxBytes: 1 << 20, MaxWait: 20 * time.Millisecond}
	if b := domain.BatchingOf(&obs[0].Actions[0]); b == nil || *b != want {
		t.Fatalf("batch = %+v, want the defaults %+v", b, want)
	}
	plain, err := loadBatched(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if domain.BatchingOf(&plain[0].Actions[0]) != nil {
		t.Fatal("an action without [observers.actions.batch] is batched")
	}
	if plain[0].Actions[0].Name != obs[0].Actions[0].Name {
		t.Errorf("identity %q with batch, %q without: batching must not change the action's identity", obs[0].Actions[0].Name, plain[0].Actions[0].Name)
	}
	obs, err = loadBatched(t, "[observers.actions.batch]\nmax_events = 500\nmax_bytes = 2097152\nmax_wait = \"5ms\"\n")
	if err != nil {
		t.Fatal(err)
	}
	want = domain.Batching{MaxEvents: 500, MaxBytes: 2 << 20, MaxWait: 5 * time.Millisecond}
	if b := domain.BatchingOf(&obs[0].Actions[0]); b == nil || *b != want {
		t.Fatalf("batch = %+v, want %+v", b, want)
	}
}

func TestWebhookBatchErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ body, key string }{
		{"max_events = 0", "batch.max_events"},
		{"max_events = 10001", "batch.max_events"},
		{"max_bytes = 100", "batch.max_bytes"},
		{"max_bytes = 17000000", "batch.max_bytes"},
		{"max_wait = \"0s\"", "batch.max_wait"},
		{"max_wait = \"11s\"", "batch.max_wait"},
		{"max_wait = 5", "max_wait"},
		{"max_event = 5", "max_event"},
	} {
		_, err := loadBatched(t, "[observers.actions.batch]\n"+tt.body+"\n")
		var ce *config.ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%s: %v, want a ConfigError naming %s", tt.body, err, tt.key)
		}
	}
	_, err := loadBatched(t, "[observers.actions.batch]\n[performance]\nenable_concurrent = false\n")
	if err == nil || !strings.Contains(err.Error(), "performance.enable_concurrent") {
		t.Errorf("batching without concurrency: %v, want an error naming performance.enable_concurrent", err)
	}
	cfg, err := config.Load(writeConfig(t, `
[[observers]]
name = "o"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "log"
[observers.actions.batch]
`), nil)
	if err == nil {
		_, err = config.LoadObservers(cfg, nil, config.Checks{})
	}
	if err == nil || !strings.Contains(err.Error(), "batch") {
		t.Errorf("a batched log action: %v, want an error naming batch", err)
	}
}
