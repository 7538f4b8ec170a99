// Command fraiseql-bench is the end-to-end load harness: it builds (or
// takes with -bin) the real fraiseql-observer binary, runs it as child
// processes per topology against the machine's PostgreSQL, Redis and NATS
// (each run in a database, Redis key prefix and JetStream stream of its
// own, removed at the end), delivers to a webhook receiver of its own, and
// prints one markdown table: drain rate, latency at steady rates (from
// before the writer's insert, and from its commit's answer), peak RSS,
// CPU per 10k events, duplicates and missing events, next to the
// ceilings measured in the same run (the receiver's request rate,
// the application's commit rate with and without the capture).
//
//	make bench-e2e ARGS='-runs 2'
//	go run ./cmd/fraiseql-bench -topologies postgres-only -rows 20000 -pprof /tmp/prof
//	go run ./cmd/fraiseql-bench -batch 0,100   # each topology unbatched and in batches of 100
//
// It is an outer-ring tool: it treats the service as a black box (its
// binary, configuration file and admin API) and talks to the services
// directly only to set up and tear down what a run owns.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	var usage usageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "fraiseql-bench:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "fraiseql-bench:", err)
		os.Exit(1)
	}
}

// usageError is a bad flag value.
type usageError struct{ error }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// parseInts reads a comma-separated list of positive integers.
func parseInts(flagName, s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, usageError{fmt.Errorf("-%s: %q is not a positive integer", flagName, f)}
		}
		out = append(out, n)
	}
	return out, nil
}

// maxBatchEvents is the product's bound on batch.max_events
// (domain.MaxBatchEvents; the harness imports nothing of the service).
const maxBatchEvents = 10000

// parseBatches reads -batch: a comma-separated list of distinct webhook
// variants, 0 (one event per request) or a batch.max_events.
func parseBatches(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > maxBatchEvents {
			return nil, usageError{fmt.Errorf("-batch: %q is not 0 or a batch size of 1 to %d", f, maxBatchEvents)}
		}
		if slices.Contains(out, n) {
			return nil, usageError{fmt.Errorf("-batch: %d twice", n)}
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, usageError{errors.New("-batch: no variant (0 is one event per request)")}
	}
	return out, nil
}

