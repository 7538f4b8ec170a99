// Package prometheus implements ports.Metrics with the Prometheus client
// and the metric names of the original FraiseQL observer
// (fraiseql_observer_*). README.md lists every metric, its type, labels
// and meaning; a test keeps that list complete.
//
// Names kept from the original (the Rust crate fraiseql-observers):
// events_processed_total, events_failed_total,
// events_deserialization_failures_total, action_executed_total,
// action_duration_seconds, action_errors_total, dedup_detected_total,
// dedup_processing_skipped_total, cache_hits_total, cache_misses_total,
// backlog_size (deprecated for backlog_rows) and dlq_items. Not kept:
// cache_evictions_total (Redis expires results itself; nothing here sees
// an eviction) and the job_* family (there is no job queue).
package prometheus

import (
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
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
	reg                   *prom.Registry
	eventsProcessed       *prom.CounterVec
	eventsFailed          *prom.CounterVec
	deserializationFailed prom.Counter
	actionExecuted        *prom.CounterVec
	actionsExecutedOld    *prom.CounterVec // deprecated alias
	actionErrors          *prom.CounterVec
	actionDuration        *prom.HistogramVec
	retries               *prom.CounterVec
	deadLettered          prom.Counter
	conditionsSkipped     prom.Counter
	checkpointTxID        *prom.GaugeVec
	checkpointSeq         *prom.GaugeVec
	inFlight              *prom.GaugeVec
	backlogRows           *prom.GaugeVec
	backlogSize           prom.Gauge // deprecated: the sum of backlogRows
	dlqItems              prom.Gauge
	oldestTransactionAge  prom.Gauge
	dedupSkipped          prom.Counter
	dedupDetected         prom.Counter
	cacheHits             prom.Counter
	cacheMisses           prom.Counter
	failOpen              *prom.CounterVec
	published             *prom.CounterVec
	// publishedStored and publishedDuplicate resolve their series on first
	// use: the bridge counts every publication, and a label lookup per
	// event cost it 7% of its CPU.
	publishedStored, publishedDuplicate func() prom.Counter
	// actions holds the series ActionExecuted resolved, per action and
	// outcome (at most maxActionSeries; past it each call looks its series
	// up): three label lookups per action run cost the log-action pipeline
	// a tenth of its CPU.
	actions  sync.Map // actionKey -> *actionSeries
	nActions atomic.Int64

	mu      sync.Mutex
	backlog map[string]int64 // rows per reader, for the deprecated sum
}

var _ ports.Metrics = (*Metrics)(nil)

// BuildInfo describes the running binary for fraiseql_observer_build_info.
type BuildInfo struct {
	Version string // e.g. "v1.2.0" or a commit; "" reads as "dev"
}

