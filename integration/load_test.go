package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/adapters/logaction"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// The load harness. Run it with, for example:
//
//	FRAISEQL_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
//	    go test -run '^$' -bench . -benchtime 1x ./integration/
//
// FRAISEQL_BENCH_ROWS sets the backlog of BenchmarkDrainBacklog (default
// 100000). Each iteration uses its own database; the work of one iteration
// is bounded (a backlog, or 10s of steady inserts), so -benchtime 1x is
// the useful setting.

// benchRows is the backlog size of BenchmarkDrainBacklog:
// FRAISEQL_BENCH_ROWS (default 100000).
func benchRows(b *testing.B) int { return benchEnvInt(b, "FRAISEQL_BENCH_ROWS", 100000) }

// benchEnvInt reads the positive integer in the environment variable
// name, or def when it is unset.
func benchEnvInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q is not a positive integer", name, v)
	}
	return n
}

// countingReceiver answers 204 and counts requests; observe, when set,
// sees each body.
type countingReceiver struct {
	n       atomic.Int64
	observe func(body []byte, at time.Time)
}

func (c *countingReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if c.observe != nil {
		c.observe(body, at)
	}
	c.n.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// benchConfig is the service configuration of the load harness: one
// webhook observer for every entity, default tuning except the short
// checkpoint interval.
func benchConfig(bundle *testBundle, url string) config.Config {
	cfg := bundle.config(webhookObserver("load", "*", url, nil))
	cfg.Database.MaxConnections = 8
	return cfg
}

// waitCount waits until c has seen n requests, up to limit.
func waitCount(b *testing.B, c *countingReceiver, n int64, limit time.Duration) {
	b.Helper()
	waitCounter(b, &c.n, n, limit, "delivered")
}

// waitCounter waits until counter reaches n, up to limit, polling every
// 2ms; what names the events counted in the failure.
func waitCounter(b *testing.B, counter *atomic.Int64, n int64, limit time.Duration, what string) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for counter.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d events %s within %s", counter.Load(), n, what, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkDrainBacklog measures how fast a started service delivers a
// backlog of change-log rows (one entity each) to a local webhook.
func BenchmarkDrainBacklog(b *testing.B) {
	rows := benchRows(b)
	total := 0
	var cpu time.Duration
	for range b.N {
		b.StopTimer()
		bundle := setup(b)
		recv := &countingReceiver{}
		srv := httptest.NewServer(recv)
		insertBacklog(b, bundle.pool, rows)
		cfg := benchConfig(bundle, srv.URL+"/hook")

		cpu += timedDrain(b, bundle, cfg, func() {
			waitCount(b, recv, int64(rows), time.Duration(rows)*time.Millisecond+time.Minute)
		})
		srv.Close()
		total += rows
	}
	// The receiver runs in this process: its CPU is in the figure.
	reportDrain(b, total, cpu)
}

// timedDrain starts the service on cfg and runs wait (until the backlog
// is delivered) with the benchmark timer running, then stops the service;
// it returns this process's CPU (user+system) over the timed part.
func timedDrain(b *testing.B, bundle *testBundle, cfg config.Config, wait func()) time.Duration {
	cpu0 := processCPU(b)
	b.StartTimer()
	app := bundle.start(b, cfg)
	wait()
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	app.stop(b)
	return cpu
}

// reportDrain reports events/s and cpu_s/10k for total events drained
// with cpu of this process's CPU.
func reportDrain(b *testing.B, total int, cpu time.Duration) {
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(cpu.Seconds()*10000/float64(total), "cpu_s/10k")
}

// countingHandler counts the log records whose message is msg and passes
// every record on to next (a JSON handler over io.Discard in the
// benchmark, so that the log action's encoding cost stays in the figure).
type countingHandler struct {
	next slog.Handler
	msg  string
	n    *atomic.Int64
}

func (h countingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return h.next.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return countingHandler{next: h.next.WithAttrs(attrs), msg: h.msg, n: h.n}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{next: h.next.WithGroup(name), msg: h.msg, n: h.n}
}

// BenchmarkDrainBacklogLog measures the pipeline without HTTP: a backlog
// of change-log rows (one entity each) through one log action, whose
// records are JSON-encoded to io.Discard. cpu_s/10k is this process's CPU
// (user+system) per 10k events while draining.
func BenchmarkDrainBacklogLog(b *testing.B) {
	rows := benchRows(b)
	total := 0
	var cpu time.Duration
	for range b.N {
		b.StopTimer()
		bundle := setup(b)
		insertBacklog(b, bundle.pool, rows)
		var logged atomic.Int64
		bundle.logger = slog.New(countingHandler{
			next: slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}),
			msg:  logaction.DefaultMessage,
			n:    &logged,
		})
		cfg := bundle.config(config.ObserverConfig{
			Name:    "load",
			Entity:  "*",
			Events:  []string{"INSERT", "UPDATE", "DELETE", "CUSTOM"},
			Actions: []config.ActionConfig{{Type: "log"}},
		})
		cfg.Database.MaxConnections = 8

		cpu += timedDrain(b, bundle, cfg, func() {
			waitCounter(b, &logged, int64(rows), time.Duration(rows)*time.Millisecond+time.Minute, "logged")
		})
		total += rows
	}
	reportDrain(b, total, cpu)
}

