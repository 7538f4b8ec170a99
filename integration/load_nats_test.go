package integration

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// The load harness of the NATS topologies. Run it with, for example:
//
//	FRAISEQL_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
//	FRAISEQL_TEST_REDIS_URL=redis://127.0.0.1:6379/0 FRAISEQL_TEST_NATS_URL=nats://127.0.0.1:4222 \
//	    go test -run '^$' -bench NATS -benchtime 1x ./integration/
//
// FRAISEQL_BENCH_ROWS sets the backlog (default 100000). Each iteration
// has its own database, stream and Redis key prefix; the stream is in
// memory and deleted after the iteration.

// natsBenchConfig is the configuration of one process of the harness:
// nats-distributed with the role, Redis dedup and result cache on (as in
// configs/nats-distributed.toml), one webhook observer for every entity.
func natsBenchConfig(bundle *testBundle, e *jsEnv, role, url string) config.Config {
	cfg := benchConfig(bundle, url)
	e.configure(&cfg, role)
	cfg.Performance.EnableCaching = true
	return cfg
}

// BenchmarkNATSBridgeToWorkers measures how fast a backlog travels from
// the change log through a bridge, JetStream and two workers to a local
// webhook answering 204: events/s from the start of the processes to the
// last delivery.
func BenchmarkNATSBridgeToWorkers(b *testing.B) {
	rows := benchRows(b)
	total := 0
	for range b.N {
		b.StopTimer()
		bundle := setup(b)
		e := newJSEnv(b)
		recv := &countingReceiver{}
		srv := httptest.NewServer(recv)
		insertBacklog(b, bundle.pool, rows)
		bridgeCfg := natsBenchConfig(bundle, e, "bridge", srv.URL+"/hook")
		workerCfg := natsBenchConfig(bundle, e, "worker", srv.URL+"/hook")

		b.StartTimer()
		apps := []*runningApp{bundle.start(b, bridgeCfg), bundle.start(b, workerCfg), bundle.start(b, workerCfg)}
		waitCount(b, recv, int64(rows), time.Duration(rows)*time.Millisecond+time.Minute)
		b.StopTimer()

		for _, a := range apps {
			a.stop(b)
		}
		srv.Close()
		e.deleteStream(b)
		total += rows
		if n := recv.n.Load(); n != int64(rows) {
			b.Fatalf("%d deliveries for %d events", n, rows)
		}
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkNATSBridgePublish measures the bridge alone: events/s from its
// start until its checkpoint covers the backlog (every event acknowledged
// by JetStream).
func BenchmarkNATSBridgePublish(b *testing.B) {
	rows := benchRows(b)
	total := 0
	for range b.N {
		b.StopTimer()
		bundle := setup(b)
		e := newJSEnv(b)
		insertBacklog(b, bundle.pool, rows)
		cfg := natsBenchConfig(bundle, e, "bridge", "http://127.0.0.1:1/unused")
		last := bundle.rows(b)[rows-1].Pos

		b.StartTimer()
		app := bundle.start(b, cfg)
		deadline := time.Now().Add(time.Duration(rows)*time.Millisecond + time.Minute)
		for bundle.namedCheckpoint(b, "bridge:default").less(last) {
			if time.Now().After(deadline) {
				b.Fatalf("checkpoint %s short of %s after the deadline", bundle.namedCheckpoint(b, "bridge:default"), last)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.StopTimer()

		app.stop(b)
		if got := e.streamMsgs(b); got != uint64(rows) {
			b.Fatalf("stream holds %d messages, want %d", got, rows)
		}
		e.deleteStream(b)
		total += rows
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}