// New registers every metric, plus the Go and process collectors.
func New(build BuildInfo) *Metrics {
	counter := func(name, help string) prom.Counter {
		return prom.NewCounter(prom.CounterOpts{Namespace: namespace, Name: name, Help: help})
	}
	counterVec := func(name, help string, labels ...string) *prom.CounterVec {
		return prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) prom.Gauge {
		return prom.NewGauge(prom.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	}
	gaugeVec := func(name, help string, labels ...string) *prom.GaugeVec {
		return prom.NewGaugeVec(prom.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	m := &Metrics{
		reg: prom.NewRegistry(),
		eventsProcessed: counterVec("events_processed_total",
			"Events whose every action is finished, by outcome (ok, failed, parked, no_match, duplicate, invalid).", "outcome"),
		eventsFailed: counterVec("events_failed_total",
			"Events finished with a failure, by error_type: action_failed (an action was dead-lettered or logged as failed), invalid (the row or message was not an event).", "error_type"),
		deserializationFailed: counter("events_deserialization_failures_total",
			"Change-log rows or messages that could not be decoded into an event (parked in the dead-letter queue)."),
		actionExecuted: counterVec("action_executed_total",
			"Action attempts by action type, observer, action (its name or identity) and outcome (succeeded, cached, retrying, dead_lettered, failed_logged).", "action_type", "observer", "action", "outcome"),
		actionsExecutedOld: counterVec("actions_executed_total",
			"Deprecated: use action_executed_total. Action attempts by type and outcome.", "action_type", "outcome"),
		actionErrors: counterVec("action_errors_total",
			"Failed action attempts by action type, observer, action (its name or identity) and error_type (retrying: another attempt is scheduled; dead_lettered or failed_logged: the last one).", "action_type", "observer", "action", "error_type"),
		actionDuration: prom.NewHistogramVec(prom.HistogramOpts{Namespace: namespace, Name: "action_duration_seconds",
			Help: "Duration of action attempts.", Buckets: prom.ExponentialBuckets(0.001, 2.5, 12)}, []string{"action_type"}),
		retries: counterVec("retries_scheduled_total",
			"Failed action attempts that will be tried again.", "action_type"),
		deadLettered: counter("dead_lettered_total",
			"Items parked in the dead-letter queue."),
		conditionsSkipped: counter("conditions_skipped_total",
			"Matched observers whose condition was false."),
		checkpointTxID: gaugeVec("checkpoint_txid",
			"Transaction id part of the saved reader checkpoint.", "reader"),
		checkpointSeq: gaugeVec("checkpoint_position",
			"Row position part of the saved reader checkpoint.", "reader"),
		inFlight: gaugeVec("events_in_flight",
			"Events read but not finished, by reader.", "reader"),
		backlogRows: gaugeVec("backlog_rows",
			"Change-log rows after the reader's saved checkpoint (on a standby replica: after the stored checkpoint of the replica that reads).", "reader"),
		backlogSize: gauge("backlog_size",
			"Deprecated: use backlog_rows. Change-log rows after the saved checkpoints, summed over this process's readers."),
		dlqItems: gauge("dlq_items",
			"Items in the dead-letter queue."),
		oldestTransactionAge: gauge("oldest_transaction_age_seconds",
			"Age of the oldest open transaction; it holds the change-log reader back."),
		dedupSkipped: counter("dedup_processing_skipped_total",
			"Events skipped because they were already processed."),
		dedupDetected: counter("dedup_detected_total",
			"Duplicate events detected (each one is skipped: equal to dedup_processing_skipped_total)."),
		cacheHits: counter("cache_hits_total",
			"Actions not repeated because the result cache held their success."),
		cacheMisses: counter("cache_misses_total",
			"Result-cache lookups that found nothing."),
		failOpen: counterVec("fail_open_total",
			"Operations that went on without their backing service (Redis down), by component.", "component"),
		published: counterVec("bridge_published_total",
			"Events the bridge published and the broker acknowledged, by result (stored, duplicate).", "result"),
		backlog: map[string]int64{},
	}
	version := build.Version
	if version == "" {
		version = "dev"
	}
	buildInfo := gaugeVec("build_info",
		"Always 1; the labels say which build runs (version, go_version).", "version", "go_version")
	m.publishedStored = sync.OnceValue(func() prom.Counter { return m.published.WithLabelValues("stored") })
	m.publishedDuplicate = sync.OnceValue(func() prom.Counter { return m.published.WithLabelValues("duplicate") })
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	// The fail-open series exist at 0 from the start: increase() over an
	// outage shorter than a scrape interval needs the series before it.
	m.failOpen.WithLabelValues("dedup")
	m.failOpen.WithLabelValues("cache")
	m.reg.MustRegister(buildInfo, m.eventsProcessed, m.eventsFailed, m.deserializationFailed,
		m.actionExecuted, m.actionsExecutedOld, m.actionErrors, m.actionDuration, m.retries, m.deadLettered,
		m.conditionsSkipped, m.checkpointTxID, m.checkpointSeq, m.inFlight, m.backlogRows, m.backlogSize,
		m.dlqItems, m.oldestTransactionAge, m.dedupSkipped, m.dedupDetected, m.cacheHits, m.cacheMisses,
		m.failOpen, m.published,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry exposes the registry so other adapters can add their metrics.
func (m *Metrics) Registry() *prom.Registry { return m.reg }

func (m *Metrics) EventProcessed(outcome string) {
	m.eventsProcessed.WithLabelValues(outcome).Inc()
	switch outcome {
	case "failed":
		m.eventsFailed.WithLabelValues("action_failed").Inc()
	case "invalid":
		m.eventsFailed.WithLabelValues("invalid").Inc()
		m.deserializationFailed.Inc()
	}
}

func (m *Metrics) ActionExecuted(d domain.ActionDetail) {
	s := m.actionSeries(actionKey{d.ActionType, d.Observer, d.Action, d.Outcome})
	s.executed.Inc()
	s.executedOld.Inc()
	s.duration.Observe(d.Duration.Seconds())
	if s.errors != nil {
		s.errors.Inc()
	}
}

// maxActionSeries bounds the memo of ActionExecuted's series: the labels
// come from configuration (observer and action names), which reloads may
// change.
const maxActionSeries = 4096

type actionKey struct {
	typ              domain.ActionType
	observer, action string
	outcome          domain.ActionOutcome
}

type actionSeries struct {
	executed, executedOld, errors prom.Counter // errors: nil for an outcome that is not one
	duration                      prom.Observer
}

// actionSeries returns k's series, resolved once.
func (m *Metrics) actionSeries(k actionKey) *actionSeries {
	if s, ok := m.actions.Load(k); ok {
		return s.(*actionSeries)
	}
	t, o := string(k.typ), string(k.outcome)
	s := &actionSeries{
		executed:    m.actionExecuted.WithLabelValues(t, k.observer, k.action, o),
		executedOld: m.actionsExecutedOld.WithLabelValues(t, o),
		duration:    m.actionDuration.WithLabelValues(t),
	}
	switch k.outcome {
	case domain.OutcomeRetrying, domain.OutcomeDeadLettered, domain.OutcomeFailedLogged:
		s.errors = m.actionErrors.WithLabelValues(t, k.observer, k.action, o)
	}
	if m.nActions.Load() < maxActionSeries {
		if _, loaded := m.actions.LoadOrStore(k, s); !loaded {
			m.nActions.Add(1)
		}
	}
	return s
}

func (m *Metrics) RetryScheduled(t domain.ActionType) { m.retries.WithLabelValues(string(t)).Inc() }
func (m *Metrics) DeadLettered()                      { m.deadLettered.Inc() }
func (m *Metrics) ConditionSkipped()                  { m.conditionsSkipped.Inc() }
func (m *Metrics) InFlight(reader string, n int)      { m.inFlight.WithLabelValues(reader).Set(float64(n)) }
func (m *Metrics) FailOpen(component string)          { m.failOpen.WithLabelValues(component).Inc() }

func (m *Metrics) DuplicateSkipped() {
	m.dedupSkipped.Inc()
	m.dedupDetected.Inc()
}

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

// SetBacklog records the change-log rows after reader's checkpoint (and
// the deprecated backlog_size, the sum over readers).
func (m *Metrics) SetBacklog(reader string, rows int64) {
	m.backlogRows.WithLabelValues(reader).Set(float64(rows))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.backlog[reader] = rows
	var sum int64
	for _, n := range m.backlog {
		sum += n
	}
	m.backlogSize.Set(float64(sum))
}

// SetDLQItems records the dead-letter queue's size.
func (m *Metrics) SetDLQItems(n int64) { m.dlqItems.Set(float64(n)) }

// SetOldestTransactionAge records how long the oldest open transaction has
// been running.
func (m *Metrics) SetOldestTransactionAge(d time.Duration) { m.oldestTransactionAge.Set(d.Seconds()) }

// Published counts a publication the broker acknowledged.
func (m *Metrics) Published(duplicate bool) {
	if duplicate {
		m.publishedDuplicate().Inc()
	} else {
		m.publishedStored().Inc()
	}
}
