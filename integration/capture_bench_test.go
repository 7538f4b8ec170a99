package integration

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/internal/pgbench"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// BenchmarkCaptureCommitRate measures, in one run, what the capture costs
// the application: its single-row commit rate on the change log (pgbench,
// one INSERT per transaction, 8 and 16 clients) in four set-ups,
// interleaved a, b, c, d, a, b, c, d, ... so that the load of a shared
// machine spreads over all of them:
//
//	a  no trigger on the change log and no service: the application alone
//	b  the trigger of earlier versions (a NOTIFY per statement), with the
//	   service running and draining the table
//	c  the current capture (NOTIFY only while the reader waits), with the
//	   service running and draining the table
//	d  database.wake = "poll": no trigger (the service's migrate drops
//	   it), with the service running and draining the table by polling:
//	   what reading alone costs, the floor for c
//
// The service is the real one (postgres-only topology, default tuning but
// for a 100ms checkpoint interval): it reads, matches and checkpoints every
// row; its observer matches none of them, so the figures are the capture's
// and the reading's cost, not that of any action. The service runs in this
// process: its CPU time per 10k rows is reported too. Before each pgbench
// run the change log is emptied; after a b, c or d run the time the reader
// needed to read the last row is recorded (short when the reader keeps up
// while the application writes).
//
//	go test -run '^$' -bench CaptureCommitRate -benchtime 1x ./integration/
//
// FRAISEQL_BENCH_CAPTURE_REPS (default 3) sets the repetitions and
// FRAISEQL_BENCH_CAPTURE_SECONDS (default 3) each pgbench run's length.
// pgbench is looked up on PATH, then in `pg_config --bindir`.
func BenchmarkCaptureCommitRate(b *testing.B) {
	pgbenchBin := findPgbench(b)
	reps := envPositive(b, "FRAISEQL_BENCH_CAPTURE_REPS", 3)
	seconds := envPositive(b, "FRAISEQL_BENCH_CAPTURE_SECONDS", 3)
	clients := []int{8, 16}
	variants := []string{"a", "b", "c", "d"}

	for range b.N {
		b.StopTimer()
		bench := newCaptureBench(b, pgbenchBin, seconds)
		results := map[string][]captureRun{} // variant/clients -> one run per repetition
		for rep := range reps {
			for _, v := range variants {
				bench.use(b, v)
				for _, n := range clients {
					run := bench.run(b, n)
					results[captureKey(v, n)] = append(results[captureKey(v, n)], run)
					b.Logf("rep %d %s %2d clients: %6.0f tx/s, %d notifications for %d commits, reader at the end %v after, service CPU %.2f s per 10k rows",
						rep+1, v, n, run.tps, run.notifications, run.commits, run.catchUp.Round(time.Millisecond), run.cpu.Seconds()*10000/float64(max(run.commits, 1)))
				}
			}
		}
		bench.use(b, "")
		report(b, results, variants, clients, reps)
	}
}

// captureRun is one pgbench run.
type captureRun struct {
	tps           float64
	commits       int64
	notifications int           // sent on the channel during the run
	cpu           time.Duration // this process's CPU time (the service) from the run's start to the reader's catch-up
	catchUp       time.Duration // from pgbench's end until the reader had every row (b, c)
}

func captureKey(variant string, clients int) string { return fmt.Sprintf("%s%d", variant, clients) }

// oldNotifyFunction is the trigger function of the first versions;
// oldNotifyTrigger their trigger, without a WHEN clause.
const oldNotifyFunction = `CREATE OR REPLACE FUNCTION observer.notify_change_log() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM pg_notify(TG_ARGV[0], '');
	RETURN NULL;
END
$fn$`

const oldNotifyTrigger = `CREATE TRIGGER ` + pgbench.TriggerName + ` AFTER INSERT ON core.tb_entity_change_log
	FOR EACH STATEMENT EXECUTE FUNCTION observer.notify_change_log('fraiseql_events')`

// captureBench holds one database, the pgbench script and, for b and c,
// the running service.
type captureBench struct {
	bundle  *testBundle
	cfg     config.Config
	pgbench string
	script  string
	seconds int
	app     *runningApp
	appWake string // the app's database.wake
	counter *channelCounter
}

