package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, ms(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, ms(50)}, {0.99, ms(99)}, {1, ms(100)}, {0.001, ms(1)}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("percentile(1..100ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	if got := percentile([]time.Duration{ms(7)}, 0.99); got != ms(7) {
		t.Errorf("percentile of one = %v", got)
	}
	sum := summarize([]time.Duration{ms(3), ms(1), ms(2), ms(10)}) // unsorted input
	if sum.P50 != 2 || sum.P99 != 10 || sum.Max != 10 {
		t.Errorf("summarize = %+v, want p50 2, p99 10, max 10", sum)
	}
	t0 := time.Unix(1000, 0)
	arrived := map[string]time.Time{"a": t0.Add(ms(4)), "b": t0.Add(-ms(1)), "stray": t0}
	rows := map[string]written{"a": {t0.Add(-ms(2)), t0}, "b": {t0.Add(-ms(3)), t0}, "lost": {t0, t0}}
	got := sinceCommit(arrived, rows)
	slices.Sort(got)
	if !slices.Equal(got, []time.Duration{0, ms(4)}) { // b arrived before its commit's answer: 0; lost and stray are not pairs
		t.Errorf("sinceCommit = %v, want [0 4ms]", got)
	}
	got = commitTimes(rows)
	slices.Sort(got)
	if !slices.Equal(got, []time.Duration{0, ms(2), ms(3)}) {
		t.Errorf("commitTimes = %v, want [0 2ms 3ms]", got)
	}
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{0.9, 0.7, 0.8}, 0.8}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
	if got := cpuPer10k(250, 100, 5000); got != 5 { // 2.5 s for 5000 events
		t.Errorf("cpuPer10k = %v, want 5", got)
	}
	if got := cpuPer10k(250, 100, 0); got != 0 {
		t.Errorf("cpuPer10k of no events = %v, want 0", got)
	}
}

