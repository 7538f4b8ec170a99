package prometheus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	"github.com/fraiseql/fraiseql-observer/ports"
)

const promDir = "../../docker/prometheus"

// promtool finds promtool (Debian: package prometheus). It skips the test
// when promtool is missing, except under CI=true, where that fails
// (.ci/run installs it).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("promtool not found (CI=true): install the Debian package prometheus, as .ci/run does: %v", err)
	}
	t.Skipf("promtool not found (apt-get install prometheus): %v", err)
	return ""
}

// The example alert rules and Prometheus configuration are valid, and the
// rules' unit tests pass.
func TestAlertRulesWithPromtool(t *testing.T) {
	t.Parallel()
	tool := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.CommandContext(t.Context(), tool, args...)
		cmd.Dir = promDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var metricName = regexp.MustCompile(`fraiseql_observer_[a-z_]+`)

// exposedFamilies lists the metric families the adapter exposes once
// every method has been called.
func exposedFamilies(t *testing.T) []string {
	t.Helper()
	m := promadapter.New(promadapter.BuildInfo{Version: "test"})
	drive(m)
	// The metrics registered beside them, as bootstrap does: durable
	// delivery and retention.
	d := promadapter.NewDeliveryMetrics(m.Registry())
	d.Parked(ports.RetryDue)
	d.RetrySettled("completed")
	d.RetryItems(1, 0)
	d.EndpointState("https://hooks.example:443", "open")
	d.EndpointDeferred("https://hooks.example:443", "open")
	d.DeliveriesLogged(2)
	d.DeliveriesDropped(1)
	promadapter.NewRetentionMetrics(m, "change_log").Pruned("change_log", 3)
	var out []string
	for l := range strings.Lines(scrape(t, m)) {
		if name, ok := strings.CutPrefix(l, "# TYPE "); ok {
			name = strings.Fields(name)[0]
			if strings.HasPrefix(name, "fraiseql_observer_") {
				out = append(out, name)
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d families exposed: %v", len(out), out)
	}
	return out
}

// Every metric the alert rules (and their tests) name is one the service
// exposes: a renamed metric cannot leave an alert that never fires.
func TestAlertRulesNameExposedMetrics(t *testing.T) {
	t.Parallel()
	families := exposedFamilies(t)
	for _, f := range []string{"alerts.yml", "alerts_test.yml"} {
		raw, err := os.ReadFile(filepath.Join(promDir, f))
		if err != nil {
			t.Fatal(err)
		}
		names := metricName.FindAllString(string(raw), -1)
		if len(names) == 0 {
			t.Fatalf("%s names no metric", f)
		}
		for _, n := range names {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
			if !slices.Contains(families, n) && !slices.Contains(families, base) {
				t.Errorf("%s names %s, which the service does not expose", f, n)
			}
		}
	}
}

// README documents every metric the service exposes.
func TestREADMEDocumentsEveryMetric(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range exposedFamilies(t) {
		if !strings.Contains(string(raw), "`"+f+"`") && !strings.Contains(string(raw), "`"+strings.TrimPrefix(f, "fraiseql_observer_")+"`") {
			t.Errorf("README.md does not document %s", f)
		}
	}
}
