package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/internal/testenv"
)

// TestHarnessPostgresOnly runs the harness end to end with tiny numbers
// against the machine's PostgreSQL (skipped without one, a failure under
// CI=true): every event delivered once, the table has every row, a CPU
// profile of each phase is written.
func TestHarnessPostgresOnly(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	bin := observerBinary(t)
	prof := t.TempDir()
	opt, _, err := parseFlags([]string{"-bin", bin, "-topologies", "postgres-only", "-rows", "500", "-duration", "1s", "-rates", "400",
		"-clients", "8", "-write-duration", "1s", "-hammer-conns", "4", "-hammer-duration", "200ms", "-pprof", prof, "-pprof-duration", "1s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	opt.Services.DatabaseURL = dbURL
	var logs bytes.Buffer
	h, err := newHarness(opt, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	start := time.Now()
	if err := h.run(t.Context()); err != nil {
		t.Fatalf("harness: %v\nlog:\n%s", err, logs.String())
	}
	t.Logf("harness ran in %v", time.Since(start).Round(time.Millisecond))

	f := h.figs
	value := func(table, row, col string) float64 {
		t.Helper()
		vs := f.vals[figKey{table, row, col}]
		if len(vs) != 1 {
			t.Fatalf("%s / %s / %s: %v, want one value; rows %q", table, row, col, vs, f.rows[table])
		}
		return vs[0]
	}
	const col = "postgres-only"
	if got := value(tableTopologies, "missing", col); got != 0 {
		t.Errorf("missing = %v, want 0", got)
	}
	if got := value(tableTopologies, "duplicates", col); got != 0 {
		t.Errorf("duplicates = %v, want 0", got)
	}
	for _, row := range []string{"drain 500 events, events/s", "drain, CPU s per 10k events", "drain, peak RSS MB",
		"400 tx/s: achieved tx/s", "400 tx/s: p50 ms", "400 tx/s: p99 ms", "400 tx/s: max ms", "400 tx/s: CPU s per 10k events", "peak RSS MB, whole run"} {
		if got := value(tableTopologies, row, col); got <= 0 {
			t.Errorf("%s = %v, want > 0", row, got)
		}
	}
	for _, row := range []string{"receiver alone, 4 connections, req/s", "application commits/s, 8 clients, no trigger, no service",
		"application commits/s, 8 clients, capture installed, service running", "ratio with/without capture, 8 clients"} {
		if got := value(tableCeilings, row, colValue); got <= 0 {
			t.Errorf("%s = %v, want > 0", row, got)
		}
	}
	if p50, p99 := value(tableTopologies, "400 tx/s: p50 ms", col), value(tableTopologies, "400 tx/s: p99 ms", col); p50 > p99 {
		t.Errorf("p50 %v > p99 %v", p50, p99)
	}

	var md bytes.Buffer
	rep := report{Machine: machine{CPUs: 2}, Command: "fraiseql-bench", Runs: 1, Figures: f}
	if err := rep.markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| figure | postgres-only |", "| missing | 0 |", "| duplicates | 0 |", "| 400 tx/s: p99 ms |", "| ceiling | value |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, md.String())
		}
	}
	for _, name := range []string{"run1-postgres-only-drain-service.pprof", "run1-postgres-only-400txs-service.pprof"} {
		if st, err := os.Stat(filepath.Join(prof, name)); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
}
