package prometheus

import (
	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// RetentionMetrics is ports.RetentionMetrics on a Metrics registry:
// fraiseql_observer_pruned_rows_total{table}.
type RetentionMetrics struct {
	pruned *prom.CounterVec
}

var _ ports.RetentionMetrics = (*RetentionMetrics)(nil)

// NewRetentionMetrics registers the retention counter on m's registry,
// with a zero series for each table named.
func NewRetentionMetrics(m *Metrics, tables ...string) *RetentionMetrics {
	r := &RetentionMetrics{pruned: prom.NewCounterVec(prom.CounterOpts{Namespace: namespace, Name: "pruned_rows_total",
		Help: "Rows deleted by retention, by table (change_log, dead_letters, delivery_log)."}, []string{"table"})}
	m.reg.MustRegister(r.pruned)
	for _, t := range tables {
		r.pruned.WithLabelValues(t)
	}
	return r
}

// Pruned counts rows deleted from table.
func (r *RetentionMetrics) Pruned(table string, rows int64) {
	r.pruned.WithLabelValues(table).Add(float64(rows))
}
