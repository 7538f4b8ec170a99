package prometheus_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"runtime"
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

// The fail-open series exist at 0 before any failure, so that increase()
// sees an outage shorter than a scrape interval.
func TestFailOpenSeriesStartAtZero(t *testing.T) {
	t.Parallel()
	out := scrape(t, promadapter.New(promadapter.BuildInfo{}))
	for _, want := range []string{`fraiseql_observer_fail_open_total{component="dedup"} 0`, `fraiseql_observer_fail_open_total{component="cache"} 0`} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

// TestEveryMetricIsSetByItsMethod drives each ports.Metrics method and
// the gauge setters and checks the exposition carries the value under the
// original's names, the new ones and the deprecated aliases.
func TestEveryMetricIsSetByItsMethod(t *testing.T) {
	t.Parallel()
	m := promadapter.New(promadapter.BuildInfo{Version: "v1.2.3"})
	drive(m)
	out := scrape(t, m)
	for _, want := range []string{
		`fraiseql_observer_build_info{go_version="` + runtime.Version() + `",version="v1.2.3"} 1`,
		`fraiseql_observer_events_processed_total{outcome="ok"} 2`,
		`fraiseql_observer_events_processed_total{outcome="failed"} 1`,
		`fraiseql_observer_events_processed_total{outcome="invalid"} 1`,
		`fraiseql_observer_events_failed_total{error_type="action_failed"} 1`,
		`fraiseql_observer_events_failed_total{error_type="invalid"} 1`,
		`fraiseql_observer_events_deserialization_failures_total 1`,
		`fraiseql_observer_action_executed_total{action="orders-hook",action_type="webhook",observer="orders",outcome="succeeded"} 1`,
		`fraiseql_observer_action_executed_total{action="orders-hook",action_type="webhook",observer="orders",outcome="retrying"} 1`,
		`fraiseql_observer_action_executed_total{action="log-3f2a9c1e",action_type="log",observer="audit",outcome="dead_lettered"} 1`,
		`fraiseql_observer_actions_executed_total{action_type="webhook",outcome="succeeded"} 1`,
		`fraiseql_observer_action_errors_total{action="orders-hook",action_type="webhook",error_type="retrying",observer="orders"} 1`,
		`fraiseql_observer_action_errors_total{action="log-3f2a9c1e",action_type="log",error_type="dead_lettered",observer="audit"} 1`,
		`fraiseql_observer_action_duration_seconds_count{action_type="webhook"} 2`,
		`fraiseql_observer_retries_scheduled_total{action_type="webhook"} 1`,
		`fraiseql_observer_dead_lettered_total 1`,
		`fraiseql_observer_conditions_skipped_total 1`,
		`fraiseql_observer_checkpoint_txid{reader="default"} 1234`,
		`fraiseql_observer_checkpoint_position{reader="default"} 56`,
		`fraiseql_observer_events_in_flight{reader="default"} 7`,
		`fraiseql_observer_events_in_flight{reader="bridge:orders"} 3`,
		`fraiseql_observer_dedup_processing_skipped_total 1`,
		`fraiseql_observer_dedup_detected_total 1`,
		`fraiseql_observer_cache_hits_total 1`,
		`fraiseql_observer_cache_misses_total 2`,
		`fraiseql_observer_fail_open_total{component="dedup"} 1`,
		`fraiseql_observer_bridge_published_total{result="stored"} 1`,
		`fraiseql_observer_bridge_published_total{result="duplicate"} 1`,
		`fraiseql_observer_backlog_rows{reader="default"} 42`,
		`fraiseql_observer_backlog_rows{reader="bridge:orders"} 8`,
		`fraiseql_observer_backlog_size 50`,
		`fraiseql_observer_dlq_items 3`,
		`fraiseql_observer_oldest_transaction_age_seconds 1.5`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	// No error series for attempts that succeeded.
	if strings.Contains(out, `action_errors_total{action="orders-hook",action_type="webhook",error_type="succeeded"`) {
		t.Error("a success counted as an action error")
	}
}

// drive calls every method of the adapter.
func drive(m *promadapter.Metrics) {
	m.EventProcessed("ok")
	m.EventProcessed("ok")
	m.EventProcessed("failed")
	m.EventProcessed("invalid")
	m.ActionExecuted(domain.ActionDetail{Observer: "orders", Action: "orders-hook", ActionType: domain.ActionWebhook, Outcome: domain.OutcomeSucceeded, Duration: 30 * time.Millisecond})
	m.ActionExecuted(domain.ActionDetail{Observer: "orders", Action: "orders-hook", ActionType: domain.ActionWebhook, Outcome: domain.OutcomeRetrying, Duration: time.Second})
	m.ActionExecuted(domain.ActionDetail{Observer: "audit", Action: "log-3f2a9c1e", ActionType: domain.ActionLog, Outcome: domain.OutcomeDeadLettered})
	m.RetryScheduled(domain.ActionWebhook)
	m.DeadLettered()
	m.ConditionSkipped()
	m.Checkpoint("default", ports.Position{TxID: 1234, Seq: 56})
	m.InFlight("default", 7)
	m.InFlight("bridge:orders", 3)
	m.DuplicateSkipped()
	m.CacheResult(true)
	m.CacheResult(false)
	m.CacheResult(false)
	m.FailOpen("dedup")
	m.Published(false)
	m.Published(true)
	m.SetBacklog("default", 40)
	m.SetBacklog("bridge:orders", 8)
	m.SetBacklog("default", 42)
	m.SetDLQItems(3)
	m.SetOldestTransactionAge(1500 * time.Millisecond)
}

// An empty version reads as "dev".
func TestBuildInfoDefaultsToDev(t *testing.T) {
	t.Parallel()
	if out := scrape(t, promadapter.New(promadapter.BuildInfo{})); !strings.Contains(out, `version="dev"`) {
		t.Errorf("build_info without a version:\n%s", out)
	}
}

// TestActionExecutedCountsEveryCall: the series ActionExecuted resolves
// once per action and outcome count every later call too, also past the
// bound of series it keeps resolved.
func TestActionExecutedCountsEveryCall(t *testing.T) {
	t.Parallel()
	m := promadapter.New(promadapter.BuildInfo{})
	for range 3 {
		m.ActionExecuted(domain.ActionDetail{Observer: "orders", Action: "hook", ActionType: domain.ActionWebhook, Outcome: domain.OutcomeRetrying, Duration: time.Second})
	}
	for i := range 4100 { // more actions than the memo keeps
		m.ActionExecuted(domain.ActionDetail{Observer: "many", Action: fmt.Sprintf("a%d", i), ActionType: domain.ActionLog, Outcome: domain.OutcomeSucceeded})
	}
	for range 2 {
		m.ActionExecuted(domain.ActionDetail{Observer: "many", Action: "a4099", ActionType: domain.ActionLog, Outcome: domain.OutcomeSucceeded})
	}
	out := scrape(t, m)
	for _, want := range []string{
		`fraiseql_observer_action_executed_total{action="hook",action_type="webhook",observer="orders",outcome="retrying"} 3`,
		`fraiseql_observer_action_errors_total{action="hook",action_type="webhook",error_type="retrying",observer="orders"} 3`,
		`fraiseql_observer_action_executed_total{action="a4099",action_type="log",observer="many",outcome="succeeded"} 3`,
		`fraiseql_observer_action_executed_total{action="a0",action_type="log",observer="many",outcome="succeeded"} 1`,
		`fraiseql_observer_action_duration_seconds_count{action_type="webhook"} 3`,
		`fraiseql_observer_action_duration_seconds_count{action_type="log"} 4102`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(out, `action_errors_total{action="a0"`) {
		t.Error("a success counted as an action error")
	}
}
