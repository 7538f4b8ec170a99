package integration

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// BenchmarkRedisVsPostgresOnly drains the same backlog (FRAISEQL_BENCH_ROWS
// rows, default 100000, one entity each) twice in one run: with topology
// postgres-only, then with postgres-redis (dedup and result caching on, so
// every event costs a claim, a cache lookup, a cache write and a done mark
// in Redis). Each drain has its own database; the timer covers the start
// of the service to the last delivery. Run it with, for example:
//
//	FRAISEQL_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
//	FRAISEQL_TEST_REDIS_URL='redis://127.0.0.1:6379/0' \
//	    go test -run '^$' -bench RedisVsPostgresOnly -benchtime 1x ./integration/
func BenchmarkRedisVsPostgresOnly(b *testing.B) {
	rows := benchRows(b)
	variants := []struct {
		name   string
		metric string
		redis  bool
	}{
		{"postgres-only", "pg_only_events/s", false},
		{"postgres-redis", "pg_redis_events/s", true},
	}
	elapsed := make([]time.Duration, len(variants))
	for range b.N {
		for i, v := range variants {
			elapsed[i] += drainBacklog(b, rows, 0, v.redis)
		}
	}
	for i, v := range variants {
		rate := float64(rows*b.N) / elapsed[i].Seconds()
		b.ReportMetric(rate, v.metric)
		b.Logf("%s: %d events in %s (%.0f events/s)", v.name, rows*b.N, elapsed[i].Round(time.Millisecond), rate)
	}
}

// BenchmarkHotEntities drains a backlog whose events belong to a few
// entities (FRAISEQL_BENCH_HOT_ROWS rows, default 10000, over
// FRAISEQL_BENCH_HOT_ENTITIES, default 16) with topology postgres-only,
// then postgres-redis: each entity's events run one after the other, the
// next only once the one before is finished (with Redis: marked done), so
// the figure is bound by the per-event round rather than by throughput:
//
//	go test -run '^$' -bench HotEntities -benchtime 1x ./integration/
func BenchmarkHotEntities(b *testing.B) {
	rows := benchEnvInt(b, "FRAISEQL_BENCH_HOT_ROWS", 10000)
	entities := benchEnvInt(b, "FRAISEQL_BENCH_HOT_ENTITIES", 16)
	for _, v := range []struct {
		metric string
		redis  bool
	}{{"pg_only_events/s", false}, {"pg_redis_events/s", true}} {
		var elapsed time.Duration
		for range b.N {
			elapsed += drainBacklog(b, rows, entities, v.redis)
		}
		rate := float64(rows*b.N) / elapsed.Seconds()
		b.ReportMetric(rate, v.metric)
		b.Logf("%s: %d events of %d entities in %s (%.0f events/s)", v.metric, rows*b.N, entities, elapsed.Round(time.Millisecond), rate)
	}
}

// drainBacklog starts a service on a fresh database holding rows events
// (of as many entities, or of entities when positive) and returns how long
// it took to deliver them all.
func drainBacklog(b *testing.B, rows, entities int, withRedis bool) time.Duration {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	bundle := setup(b)
	recv := &countingReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	if entities > 0 {
		insertEntityBacklog(b, bundle.pool, rows, entities)
	} else {
		insertBacklog(b, bundle.pool, rows)
	}
	cfg := benchConfig(bundle, srv.URL+"/hook")
	if withRedis {
		newRedisEnv(b, "").configure(&cfg)
	} else {
		cfg.Topology = config.TopologyPostgresOnly
	}

	b.StartTimer()
	start := time.Now()
	app := bundle.start(b, cfg)
	waitCount(b, recv, int64(rows), time.Duration(rows)*time.Millisecond+time.Minute)
	took := time.Since(start)
	b.StopTimer()
	app.stop(b)
	return took
}
