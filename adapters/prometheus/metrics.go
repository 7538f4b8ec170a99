// Package prometheus implements ports.Metrics with the Prometheus client
// and the metric names of the original FraiseQL observer
// (fraiseql_observer_*).
package prometheus

import (
	"net/http"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

const namespace = "fraiseql_observer"

// Metrics is a ports.Metrics backed by its own registry.
type Metrics struct {
	reg                  *prom.Registry
	eventsProcessed      *prom.CounterVec
	actionsExecuted      *prom.CounterVec
	actionDuration       *prom.HistogramVec
	retries              *prom.CounterVec
	deadLettered         prom.Counter
	conditionsSkipped    prom.Counter
	checkpointTxID       *prom.GaugeVec
	checkpointSeq        *prom.GaugeVec
	inFlight             prom.Gauge
	backlog              prom.Gauge
	dlqItems             prom.Gauge
	oldestTransactionAge prom.Gauge
	dedupSkipped         prom.Counter
	cacheHits            prom.Counter
	cacheMisses          prom.Counter
	failOpen             *prom.CounterVec
	published            *prom.CounterVec
}

var _ ports.Metrics = (*Metrics)(nil)

// New registers every metric, plus the Go and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prom.NewRegistry(),
		eventsProcessed: prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "events_processed_total",
			Help: "Events whose every action is finished, by outcome (ok, failed, no_match, duplicate, invalid)."}, []string{"outcome"}),
		actionsExecuted: prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "actions_executed_total",
			Help: "Action attempts by type and outcome."}, []string{"action_type", "outcome"}),
		actionDuration: prom.NewHistogramVec(prom.HistogramOpts{Namespace: namespace, Name: "action_duration_seconds",
			Help: "Duration of action attempts.", Buckets: prom.ExponentialBuckets(0.001, 2.5, 12)}, []string{"action_type"}),
		retries: prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "retries_scheduled_total",
			Help: "Failed action attempts that will be tried again."}, []string{"action_type"}),
		deadLettered: prom.NewCounter(prom.CounterOpts{Namespace: namespace, Name: "dead_lettered_total",
			Help: "Items parked in the dead-letter queue."}),
		conditionsSkipped: prom.NewCounter(prom.CounterOpts{Namespace: namespace, Name: "conditions_skipped_total",
			Help: "Matched observers whose condition was false."}),
		checkpointTxID: prom.NewGaugeVec(prom.GaugeOpts{Namespace: namespace, Name: "checkpoint_txid",
			Help: "Transaction id part of the saved reader checkpoint."}, []string{"reader"}),
		checkpointSeq: prom.NewGaugeVec(prom.GaugeOpts{Namespace: namespace, Name: "checkpoint_position",
			Help: "Row position part of the saved reader checkpoint."}, []string{"reader"}),
		inFlight: prom.NewGauge(prom.GaugeOpts{Namespace: namespace, Name: "events_in_flight",
			Help: "Events read but not finished."}),
		backlog: prom.NewGauge(prom.GaugeOpts{Namespace: namespace, Name: "backlog_size",
			Help: "Change-log rows after the saved checkpoint."}),
		dlqItems: prom.NewGauge(prom.GaugeOpts{Namespace: namespace, Name: "dlq_items",
			Help: "Items in the dead-letter queue."}),
		oldestTransactionAge: prom.NewGauge(prom.GaugeOpts{Namespace: namespace, Name: "oldest_transaction_age_seconds",
			Help: "Age of the oldest open transaction; it holds the change-log reader back."}),
		dedupSkipped: prom.NewCounter(prom.CounterOpts{Namespace: namespace, Name: "dedup_processing_skipped_total",
			Help: "Events skipped because they were already processed."}),
		cacheHits: prom.NewCounter(prom.CounterOpts{Namespace: namespace, Name: "cache_hits_total",
			Help: "Actions not repeated because the result cache held their success."}),
		cacheMisses: prom.NewCounter(prom.CounterOpts{Namespace: namespace, Name: "cache_misses_total",
			Help: "Result-cache lookups that found nothing."}),
		failOpen: prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "fail_open_total",
			Help: "Operations that went on without their backing service (Redis down), by component."}, []string{"component"}),
	}
	m.published = prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "bridge_published_total",
		Help: "Events the bridge published and the broker acknowledged, by result (stored, duplicate)."}, []string{"result"})
	m.reg.MustRegister(m.dedupSkipped, m.cacheHits, m.cacheMisses, m.failOpen, m.published)
	m.reg.MustRegister(m.eventsProcessed, m.actionsExecuted, m.actionDuration, m.retries, m.deadLettered,
		m.conditionsSkipped, m.checkpointTxID, m.checkpointSeq, m.inFlight, m.backlog, m.dlqItems, m.oldestTransactionAge,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry exposes the registry so other adapters can add their metrics.
func (m *Metrics) Registry() *prom.Registry { return m.reg }

func (m *Metrics) EventProcessed(outcome string) { m.eventsProcessed.WithLabelValues(outcome).Inc() }

func (m *Metrics) ActionExecuted(t domain.ActionType, o domain.ActionOutcome, d time.Duration) {
	m.actionsExecuted.WithLabelValues(string(t), string(o)).Inc()
	m.actionDuration.WithLabelValues(string(t)).Observe(d.Seconds())
}

func (m *Metrics) RetryScheduled(t domain.ActionType) { m.retries.WithLabelValues(string(t)).Inc() }
func (m *Metrics) DeadLettered()                      { m.deadLettered.Inc() }
func (m *Metrics) ConditionSkipped()                  { m.conditionsSkipped.Inc() }
func (m *Metrics) InFlight(n int)                     { m.inFlight.Set(float64(n)) }
func (m *Metrics) DuplicateSkipped()                  { m.dedupSkipped.Inc() }
func (m *Metrics) FailOpen(component string)          { m.failOpen.WithLabelValues(component).Inc() }

func (m *Metrics) CacheResult(hit bool) {
	if hit {
		m.cacheHits.Inc()
	} else {
		m.cacheMisses.Inc()
	}
}

func (m *Metrics) Checkpoint(name string, pos ports.Position) {
	m.checkpointTxID.WithLabelValues(name).Set(float64(pos.TxID))
	m.checkpointSeq.WithLabelValues(name).Set(float64(pos.Seq))
}

// SetBacklog records the number of change-log rows not yet checkpointed.
func (m *Metrics) SetBacklog(n int64) { m.backlog.Set(float64(n)) }

// SetDLQItems records the dead-letter queue's size.
func (m *Metrics) SetDLQItems(n int64) { m.dlqItems.Set(float64(n)) }

// SetOldestTransactionAge records how long the oldest open transaction has
// been running.
func (m *Metrics) SetOldestTransactionAge(d time.Duration) { m.oldestTransactionAge.Set(d.Seconds()) }

// Published counts a publication the broker acknowledged.
func (m *Metrics) Published(duplicate bool) {
	if duplicate {
		m.published.WithLabelValues("duplicate").Inc()
	} else {
		m.published.WithLabelValues("stored").Inc()
	}
}
