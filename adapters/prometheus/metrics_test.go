package prometheus_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

var _ ports.Metrics = (*promadapter.Metrics)(nil)

func scrape(t *testing.T, m *promadapter.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestEveryMetricIsSetByItsMethod drives each ports.Metrics method and
// the gauge setters and checks the exposition carries the value under the
// original's names.
func TestEveryMetricIsSetByItsMethod(t *testing.T) {
	t.Parallel()
	m := promadapter.New()
	m.EventProcessed("ok")
	m.EventProcessed("ok")
	m.EventProcessed("failed")
	m.ActionExecuted(domain.ActionWebhook, domain.OutcomeSucceeded, 30*time.Millisecond)
	m.RetryScheduled(domain.ActionWebhook)
	m.DeadLettered()
	m.ConditionSkipped()
	m.Checkpoint("default", ports.Position{TxID: 1234, Seq: 56})
	m.InFlight(7)
	m.DuplicateSkipped()
	m.CacheResult(true)
	m.CacheResult(false)
	m.CacheResult(false)
	m.FailOpen("dedup")
	m.Published(false)
	m.Published(true)
	m.SetBacklog(42)
	m.SetDLQItems(3)
	m.SetOldestTransactionAge(1500 * time.Millisecond)

	out := scrape(t, m)
	for _, want := range []string{
		`fraiseql_observer_events_processed_total{outcome="ok"} 2`,
		`fraiseql_observer_events_processed_total{outcome="failed"} 1`,
		`fraiseql_observer_actions_executed_total{action_type="webhook",outcome="succeeded"} 1`,
		`fraiseql_observer_action_duration_seconds_count{action_type="webhook"} 1`,
		`fraiseql_observer_retries_scheduled_total{action_type="webhook"} 1`,
		`fraiseql_observer_dead_lettered_total 1`,
		`fraiseql_observer_conditions_skipped_total 1`,
		`fraiseql_observer_checkpoint_txid{reader="default"} 1234`,
		`fraiseql_observer_checkpoint_position{reader="default"} 56`,
		`fraiseql_observer_events_in_flight 7`,
		`fraiseql_observer_dedup_processing_skipped_total 1`,
		`fraiseql_observer_cache_hits_total 1`,
		`fraiseql_observer_cache_misses_total 2`,
		`fraiseql_observer_fail_open_total{component="dedup"} 1`,
		`fraiseql_observer_bridge_published_total{result="stored"} 1`,
		`fraiseql_observer_bridge_published_total{result="duplicate"} 1`,
		`fraiseql_observer_backlog_size 42`,
		`fraiseql_observer_dlq_items 3`,
		`fraiseql_observer_oldest_transaction_age_seconds 1.5`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}
