package integration

import (
	"encoding/json"
	"fmt"
	"io"
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

// benchRows is the backlog size of BenchmarkDrainBacklog.
func benchRows(b *testing.B) int {
	b.Helper()
	v := os.Getenv("FRAISEQL_BENCH_ROWS")
	if v == "" {
		return 100000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("FRAISEQL_BENCH_ROWS=%q is not a positive integer", v)
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
	deadline := time.Now().Add(limit)
	for c.n.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d events delivered within %s", c.n.Load(), n, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkDrainBacklog measures how fast a started service delivers a
// backlog of change-log rows (one entity each) to a local webhook.
func BenchmarkDrainBacklog(b *testing.B) {
	rows := benchRows(b)
	total := 0
	for range b.N {
		b.StopTimer()
		bundle := setup(b)
		recv := &countingReceiver{}
		srv := httptest.NewServer(recv)
		if _, err := bundle.pool.Exec(b.Context(), `INSERT INTO core.tb_entity_change_log
			(object_type, modification_type, object_id, object_data)
			SELECT 'Order', 'INSERT', gen_random_uuid(), jsonb_build_object('n', g, 'status', 'new')
			FROM generate_series(1, $1::int) AS g`, rows); err != nil {
			b.Fatalf("insert backlog: %v", err)
		}
		cfg := benchConfig(bundle, srv.URL+"/hook")

		b.StartTimer()
		app := bundle.start(b, cfg)
		waitCount(b, recv, int64(rows), time.Duration(rows)*time.Millisecond+time.Minute)
		b.StopTimer()

		app.stop(b)
		srv.Close()
		total += rows
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkCommitToDelivery inserts 1000 rows/s for 10s, one row per
// transaction, and measures for each event the time from its insert to
// its arrival at the webhook.
func BenchmarkCommitToDelivery(b *testing.B) {
	const (
		rate     = 1000
		duration = 10 * time.Second
		writers  = 4
	)
	var all []time.Duration
	achieved := 0.0
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
		ticker := time.NewTicker(time.Second / rate)
		start := time.Now()
		sent, dropped := 0, 0
		for due := 0; due < rate*int(duration/time.Second); {
			<-ticker.C
			for due = min(int(time.Since(start).Seconds()*rate), rate*int(duration/time.Second)); sent+dropped < due; {
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
}