// benchRate is the insert rate of BenchmarkCommitToDelivery:
// FRAISEQL_BENCH_RATE rows/s (default 1000).
func benchRate(b *testing.B) int { return benchEnvInt(b, "FRAISEQL_BENCH_RATE", 1000) }

// BenchmarkCommitToDelivery inserts FRAISEQL_BENCH_RATE rows/s (default
// 1000) for 10s, one row per transaction, and measures for each event the
// time from its insert to its arrival at the webhook. cpu_s/10k is this
// process's CPU per 10k events over the run: the service's, the
// receiver's and the writers' client side.
func BenchmarkCommitToDelivery(b *testing.B) {
	const (
		duration = 10 * time.Second
		writers  = 4
	)
	rate := benchRate(b)
	var cpu time.Duration
	var all []time.Duration
	achieved := 0.0
	events := 0
	for range b.N {
		b.StopTimer()
		bundle := setup(b)
		var mu sync.Mutex
		var lat []time.Duration
		recv := &countingReceiver{observe: func(body []byte, at time.Time) {
			var env struct {
				Data struct {
					T int64 `json:"t_ns"`
				} `json:"data"`
			}
			if json.Unmarshal(body, &env) != nil || env.Data.T == 0 {
				return
			}
			d := at.Sub(time.Unix(0, env.Data.T))
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}}
		srv := httptest.NewServer(recv)
		app := bundle.start(b, benchConfig(bundle, srv.URL+"/hook"))
		app.waitReading(b)
		pcfg, err := pgxpool.ParseConfig(bundle.dbURL)
		if err != nil {
			b.Fatal(err)
		}
		pcfg.MaxConns = writers
		writePool, err := pgxpool.NewWithConfig(b.Context(), pcfg)
		if err != nil {
			b.Fatal(err)
		}

		cpu0 := processCPU(b)
		b.StartTimer()
		jobs := make(chan struct{}, rate)
		var wg sync.WaitGroup
		var failed atomic.Value
		for range writers {
			wg.Go(func() {
				for range jobs {
					now := time.Now().UnixNano()
					_, err := writePool.Exec(b.Context(), insertChangeSQL, "Order", "INSERT", newUUID(),
						fmt.Sprintf(`{"t_ns": %d}`, now), nil)
					if err != nil {
						failed.CompareAndSwap(nil, err)
					}
				}
			})
		}
		// Each tick releases every insert due by now, so a late tick does
		// not lower the rate.
		ticker := time.NewTicker(time.Second / time.Duration(rate))
		start := time.Now()
		sent, dropped := 0, 0
		for due := 0; due < rate*int(duration/time.Second); {
			<-ticker.C
			for due = min(int(time.Since(start).Seconds()*float64(rate)), rate*int(duration/time.Second)); sent+dropped < due; {
				select {
				case jobs <- struct{}{}:
					sent++
				default:
					dropped++ // the writers fell behind by a whole second
				}
			}
		}
		ticker.Stop()
		close(jobs)
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("insert: %v", err)
		}
		achieved = float64(sent) / time.Since(start).Seconds()
		waitCount(b, recv, int64(sent), time.Minute)
		b.StopTimer()
		cpu += processCPU(b) - cpu0
		events += sent

		app.stop(b)
		srv.Close()
		writePool.Close()
		if dropped > 0 {
			b.Logf("%d inserts dropped: the writers could not keep %d rows/s", dropped, rate)
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	}
	if len(all) == 0 {
		b.Fatal("no latencies recorded")
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		i := min(int(p*float64(len(all))), len(all)-1)
		return float64(all[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(achieved, "rows/s")
	b.ReportMetric(cpu.Seconds()*10000/float64(events), "cpu_s/10k")
}
