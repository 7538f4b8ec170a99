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
// CI=true), with both webhook variants (-batch 0,100): every event
// delivered once in each, the table has every row and both columns, a CPU
// profile of each phase is written.
func TestHarnessPostgresOnly(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	bin := observerBinary(t)
	prof := t.TempDir()
	opt, _, err := parseFlags([]string{"-bin", bin, "-topologies", "postgres-only", "-rows", "500", "-duration", "1s", "-rates", "400",
		"-clients", "8", "-write-duration", "1s", "-write-rounds", "2", "-hammer-conns", "4", "-hammer-duration", "200ms", "-pprof", prof, "-pprof-duration", "1s",
		"-batch", "0,100"}, io.Discard)
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
	const one, batched = "postgres-only, one per request", "postgres-only, batches of 100"
	if cols := f.cols[tableTopologies]; strings.Join(cols, "|") != one+"|"+batched {
		t.Fatalf("columns %q, want %q and %q", cols, one, batched)
	}
	for _, col := range []string{one, batched} {
		for _, row := range []string{"missing", "duplicates", "malformed requests"} {
			if got := value(tableTopologies, row, col); got != 0 {
				t.Errorf("%s: %s = %v, want 0", col, row, got)
			}
		}
		for _, row := range []string{"drain 500 events, events/s", "drain, CPU s per 10k events", "drain, peak RSS MB", "drain, events per request",
			"400 tx/s: achieved tx/s", "400 tx/s: p50 ms", "400 tx/s: p99 ms", "400 tx/s: max ms", "400 tx/s: CPU s per 10k events", "peak RSS MB, whole run",
			"400 tx/s: p50 ms after the commit", "400 tx/s: max ms after the commit", "400 tx/s: writer's insert and commit, p99 ms"} {
			if got := value(tableTopologies, row, col); got <= 0 {
				t.Errorf("%s: %s = %v, want > 0", col, row, got)
			}
		}
		if p50, p99 := value(tableTopologies, "400 tx/s: p50 ms", col), value(tableTopologies, "400 tx/s: p99 ms", col); p50 > p99 {
			t.Errorf("%s: p50 %v > p99 %v", col, p50, p99)
		}
		// From the commit's answer the latency is at most that from
		// before the insert: the same deliveries, a later start.
		if after, from := value(tableTopologies, "400 tx/s: max ms after the commit", col), value(tableTopologies, "400 tx/s: max ms", col); after > from {
			t.Errorf("%s: max after the commit %v > max from before the insert %v", col, after, from)
		}
	}
	// One event per request, and the batched variant really sent batches:
	// a 500-event backlog drains in requests of more than one event.
	if got := value(tableTopologies, "drain, events per request", one); got != 1 {
		t.Errorf("%s: drain, events per request = %v, want 1", one, got)
	}
	if got := value(tableTopologies, "drain, events per request", batched); got <= 1 || got > 100 {
		t.Errorf("%s: drain, events per request = %v, want more than 1, at most 100", batched, got)
	}
	for _, row := range []string{"receiver alone, 4 connections, req/s", "application commits/s, 8 clients, no trigger, no service (median of 2 rounds)",
		"application alone last / first, 8 clients (the machine's drift)",
		"application commits/s, 8 clients, service running, database.wake = notify (median of 2 rounds)",
		"ratio to no trigger and no service, 8 clients, database.wake = notify (median of 2 rounds)",
		"application commits/s, 8 clients, service running, database.wake = poll (median of 2 rounds)",
		"ratio to no trigger and no service, 8 clients, database.wake = poll (median of 2 rounds)",
		"application commits/s, 8 clients, capture trigger installed, no service (median of 2 rounds)",
		"ratio to no trigger and no service, 8 clients, capture trigger installed, no service (median of 2 rounds)"} {
		if got := value(tableCeilings, row, colValue); got <= 0 {
			t.Errorf("%s = %v, want > 0", row, got)
		}
	}
	for _, wake := range []string{"notify", "poll"} { // a second of reading may take under one clock tick
		if row := "service CPU s per 10k rows written, 8 clients, database.wake = " + wake + " (median of 2 rounds)"; value(tableCeilings, row, colValue) < 0 {
			t.Errorf("%s is negative", row)
		}
	}

	var md bytes.Buffer
	rep := report{Machine: machine{CPUs: 2}, Command: "fraiseql-bench", Runs: 1, Figures: f}
	if err := rep.markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| figure | " + one + " | " + batched + " |", "| missing | 0 | 0 |", "| duplicates | 0 | 0 |", "| 400 tx/s: p99 ms |", "| ceiling | value |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, md.String())
		}
	}
	for _, phase := range []string{"run1-postgres-only-drain-service", "run1-postgres-only-400txs-service",
		"run1-postgres-only-batch100-drain-service", "run1-postgres-only-batch100-400txs-service"} {
		for _, name := range []string{phase + ".pprof", phase + ".allocs.pprof"} {
			if st, err := os.Stat(filepath.Join(prof, name)); err != nil || st.Size() == 0 {
				t.Errorf("profile %s: %v", name, err)
			}
		}
	}
}
