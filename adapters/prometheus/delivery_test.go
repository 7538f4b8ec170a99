package prometheus_test

import (
	"strings"
	"testing"

	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// TestEveryDeliveryMetricIsSetByItsMethod drives each
// ports.DeliveryMetrics method and checks the exposition.
func TestEveryDeliveryMetricIsSetByItsMethod(t *testing.T) {
	t.Parallel()
	m := promadapter.New(promadapter.BuildInfo{})
	d := promadapter.NewDeliveryMetrics(m.Registry())
	d.Parked(ports.RetryDue)
	d.Parked(ports.RetryWaiting)
	d.Parked(ports.RetryWaiting)
	d.RetrySettled("completed")
	d.RetryItems(7, 3)
	d.EndpointState("https://a:443", "closed")
	d.EndpointState("https://a:443", "open")
	d.EndpointState("https://b:443", "half_open")
	d.EndpointDeferred("https://a:443", "open")
	d.DeliveriesLogged(5)
	d.DeliveriesDropped(2)
	body := scrape(t, m)
	for _, want := range []string{
		`fraiseql_observer_retry_parked_total{state="due"} 1`,
		`fraiseql_observer_retry_parked_total{state="waiting"} 2`,
		`fraiseql_observer_retry_settled_total{outcome="completed"} 1`,
		`fraiseql_observer_retry_items{state="due"} 7`,
		`fraiseql_observer_retry_items{state="waiting"} 3`,
		`fraiseql_observer_endpoint_state{endpoint="https://a:443"} 2`,
		`fraiseql_observer_endpoint_state{endpoint="https://b:443"} 1`,
		`fraiseql_observer_endpoint_transitions_total{endpoint="https://a:443",state="open"} 1`,
		`fraiseql_observer_endpoint_deferred_total{endpoint="https://a:443",reason="open"} 1`,
		`fraiseql_observer_delivery_log_written_total 5`,
		`fraiseql_observer_delivery_log_dropped_total 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	d.EndpointRemoved("https://a:443") // a reload removed it
	if body := scrape(t, m); strings.Contains(body, `fraiseql_observer_endpoint_state{endpoint="https://a:443"}`) ||
		!strings.Contains(body, `fraiseql_observer_endpoint_state{endpoint="https://b:443"} 1`) {
		t.Errorf("after EndpointRemoved the exposition still reports a's state, or lost b's")
	}
}