func newCaptureBench(b *testing.B, pgbenchBin string, seconds int) *captureBench {
	b.Helper()
	bundle := setup(b)
	cfg := bundle.config(config.ObserverConfig{
		Name: "unmatched", Entity: "Unmatched", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{{Type: "log"}},
	})
	// The product's defaults, but for a checkpoint saved often enough to
	// time the catch-up; the trigger is managed by the benchmark.
	defaults := config.Defaults()
	cfg.Database.PollInterval = defaults.Database.PollInterval
	cfg.Database.MaxConnections = defaults.Database.MaxConnections
	cfg.Database.MigrateOnStart = false
	cfg.Reader.CheckpointInterval = 100 * time.Millisecond
	script, err := pgbench.WriteScript(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	return &captureBench{
		bundle: bundle, cfg: cfg, pgbench: pgbenchBin, script: script, seconds: seconds,
		counter: newChannelCounter(b, bundle, cfg.Database.NotifyChannel),
	}
}

// use sets variant v up: the trigger function and whether the service
// runs, and how it wakes; "" stops the service.
func (c *captureBench) use(b *testing.B, v string) {
	b.Helper()
	ctx := b.Context()
	wake := map[string]string{"b": config.WakeNotify, "c": config.WakeNotify, "d": config.WakePoll}[v]
	if c.app != nil && c.appWake != wake { // a, the end, or the other way of waking
		c.app.stop(b)
		c.app = nil
	}
	cfg := c.cfg
	cfg.Database.Wake = cmp.Or(wake, config.WakePoll)
	if cfg.Database.Wake == config.WakePoll {
		cfg.Database.PollInterval = config.PollIntervalPolling // the product's default there
	}
	if _, err := bootstrap.Migrate(ctx, cfg, c.bundle.logger, ""); err != nil { // b, c: the trigger with the current function; a, d: none
		b.Fatalf("migrate: %v", err)
	}
	if v == "b" {
		for _, q := range []string{oldNotifyFunction, `DROP TRIGGER ` + pgbench.TriggerName + ` ON core.tb_entity_change_log`, oldNotifyTrigger} {
			if _, err := c.bundle.pool.Exec(ctx, q); err != nil {
				b.Fatalf("install the old trigger: %v", err)
			}
		}
	}
	if wake != "" && c.app == nil {
		c.app = c.bundle.start(b, cfg)
		c.app.waitReading(b)
		c.appWake = wake
	}
}

// run empties the change log, runs pgbench with n clients and, when the
// service runs, waits until its reader has every row.
func (c *captureBench) run(b *testing.B, n int) captureRun {
	b.Helper()
	ctx := b.Context()
	if _, err := c.bundle.pool.Exec(ctx, `TRUNCATE core.tb_entity_change_log`); err != nil {
		b.Fatalf("truncate: %v", err)
	}
	before := c.counter.count(b)
	cpuStart := processCPU(b)
	b.StartTimer()
	res, err := pgbench.Run(ctx, c.pgbench, c.script, n, time.Duration(c.seconds)*time.Second, c.bundle.dbURL)
	b.StopTimer()
	ended := time.Now()
	if err != nil {
		b.Fatal(err)
	}
	run := captureRun{tps: res.TPS, commits: res.Commits}
	run.notifications = c.counter.count(b) - before
	if c.app != nil {
		c.waitReadAtEnd(b)
		run.catchUp = time.Since(ended)
	}
	run.cpu = processCPU(b) - cpuStart
	return run
}

// waitReadAtEnd waits until the service's reader has read the last row
// (its checkpoint follows within the checkpoint interval, or later when the
// reader is waiting).
func (c *captureBench) waitReadAtEnd(b *testing.B) {
	b.Helper()
	var last ports.Position
	if err := c.bundle.pool.QueryRow(b.Context(), `SELECT txid::text::bigint, pk_entity_change_log FROM core.tb_entity_change_log
		ORDER BY txid DESC, pk_entity_change_log DESC LIMIT 1`).Scan(&last.TxID, &last.Seq); err != nil {
		b.Fatalf("last row: %v", err)
	}
	deadline := time.Now().Add(waitTimeout)
	for c.app.app.Reader().Status().ReadAt.Less(last) {
		if time.Now().After(deadline) {
			b.Fatalf("reader at %v, not at the last row %v after %v", c.app.app.Reader().Status().ReadAt, last, waitTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// processCPU is the user+system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report logs every figure as min–max over the repetitions, the ratios to
// a of the same repetition, and reports the tx/s and the ratios.
func report(b *testing.B, results map[string][]captureRun, variants []string, clients []int, reps int) {
	b.Helper()
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "clients\tvariant\ttx/s min–max\tratio to a min–median–max\tnotifications/commit\treader catch-up max\tservice CPU s/10k rows min–max\t\n")
	for _, n := range clients {
		a := results[captureKey("a", n)]
		for _, v := range variants {
			runs := results[captureKey(v, n)]
			tps := make([]float64, len(runs))
			ratios := make([]float64, len(runs))
			cpu := make([]float64, len(runs))
			var notes, commits int64
			var catchUp time.Duration
			for i, r := range runs {
				tps[i] = r.tps
				ratios[i] = r.tps / a[i].tps
				cpu[i] = r.cpu.Seconds() * 10000 / float64(max(r.commits, 1))
				notes += int64(r.notifications)
				commits += r.commits
				catchUp = max(catchUp, r.catchUp)
			}
			fmt.Fprintf(tw, "%d\t%s\t%.0f–%.0f\t%.2f–%.2f–%.2f\t%.4f\t%v\t%.2f–%.2f\t\n", n, v, slices.Min(tps), slices.Max(tps),
				slices.Min(ratios), median(ratios), slices.Max(ratios), float64(notes)/float64(max(commits, 1)), catchUp.Round(time.Millisecond),
				slices.Min(cpu), slices.Max(cpu))
			b.ReportMetric(slices.Min(tps), fmt.Sprintf("%s%d_tx/s_min", v, n))
			b.ReportMetric(slices.Max(tps), fmt.Sprintf("%s%d_tx/s_max", v, n))
			if v != "a" {
				b.ReportMetric(slices.Min(ratios), fmt.Sprintf("%s/a_%d_min", v, n))
				b.ReportMetric(median(ratios), fmt.Sprintf("%s/a_%d_median", v, n))
				b.ReportMetric(slices.Max(ratios), fmt.Sprintf("%s/a_%d_max", v, n))
			}
		}
	}
	_ = tw.Flush()
	b.Logf("single-row commits/s on the change log, %d repetitions interleaved %s:\n%s", reps, strings.Join(variants, ", "), table.String())
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// channelCounter counts the notifications on a channel from a LISTEN
// connection of its own.
type channelCounter struct {
	bundle  *testBundle
	channel string

	mu        sync.Mutex
	n         int
	sentinels map[string]bool
	next      int
}

func newChannelCounter(b *testing.B, bundle *testBundle, channel string) *channelCounter {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, bundle.dbURL)
	if err != nil {
		cancel()
		b.Fatalf("connect: %v", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		cancel()
		b.Fatalf("LISTEN: %v", err)
	}
	c := &channelCounter{bundle: bundle, channel: channel, sentinels: map[string]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := conn.WaitForNotification(ctx)
			if err != nil {
				return
			}
			c.mu.Lock()
			if msg.Payload == "" {
				c.n++
			} else {
				c.sentinels[msg.Payload] = true
			}
			c.mu.Unlock()
		}
	}()
	b.Cleanup(func() {
		cancel()
		<-done
		_ = conn.Close(context.Background())
	})
	return c
}

// count returns the notifications of transactions committed before the
// call (notifications arrive in commit order: a sentinel marks the point).
func (c *channelCounter) count(b *testing.B) int {
	b.Helper()
	c.mu.Lock()
	c.next++
	sentinel := fmt.Sprintf("sentinel-%d", c.next)
	c.mu.Unlock()
	if _, err := c.bundle.pool.Exec(b.Context(), `SELECT pg_notify($1, $2)`, c.channel, sentinel); err != nil {
		b.Fatalf("notify: %v", err)
	}
	var n int
	waitFor(b, "sentinel notification", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		n = c.n
		return c.sentinels[sentinel]
	})
	return n
}

// findPgbench returns the pgbench binary. Without one the benchmark is
// skipped (a failure under CI=true).
func findPgbench(b *testing.B) string {
	b.Helper()
	p, err := pgbench.Find()
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		b.Fatal(err)
	}
	b.Skip(err)
	return ""
}

// envPositive reads a positive integer from the environment.
func envPositive(b *testing.B, key string, def int) int {
	b.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q is not a positive integer", key, v)
	}
	return n
}
