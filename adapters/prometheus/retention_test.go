package prometheus_test

import (
	"strings"
	"testing"

	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
)

func TestPrunedRows(t *testing.T) {
	t.Parallel()
	m := promadapter.New(promadapter.BuildInfo{})
	r := promadapter.NewRetentionMetrics(m, "change_log", "dead_letters")
	before := scrape(t, m)
	if !strings.Contains(before, `fraiseql_observer_pruned_rows_total{table="dead_letters"} 0`) {
		t.Errorf("no zero series before any prune:\n%s", before)
	}
	r.Pruned("change_log", 500)
	r.Pruned("change_log", 23)
	out := scrape(t, m)
	for _, want := range []string{
		`fraiseql_observer_pruned_rows_total{table="change_log"} 523`,
		`fraiseql_observer_pruned_rows_total{table="dead_letters"} 0`,
		"# TYPE fraiseql_observer_pruned_rows_total counter",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