// parseFlags turns the command line into options.
func parseFlags(args []string, stderr io.Writer) (options, bool, error) {
	fs := flag.NewFlagSet("fraiseql-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt options
	var topologies, rates, clients, batches string
	var asJSON bool
	fs.StringVar(&opt.Bin, "bin", "", "the fraiseql-observer binary to measure (default: build ./cmd/fraiseql-observer)")
	fs.StringVar(&topologies, "topologies", strings.Join(allTopologies, ","), "comma-separated: "+strings.Join(allTopologies, ", "))
	fs.IntVar(&opt.Rows, "rows", 100000, "backlog rows written before the service starts (the drain)")
	fs.DurationVar(&opt.Duration, "duration", 10*time.Second, "length of each steady-rate run")
	fs.StringVar(&rates, "rates", "400,1000,2000", "steady rates, transactions (one row each) per second; CPU per event is measured at the first")
	fs.IntVar(&opt.Runs, "runs", 1, "repeat everything N times; cells show min–max")
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of the markdown table")
	fs.StringVar(&opt.PprofDir, "pprof", "", "write CPU and allocation profiles of the service (drain, first rate) into this directory")
	fs.DurationVar(&opt.Profile, "pprof-duration", 10*time.Second, "length of each profile")
	fs.StringVar(&opt.TraceDir, "trace", "", "write each steady phase's rows as CSV into this directory: id, and the Unix ns of\n"+
		"the insert's start, its return (after the commit) and the first arrival (empty: never arrived)")
	fs.StringVar(&clients, "clients", "8,16", "pgbench clients of the write ceiling (empty: skip it)")
	fs.DurationVar(&opt.WriteLength, "write-duration", 3*time.Second, "length of each pgbench run")
	fs.IntVar(&opt.WriteRounds, "write-rounds", 3, "rounds of the write ceiling per client count: the application alone, then with the\n"+
		"service under each wake, alternated; the ratios are the median of the rounds'")
	fs.IntVar(&opt.HammerConns, "hammer-conns", 32, "connections hammering the receiver for its ceiling")
	fs.DurationVar(&opt.HammerLength, "hammer-duration", 3*time.Second, "length of the receiver's ceiling run")
	fs.IntVar(&opt.Writers, "writers", 8, "connections of the steady-rate writer")
	fs.StringVar(&batches, "batch", "0", "webhook variants, comma-separated: 0 one event per request, N batches of up to N events\n"+
		"([observers.actions.batch] max_events = N); two or more (e.g. 0,100) measure each topology once per variant, side by side")
	fs.StringVar(&opt.Wake, "wake", wakeNotify, "database.wake of the measured topologies: notify or poll (the write ceiling measures both)")
	fs.StringVar(&opt.CeilingObserver, "ceiling-observer", ceilingOther, "the service's observer during the write ceiling: "+ceilingOther+
		" (an entity pgbench does not write: its rows are skipped in the read's query) or "+ceilingEvery+
		" (every entity, a condition no row meets: each row is read, decoded and evaluated)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return opt, false, err
		}
		return opt, false, usageError{err}
	}
	if fs.NArg() > 0 {
		return opt, false, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	for t := range strings.SplitSeq(topologies, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if !slices.Contains(allTopologies, t) {
			return opt, false, usageError{fmt.Errorf("-topologies: unknown %q (want %s)", t, strings.Join(allTopologies, ", "))}
		}
		opt.Topologies = append(opt.Topologies, t)
	}
	var err error
	if opt.Rates, err = parseInts("rates", rates); err != nil {
		return opt, false, err
	}
	if opt.Clients, err = parseInts("clients", clients); err != nil {
		return opt, false, err
	}
	if opt.Batches, err = parseBatches(batches); err != nil {
		return opt, false, err
	}
	switch {
	case opt.Wake != wakeNotify && opt.Wake != wakePoll:
		return opt, false, usageError{fmt.Errorf("-wake: %q is not %s or %s", opt.Wake, wakeNotify, wakePoll)}
	case opt.CeilingObserver != ceilingOther && opt.CeilingObserver != ceilingEvery:
		return opt, false, usageError{fmt.Errorf("-ceiling-observer: %q is not %s or %s", opt.CeilingObserver, ceilingOther, ceilingEvery)}
	case opt.Rows < 1:
		return opt, false, usageError{errors.New("-rows must be at least 1")}
	case opt.Runs < 1 || opt.WriteRounds < 1:
		return opt, false, usageError{errors.New("-runs and -write-rounds must be at least 1")}
	case opt.Duration < 100*time.Millisecond:
		return opt, false, usageError{errors.New("-duration must be at least 100ms")}
	case opt.Profile < time.Second:
		return opt, false, usageError{errors.New("-pprof-duration must be at least 1s")}
	case opt.HammerConns < 1 || opt.Writers < 1:
		return opt, false, usageError{errors.New("-hammer-conns and -writers must be at least 1")}
	case opt.HammerLength < 100*time.Millisecond || opt.WriteLength < time.Second:
		return opt, false, usageError{errors.New("-hammer-duration must be at least 100ms and -write-duration at least 1s")}
	}
	opt.Services = services{
		DatabaseURL: envOr("FRAISEQL_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		RedisURL:    envOr("FRAISEQL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
		NATSURL:     envOr("FRAISEQL_TEST_NATS_URL", "nats://127.0.0.1:4222"),
	}
	return opt, asJSON, nil
}

// run is main without the exit: the harness as the tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opt, asJSON, err := parseFlags(args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for name, dir := range map[string]string{"-pprof": opt.PprofDir, "-trace": opt.TraceDir} {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	h, err := newHarness(opt, log)
	if err != nil {
		return err
	}
	defer h.close()
	if h.opt.Bin == "" {
		if h.opt.Bin, err = build(ctx, h.dir); err != nil {
			return err
		}
	}
	pg, err := serverVersion(ctx, opt.Services.DatabaseURL)
	if err != nil {
		return err
	}
	loadBefore := loadAvg()
	if err := h.run(ctx); err != nil {
		return err
	}
	rep := report{
		Machine: machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), GoVersion: runtime.Version(), PostgreSQL: pg,
			LoadBefore: loadBefore, LoadAfter: loadAvg()},
		Command: strings.Join(append([]string{filepath.Base(args[0])}, args[1:]...), " "),
		Runs:    opt.Runs,
		Figures: h.figs,
	}
	if asJSON {
		return rep.json(stdout)
	}
	return rep.markdown(stdout)
}

// build compiles ./cmd/fraiseql-observer of the module in the working
// directory into dir.
func build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "fraiseql-observer")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/fraiseql/fraiseql-observer/cmd/fraiseql-observer")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fraiseql-observer (or pass -bin): %w\n%s", err, out)
	}
	return bin, nil
}