func TestParseProc(t *testing.T) {
	t.Parallel()
	// A command name with a space and a parenthesis, as the kernel writes it.
	stat := "4242 (fraiseql (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 731 209 0 0 20 0 9 0 123456 1234567 8901 18446744073709551615"
	got, err := parseStatCPU(stat)
	if err != nil || got != 731+209 {
		t.Errorf("parseStatCPU = %d, %v, want 940", got, err)
	}
	if _, err := parseStatCPU("4242 (x) S 1 2"); err == nil {
		t.Error("parseStatCPU of a short line: no error")
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("parseStatCPU without a command name: no error")
	}
	status := "Name:\tfraiseql-observ\nVmPeak:\t 1300000 kB\nVmSize:\t 1200000 kB\nVmHWM:\t   54321 kB\nVmRSS:\t   40000 kB\n"
	if got, err := parseStatusHWM(status); err != nil || got != 54321 {
		t.Errorf("parseStatusHWM = %d, %v, want 54321", got, err)
	}
	if _, err := parseStatusHWM("Name:\tx\n"); err == nil {
		t.Error("parseStatusHWM without VmHWM: no error")
	}
	if _, err := parseStatusHWM("VmHWM:\t 12 MB\n"); err == nil {
		t.Error("parseStatusHWM with another unit: no error")
	}
	procStat := "cpu  1000 20 300 9000 50 7 8 9 0 0\ncpu0 500 10 150 4500 25 3 4 4 0 0\n"
	if got, err := parseMachineBusy(procStat); err != nil || got != 1000+20+300+7+8+9 {
		t.Errorf("parseMachineBusy = %d, %v, want 1344", got, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, err := parseMachineBusy(bad); err == nil {
			t.Errorf("parseMachineBusy(%q): no error", bad)
		}
	}
	// This process's own files parse.
	if _, err := machineBusy(); err != nil {
		t.Errorf("machineBusy: %v", err)
	}
	if _, err := procCPUTicks(os.Getpid()); err != nil {
		t.Errorf("procCPUTicks(self): %v", err)
	}
	if kb, err := procPeakRSS(os.Getpid()); err != nil || kb <= 0 {
		t.Errorf("procPeakRSS(self) = %d, %v", kb, err)
	}
	if la := loadAvg(); len(strings.Fields(la)) != 3 {
		t.Errorf("loadAvg = %q, want three numbers", la)
	}
}

func TestReportRendering(t *testing.T) {
	t.Parallel()
	f := newFigures()
	f.add(tableTopologies, "drain 100 events, events/s", "postgres-only", 14123.4)
	f.add(tableTopologies, "drain 100 events, events/s", "postgres-redis", 6543.2)
	f.add(tableTopologies, "400 tx/s: p99 ms", "postgres-only", 6.234)
	f.count(tableTopologies, "missing", "postgres-only", 0)
	f.add(tableCeilings, "receiver alone, 32 connections, req/s", colValue, 27000)
	// A second run.
	f.add(tableTopologies, "drain 100 events, events/s", "postgres-only", 15000)
	f.add(tableTopologies, "400 tx/s: p99 ms", "postgres-only", 6.234)
	f.count(tableTopologies, "missing", "postgres-only", 0)
	f.add(tableCeilings, "receiver alone, 32 connections, req/s", colValue, 26000.4)
	rep := report{Machine: machine{CPUs: 2, CPUModel: "Test CPU", GoVersion: "go1.26", PostgreSQL: "15.2"}, Command: "fraiseql-bench -runs 2", Runs: 2, Figures: f}
	var b bytes.Buffer
	if err := rep.markdown(&b); err != nil {
		t.Fatal(err)
	}
	want := "Machine: 2 CPUs (Test CPU), go1.26, PostgreSQL 15.2. 2 runs, min–max per cell.\n" +
		"Command: `fraiseql-bench -runs 2`\n" +
		"\n| figure | postgres-only | postgres-redis |\n|---|---|---|\n" +
		"| drain 100 events, events/s | 14123–15000 | 6543 |\n" +
		"| 400 tx/s: p99 ms | 6.23 | – |\n" +
		"| missing | 0 | – |\n" +
		"\n| ceiling | value |\n|---|---|\n" +
		"| receiver alone, 32 connections, req/s | 26000–27000 |\n"
	if b.String() != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := rep.json(&b); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Machine machine      `json:"machine"`
		Runs    int          `json:"runs"`
		Figures []jsonFigure `json:"figures"`
	}
	if err := json.Unmarshal(b.Bytes(), &out); err != nil {
		t.Fatalf("json output: %v\n%s", err, b.String())
	}
	if out.Runs != 2 || out.Machine.CPUs != 2 || len(out.Figures) != 5 {
		t.Fatalf("json = %+v", out)
	}
	if g := out.Figures[0]; g.Figure != "drain 100 events, events/s" || g.Column != "postgres-only" || g.Min != 14123.4 || g.Max != 15000 || len(g.Values) != 2 {
		t.Errorf("first json figure = %+v", g)
	}
	if g := out.Figures[0]; g.Median != 14561.7 {
		t.Errorf("first json figure's median = %v, want 14561.7 (the mean of the middle two)", g.Median)
	}

	// A third run: the cells that vary show the median too.
	f.add(tableTopologies, "drain 100 events, events/s", "postgres-only", 20000)
	f.add(tableTopologies, "400 tx/s: p99 ms", "postgres-only", 6.234)
	rep.Runs = 3
	b.Reset()
	if err := rep.markdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"3 runs, min–max and median per cell.", "| drain 100 events, events/s | 14123–20000 (median 15000) | 6543 |", "| 400 tx/s: p99 ms | 6.23 | – |"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("markdown of three runs lacks %q:\n%s", line, b.String())
		}
	}
	for _, c := range []struct {
		v    float64
		want string
	}{{12345.6, "12346"}, {45.67, "45.7"}, {1.234, "1.23"}, {0, "0.00"}} {
		if got := formatNumber(c.v); got != c.want {
			t.Errorf("formatNumber(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	opt, asJSON, err := parseFlags([]string{"-topologies", "postgres-only,distributed", "-rates", "400, 2000", "-clients", "", "-json"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !asJSON || strings.Join(opt.Topologies, ",") != "postgres-only,distributed" || len(opt.Rates) != 2 || opt.Rates[1] != 2000 || len(opt.Clients) != 0 {
		t.Errorf("options = %+v json %v", opt, asJSON)
	}
	if opt.Rows != 100000 || opt.Duration != 10*time.Second || opt.Runs != 1 || len(opt.Topologies) != 2 || !slices.Equal(opt.Batches, []int{0}) || opt.Wake != wakeNotify || opt.WriteRounds != 3 {
		t.Errorf("defaults = %+v", opt)
	}
	if got := opt.column("postgres-only", 0); got != "postgres-only" {
		t.Errorf("column without -batch = %q, want the topology alone", got)
	}
	opt, _, err = parseFlags([]string{"-batch", "0, 100"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(opt.Batches, []int{0, 100}) || opt.column("distributed", 0) != "distributed, one per request" ||
		opt.column("distributed", 100) != "distributed, batches of 100" {
		t.Errorf("-batch 0,100: batches %v, columns %q, %q", opt.Batches, opt.column("distributed", 0), opt.column("distributed", 100))
	}
	if opt, _, err = parseFlags([]string{"-wake", "poll"}, &stderr); err != nil || opt.Wake != wakePoll || opt.CeilingObserver != ceilingOther {
		t.Errorf("-wake poll: %v, wake %q, ceiling observer %q", err, opt.Wake, opt.CeilingObserver)
	}
	if opt, _, err = parseFlags([]string{"-ceiling-observer", "every"}, &stderr); err != nil || opt.CeilingObserver != ceilingEvery {
		t.Errorf("-ceiling-observer every: %v, %q", err, opt.CeilingObserver)
	}
	opt, _, err = parseFlags([]string{"-batch", "50"}, &stderr)
	if err != nil || opt.column("postgres-only", 50) != "postgres-only, batches of 50" {
		t.Errorf("-batch 50: %v, column %q", err, opt.column("postgres-only", 50))
	}
	for _, bad := range [][]string{
		{"-topologies", "postgres-only,kafka"},
		{"-rates", "400,fast"},
		{"-rates", "0"},
		{"-rows", "0"},
		{"-runs", "0"},
		{"-write-rounds", "0"},
		{"-duration", "1ms"},
		{"-batch", "-1"},
		{"-batch", "10001"},
		{"-batch", "0,0"},
		{"-batch", ""},
		{"-batch", "many"},
		{"-wake", "listen"},
		{"-ceiling-observer", "all"},
		{"extra"},
	} {
		_, _, err := parseFlags(bad, &stderr)
		var u usageError
		if err == nil || !errors.As(err, &u) {
			t.Errorf("parseFlags(%q) = %v, want a usage error", bad, err)
		}
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// observerBinary builds fraiseql-observer once per test binary.
func observerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fraiseql-bench-test-")
		if err != nil {
			binErr = err
			return
		}
		binPath, binErr = build(context.Background(), dir)
	})
	if binErr != nil {
		t.Fatalf("build fraiseql-observer: %v", binErr)
	}
	return binPath
}

// TestConfigValidates runs the binary's validate-config on the
// configuration of every process of every topology.
func TestConfigValidates(t *testing.T) {
	t.Parallel()
	bin := observerBinary(t)
	dir := t.TempDir()
	for _, v := range []struct {
		topo  string
		batch int
	}{{topoPostgresOnly, 0}, {topoPostgresRedis, 0}, {topoDistributed, 0}, {topoPostgresOnly, 100}, {topoDistributed, 7}} {
		topo := v.topo
		product, names, roles := processes(topo)
		for i, name := range names {
			c := serviceConfig{Topology: product, Role: roles[i], DatabaseURL: "postgres://postgres@127.0.0.1:5432/bench_x?sslmode=disable",
				Listen: "127.0.0.1:18079", HookURL: "http://127.0.0.1:18080/hook", BatchEvents: v.batch, Wake: []string{wakeNotify, wakePoll}[i%2]}
			if topo != topoPostgresOnly {
				c.RedisURL, c.RedisPrefix = "redis://127.0.0.1:6379/0", "bench_x:"
			}
			if topo == topoDistributed {
				c.NATSURL, c.Stream, c.Subject, c.Durable = "nats://127.0.0.1:4222", "BENCH_X", "bench.bench_x", "bench_x"
			}
			if i == 0 && topo == topoPostgresOnly && v.batch == 0 {
				c.HookURL = "" // the write ceiling's observer that matches nothing
			}
			if i == 0 && topo == topoDistributed && v.batch == 0 {
				c.HookURL, c.EveryEntity = "", true // the write ceiling's observer of every entity, whose condition no row meets
			}
			p, err := c.write(dir, fmt.Sprintf("%s-%d-%s", topo, v.batch, name))
			if err != nil {
				t.Fatal(err)
			}
			out, err := runCommand(t.Context(), bin, "token", p, "validate-config", "--print")
			if err != nil {
				t.Errorf("%s %s: %v", topo, name, err)
				continue
			}
			for _, want := range []string{"topology = '" + product + "'", "listen = '127.0.0.1:18079'", "pprof = true", "wake = '" + c.Wake + "'"} {
				if !strings.Contains(out, want) {
					t.Errorf("%s %s: effective configuration lacks %q:\n%s", topo, name, want, out)
				}
			}
			if c.EveryEntity && (!strings.Contains(out, "entity = '*'") || !strings.Contains(out, "condition = 'total < 0'")) {
				t.Errorf("%s %s: the observer of every entity with its condition not in the effective configuration:\n%s", topo, name, out)
			}
			if roles[i] != "" && !strings.Contains(out, "role = '"+roles[i]+"'") {
				t.Errorf("%s %s: role %s not in the effective configuration", topo, name, roles[i])
			}
			// The batch table: max_events as asked, the other keys at
			// their defaults (which the effective configuration shows);
			// no table without -batch.
			if hasBatch := strings.Contains(out, "[observers.actions.batch]"); hasBatch != (v.batch > 0 && c.HookURL != "") {
				t.Errorf("%s %s batch %d: batch table in the effective configuration: %v:\n%s", topo, name, v.batch, hasBatch, out)
			} else if hasBatch {
				_, table, _ := strings.Cut(out, "[observers.actions.batch]\n")
				table, _, _ = strings.Cut(table, "\n\n")
				want := fmt.Sprintf("max_bytes = 1048576\nmax_events = %d\nmax_wait = '20ms'", v.batch)
				if got := strings.TrimSpace(table); got != want {
					t.Errorf("%s %s batch %d: batch table %q, want %q", topo, name, v.batch, got, want)
				}
			}
			if topo == topoDistributed && (!strings.Contains(out, "name = 'BENCH_X'") || !strings.Contains(out, "key_prefix = 'bench_x:'")) {
				t.Errorf("%s %s: stream or key prefix not in the effective configuration:\n%s", topo, name, out)
			}
		}
	}
	// -batch's bound is the product's: the largest batch validates, one
	// more is refused.
	for _, c := range []struct {
		n  int
		ok bool
	}{{maxBatchEvents, true}, {maxBatchEvents + 1, false}} {
		cfg := serviceConfig{Topology: "postgres-only", DatabaseURL: "postgres://postgres@127.0.0.1:5432/bench_x?sslmode=disable",
			Listen: "127.0.0.1:18079", HookURL: "http://127.0.0.1:18080/hook", BatchEvents: c.n}
		p, err := cfg.write(dir, fmt.Sprintf("bound-%d", c.n))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := runCommand(t.Context(), bin, "token", p, "validate-config"); (err == nil) != c.ok {
			t.Errorf("validate-config with max_events = %d: %v, want valid %v", c.n, err, c.ok)
		}
	}
	// And a configuration the binary refuses is reported as an error.
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("topology = \"nope\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCommand(t.Context(), bin, "token", bad, "validate-config"); err == nil {
		t.Error("validate-config of a bad configuration: no error")
	}
}

// testReceiver starts a receiver (closed with the test) and returns it
// with a function that posts a body to it and expects 204.
func testReceiver(t *testing.T) (*receiver, func(body string)) {
	t.Helper()
	r, err := startReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r, func(body string) {
		t.Helper()
		resp, err := http.Post(r.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// TestReceiverCounts: duplicates, missing and unexpected events are
// counted per phase, latencies come from t_ns, and the hammer counts
// requests.
func TestReceiverCounts(t *testing.T) {
	t.Parallel()
	r, post := testReceiver(t)
	post(`{"id":"old","data":{}}`)
	r.reset() // a new phase forgets the old one
	sent := time.Now().Add(-5 * time.Millisecond).UnixNano()
	post(fmt.Sprintf(`{"id":"a","data":{"t_ns":%d}}`, sent))
	post(`{"id":"a","data":{}}`)
	post(`{"id":"b","data":{}}`)
	post(`{"id":"stray","data":{}}`)
	post(`not json`)
	res := r.result([]string{"a", "b", "c"})
	if res.Delivered != 2 || res.Duplicates != 1 || res.Missing != 1 || res.Unexpected != 2 {
		t.Errorf("result = %+v, want delivered 2, duplicates 1, missing 1, unexpected 2", res)
	}
	if len(res.Latencies) != 1 || res.Latencies[0] < 5*time.Millisecond || res.Latencies[0] > time.Minute {
		t.Errorf("latencies = %v, want one of at least 5ms", res.Latencies)
	}
	if len(res.Arrived) != 3 || !res.Arrived["a"].Before(res.Arrived["b"]) {
		t.Errorf("arrived = %v, want the first arrival of a, b and stray (a's first before b)", res.Arrived)
	}
	if first := res.first(); !first.Equal(res.Arrived["a"]) {
		t.Errorf("first = %v, want a's first arrival %v", first, res.Arrived["a"])
	}
	if first := (phaseResult{}).first(); !first.IsZero() {
		t.Errorf("first of a phase without arrivals = %v, want zero", first)
	}
	if r.distinct() != 3 {
		t.Errorf("distinct = %d, want 3", r.distinct())
	}
	if res.Malformed != 1 || res.Requests != 5 {
		t.Errorf("malformed %d, requests %d, want 1 and 5", res.Malformed, res.Requests)
	}
	before := r.reqs.Load()
	rps, err := hammer(t.Context(), r.URL, 2, 100*time.Millisecond)
	if err != nil || rps <= 0 {
		t.Fatalf("hammer = %v, %v", rps, err)
	}
	if r.reqs.Load() <= before {
		t.Error("the hammer's requests did not reach the receiver")
	}
}

// TestReceiverBatches: a batch document counts each of its events (ids,
// duplicates, latency from each event's own t_ns, one arrival for all);
// a malformed batch is counted as malformed, answered, and counts none of
// its events.
func TestReceiverBatches(t *testing.T) {
	t.Parallel()
	r, post := testReceiver(t)
	now := time.Now()
	ev := func(id string, ago time.Duration) string {
		return fmt.Sprintf(`{"id":%q,"event_type":"INSERT","entity_type":"Order","data":{"t_ns":%d,"type":"x"}}`, id, now.Add(-ago).UnixNano())
	}
	post(`{"type":"batch","batch_id":"batch_1","count":3,"events":[` + ev("a", 50*time.Millisecond) + "," + ev("b", 20*time.Millisecond) + "," + ev("c", 20*time.Millisecond) + `]}`)
	post(`{"type":"batch","batch_id":"batch_2","count":1,"events":[` + ev("c", 10*time.Millisecond) + `]}`) // c again: a duplicate
	post(ev("d", 10*time.Millisecond))                                                                      // one event alone still counts
	for _, bad := range []string{
		`{"type":"batch","batch_id":"batch_3","count":2,"events":[` + ev("x", 0) + `]}`, // count disagrees
		`{"type":"batch","batch_id":"batch_4","count":1,"events":[{"data":{}}]}`,        // an event without an id
		`{"type":"batch","batch_id":"batch_5","count":1,"events":["not an event"]}`,     // an event that is not an object
		`{"type":"batch","batch_id":"batch_6","count":0,"events":[]}`,                   // empty
		`{"type":"batch","batch_id":"batch_7","count":1,"events":[` + ev("y", 0) + `,`,  // truncated
	} {
		post(bad)
	}
	res := r.result([]string{"a", "b", "c", "d", "e"})
	if res.Delivered != 4 || res.Duplicates != 1 || res.Missing != 1 || res.Malformed != 5 || res.Unexpected != 5 || res.Requests != 8 {
		t.Errorf("result = %+v, want delivered 4, duplicates 1, missing 1 (e), malformed 5 (also unexpected), 8 requests", res)
	}
	if len(res.Latencies) != 5 {
		t.Fatalf("latencies = %v, want one per event received (5)", res.Latencies)
	}
	lat := slices.Clone(res.Latencies)
	slices.Sort(lat)
	if lat[0] < 10*time.Millisecond || lat[4] < 50*time.Millisecond || lat[4] > time.Minute {
		t.Errorf("latencies = %v, want each event's own: from 10ms up, the largest at least 50ms", res.Latencies)
	}
	if r.distinct() != 4 {
		t.Errorf("distinct = %d, want 4 (no id of a malformed batch)", r.distinct())
	}
}

func TestParseBody(t *testing.T) {
	t.Parallel()
	evs, err := parseBody([]byte(`{"type":"batch","batch_id":"b","count":2,"events":[{"id":"a","data":{"t_ns":5}},{"id":"b","data":{}}]}`))
	if err != nil || len(evs) != 2 || evs[0].ID != "a" || evs[0].Data.T != 5 || evs[1].ID != "b" || evs[1].Data.T != 0 {
		t.Errorf("batch: %+v, %v", evs, err)
	}
	evs, err = parseBody([]byte(`{"id":"a","data":{"t_ns":7}}`))
	if err != nil || len(evs) != 1 || evs[0].ID != "a" || evs[0].Data.T != 7 {
		t.Errorf("one event: %+v, %v", evs, err)
	}
	for _, bad := range []string{``, `null`, `[]`, `{"data":{}}`, `{"type":"batch","count":1}`, `{"type":"batch","count":1,"events":[{"id":""}]}`} {
		if evs, err := parseBody([]byte(bad)); err == nil {
			t.Errorf("parseBody(%q) = %+v, want an error", bad, evs)
		}
	}
}

// TestWriteTrace: one line per row written, in the order the inserts
// started, the arrival empty for a row that never arrived.
func TestWriteTrace(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	rows := map[string]written{
		"late":  {Start: t0.Add(2 * time.Millisecond), Committed: t0.Add(3 * time.Millisecond)},
		"early": {Start: t0, Committed: t0.Add(time.Millisecond)},
	}
	path := filepath.Join(t.TempDir(), "trace.csv")
	if err := writeTrace(path, rows, map[string]time.Time{"early": t0.Add(4 * time.Millisecond), "stray": t0}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "id,start_ns,committed_ns,arrived_ns\n" +
		"early,1000000000000,1000001000000,1000004000000\n" +
		"late,1000002000000,1000003000000,\n"
	if string(got) != want {
		t.Errorf("trace =\n%s\nwant\n%s", got, want)
	}
	if err := writeTrace(filepath.Join(path, "under-a-file.csv"), rows, nil); err == nil || !strings.Contains(err.Error(), "-trace") {
		t.Errorf("writeTrace under a file: %v, want an error naming -trace", err)
	}
}

// TestDrainShares: each run's drain of the other topologies is divided by
// postgres-only's of the same run and webhook variant; without a
// postgres-only drain nothing is recorded.
func TestDrainShares(t *testing.T) {
	t.Parallel()
	opt := options{Rows: 100, Topologies: allTopologies, Batches: []int{0, 100}}
	h := &harness{opt: opt, figs: newFigures()}
	drains := [][]float64{ // per run, as measured: each topology one per request, then in batches of 100
		{40000, 80000, 30000, 60000, 10000, 20000},
		{20000, 50000, 18000, 45000, 5000, 25000},
	}
	for run, d := range drains {
		h.runIdx = run
		i := 0
		for _, topo := range opt.Topologies {
			for _, batch := range opt.Batches {
				h.figs.add(tableTopologies, opt.drainRow(), opt.column(topo, batch), d[i])
				i++
			}
		}
		h.drainShares()
	}
	want := map[string][]float64{
		opt.column(topoPostgresRedis, 0):   {30000.0 / 40000, 18000.0 / 20000},
		opt.column(topoDistributed, 0):     {10000.0 / 40000, 5000.0 / 20000},
		opt.column(topoPostgresRedis, 100): {60000.0 / 80000, 45000.0 / 50000},
		opt.column(topoDistributed, 100):   {20000.0 / 80000, 25000.0 / 50000},
	}
	for col, w := range want {
		if got := h.figs.vals[figKey{tableTopologies, drainShareRow, col}]; fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s: shares %v, want %v", col, got, w)
		}
	}
	if got := h.figs.vals[figKey{tableTopologies, drainShareRow, opt.column(topoPostgresOnly, 0)}]; got != nil {
		t.Errorf("postgres-only has shares %v", got)
	}

	alone := &harness{opt: options{Rows: 100, Topologies: []string{topoPostgresRedis}, Batches: []int{0}}, figs: newFigures()}
	alone.figs.add(tableTopologies, alone.opt.drainRow(), alone.opt.column(topoPostgresRedis, 0), 30000)
	alone.drainShares()
	if rows := alone.figs.rows[tableTopologies]; len(rows) != 1 {
		t.Errorf("without postgres-only: rows %q, want the drain alone", rows)
	}
}

// The children listen on port 0; the harness reads the port they got
// from their JSON log.
func TestLoggedAdminPort(t *testing.T) {
	t.Parallel()
	log := []byte(`{"time":"2026-11-29T12:00:00Z","level":"INFO","msg":"tracing on"}
not json
{"time":"2026-11-29T12:00:00Z","level":"INFO","msg":"admin http listening","addr":"127.0.0.1:41234"}
`)
	if port, ok := loggedAdminPort(log); !ok || port != 41234 {
		t.Errorf("loggedAdminPort = %d, %v; want 41234, true", port, ok)
	}
	for _, l := range []string{``, `{"msg":"admin http listening","addr":"127.0.0.1"}`, `{"msg":"admin http listening","addr":"127.0.0.1:0"}`, `{"msg":"started","addr":"127.0.0.1:80"}`} {
		if port, ok := loggedAdminPort([]byte(l)); ok {
			t.Errorf("loggedAdminPort(%q) = %d, want none", l, port)
		}
	}
}

func TestRotated(t *testing.T) {
	t.Parallel()
	vs := []string{"notify", "poll", "trigger only"}
	for k, want := range [][]string{
		{"notify", "poll", "trigger only"},
		{"poll", "trigger only", "notify"},
		{"trigger only", "notify", "poll"},
		{"notify", "poll", "trigger only"},
	} {
		if got := rotated(vs, k); !slices.Equal(got, want) {
			t.Errorf("rotated(%v, %d) = %v, want %v", vs, k, got, want)
		}
	}
	if got := rotated(nil, 2); got != nil {
		t.Errorf("rotated(nil, 2) = %v, want nil", got)
	}
	if !slices.Equal(vs, []string{"notify", "poll", "trigger only"}) {
		t.Errorf("rotated changed its argument: %v", vs)
	}
}
