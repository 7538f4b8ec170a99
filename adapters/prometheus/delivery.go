package prometheus

import (
	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// DeliveryMetrics is a ports.DeliveryMetrics: durable retries, endpoint
// health and the delivery log, registered next to the Metrics.
type DeliveryMetrics struct {
	parked      *prom.CounterVec
	settled     *prom.CounterVec
	items       *prom.GaugeVec
	state       *prom.GaugeVec
	transitions *prom.CounterVec
	deferred    *prom.CounterVec
	logged      prom.Counter
	dropped     prom.Counter
}

var _ ports.DeliveryMetrics = (*DeliveryMetrics)(nil)

// circuitValues are the values of fraiseql_observer_endpoint_state.
var circuitValues = map[string]float64{"closed": 0, "half_open": 1, "open": 2}

// NewDeliveryMetrics registers the durable-delivery metrics in reg.
func NewDeliveryMetrics(reg *prom.Registry) *DeliveryMetrics {
	m := &DeliveryMetrics{
		parked: prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "retry_parked_total",
			Help: "Items parked in the durable retry store, by state (due, or waiting behind an earlier item of the entity)."}, []string{"state"}),
		settled: prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "retry_settled_total",
			Help: "Parked items the retry runner settled, by outcome (completed, rescheduled, released)."}, []string{"outcome"}),
		items: prom.NewGaugeVec(prom.GaugeOpts{Namespace: namespace, Name: "retry_items",
			Help: "Items in the durable retry store, by state."}, []string{"state"}),
		state: prom.NewGaugeVec(prom.GaugeOpts{Namespace: namespace, Name: "endpoint_state",
			Help: "Circuit state per endpoint: 0 closed, 1 half open (probing), 2 open."}, []string{"endpoint"}),
		transitions: prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "endpoint_transitions_total",
			Help: "Circuit transitions per endpoint, by the state entered."}, []string{"endpoint", "state"}),
		deferred: prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "endpoint_deferred_total",
			Help: "Actions not attempted because of their endpoint, by reason (open, rate, concurrency)."}, []string{"endpoint", "reason"}),
		logged: prom.NewCounter(prom.CounterOpts{Namespace: namespace, Name: "delivery_log_written_total",
			Help: "Delivery records written to the delivery log."}),
		dropped: prom.NewCounter(prom.CounterOpts{Namespace: namespace, Name: "delivery_log_dropped_total",
			Help: "Delivery records dropped: the writer's buffer was full or the log refused them."}),
	}
	reg.MustRegister(m.parked, m.settled, m.items, m.state, m.transitions, m.deferred, m.logged, m.dropped)
	return m
}

func (m *DeliveryMetrics) Parked(s ports.RetryState)     { m.parked.WithLabelValues(string(s)).Inc() }
func (m *DeliveryMetrics) RetrySettled(outcome string)   { m.settled.WithLabelValues(outcome).Inc() }
func (m *DeliveryMetrics) DeliveriesLogged(n int)        { m.logged.Add(float64(n)) }
func (m *DeliveryMetrics) DeliveriesDropped(n int)       { m.dropped.Add(float64(n)) }
func (m *DeliveryMetrics) EndpointDeferred(ep, r string) { m.deferred.WithLabelValues(ep, r).Inc() }

func (m *DeliveryMetrics) RetryItems(due, waiting int64) {
	m.items.WithLabelValues(string(ports.RetryDue)).Set(float64(due))
	m.items.WithLabelValues(string(ports.RetryWaiting)).Set(float64(waiting))
}

// EndpointRemoved deletes the endpoint's state series (its transitions
// and deferrals stay: counters of what happened).
func (m *DeliveryMetrics) EndpointRemoved(endpoint string) { m.state.DeleteLabelValues(endpoint) }

func (m *DeliveryMetrics) EndpointState(endpoint, state string) {
	m.state.WithLabelValues(endpoint).Set(circuitValues[state])
	m.transitions.WithLabelValues(endpoint, state).Inc()
}
