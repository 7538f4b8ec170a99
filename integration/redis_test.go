package integration

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// Metric series of the postgres-redis topology.
const (
	dedupSkippedSeries  = `fraiseql_observer_dedup_processing_skipped_total`
	cacheHitsSeries     = `fraiseql_observer_cache_hits_total`
	dedupFailOpenSeries = `fraiseql_observer_fail_open_total{component="dedup"}`
)

// Events a first instance finished are not run again when a second
// instance reads them again (checkpoint rewound): Redis remembers them.
func TestRedisDeliveredTwiceRunsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rd := newRedisEnv(t, "")
	const n = 6
	recv := newReceiver(t, nil)
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), nil))
	rd.configure(&cfg)

	app1 := b.start(t, cfg)
	ids := b.insert(t, orders(n)...)
	recv.waitDelivered(t, ids)
	b.waitCheckpointAtEnd(t)
	app1.stop(t)
	for _, id := range ids {
		if !rd.exists(t, dedupKey(id)) {
			t.Fatalf("no dedup mark %s%s for the finished event", rd.prefix, dedupKey(id))
		}
	}

	b.setCheckpoint(t, position{})
	app2 := b.start(t, cfg)
	waitFor(t, "every event read again and skipped", func() bool { return app2.metric(t, dedupSkippedSeries) >= n })
	b.waitCheckpointAtEnd(t)
	time.Sleep(300 * time.Millisecond) // room for a stray delivery to show up

	if got := app2.metric(t, dedupSkippedSeries); got != n {
		t.Errorf("second instance %s = %v, want %d", dedupSkippedSeries, got, n)
	}
	if got := len(recv.all()); got != n {
		t.Errorf("receiver got %d requests in all, want %d (none from the second instance)", got, n)
	}
	for id, c := range recv.deliveredByEvent() {
		if c != 1 {
			t.Errorf("event %s delivered %d times", id, c)
		}
	}
}

// An event whose second action is waiting for a retry when the service
// stops is unfinished: the checkpoint stays before it and its claim is
// released. The restart runs only the action that had not succeeded; the
// first one's success comes from the result cache.
func TestRedisPartialFailureRedelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rd := newRedisEnv(t, "")
	first := newReceiver(t, nil)
	var failing atomic.Bool
	failing.Store(true)
	second := newReceiver(t, func(receipt) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	timeout := 10 * time.Second
	obs := config.ObserverConfig{
		Name:   "orders",
		Entity: "Order",
		Events: []string{"INSERT"},
		// The retry waits long enough for the stop to find it pending.
		Retry: retryPolicy(5, 5*time.Second, 5*time.Second, "fixed"),
		Actions: []config.ActionConfig{
			{Type: "webhook", Name: "ledger", URL: first.URL(), Timeout: &timeout},
			{Type: "webhook", Name: "mailer", URL: second.URL(), Timeout: &timeout},
		},
	}
	cfg := b.config(obs)
	rd.configure(&cfg)

	app1 := b.start(t, cfg)
	id := b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"total": 10}`})[0]
	first.waitDelivered(t, []string{id})
	waitFor(t, "action 2 failed once", func() bool { return len(second.all()) >= 1 })
	waitFor(t, "action 1's success cached", func() bool { return rd.exists(t, resultKey(id, "orders", "ledger")) })
	app1.stop(t)

	if got := len(second.all()); got != 1 {
		t.Fatalf("action 2 got %d requests before the stop, want 1 (the retry is 5s away)", got)
	}
	if cp, row := b.checkpoint(t), b.rows(t)[0].Pos; !cp.less(row) {
		t.Fatalf("checkpoint %s passed the unfinished event at %s", cp, row)
	}
	if rd.exists(t, dedupKey(id)) {
		t.Fatalf("dedup key %s%s still set after the stop: the claim was not released (or the event was marked done)", rd.prefix, dedupKey(id))
	}

	failing.Store(false)
	app2 := b.start(t, cfg)
	second.waitDelivered(t, []string{id})
	b.waitCheckpointAtEnd(t)
	time.Sleep(300 * time.Millisecond)

	if got := len(first.all()); got != 1 {
		t.Errorf("action 1 got %d requests in all, want exactly 1", got)
	}
	if got := app2.metric(t, cacheHitsSeries); got < 1 {
		t.Errorf("second instance %s = %v, want at least 1", cacheHitsSeries, got)
	}
	if got := second.deliveredByEvent()[id]; got != 1 {
		t.Errorf("action 2 delivered the event %d times, want 1", got)
	}
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Errorf("dead letters = %+v, want none", dl)
	}
	if !rd.exists(t, dedupKey(id)) {
		t.Errorf("event not marked done in Redis after the restart finished it")
	}
}

// A service killed with SIGKILL halfway through a stream, then restarted,
// delivers every event at least once; the only duplicates are deliveries
// that were in flight (answered but not yet recorded) at the kill, so
// they are bounded by max_concurrent_actions.
func TestRedisSIGKILLMidStream(t *testing.T) {
	t.Parallel()
	const (
		events        = 2000
		maxConcurrent = 8
	)
	b := setup(t)
	rd := newRedisEnv(t, "")
	recv := newReceiver(t, nil)
	recv.delay = 20 * time.Millisecond
	// A short dedup lease: the killed process's claims expire quickly.
	file := redisServiceConfig(t, recv.URL(), maxConcurrent, 2*time.Second)
	env := cliEnv("FRAISEQL_DATABASE_URL="+b.dbURL, "FRAISEQL_REDIS_URL="+rd.url, "FRAISEQL_REDIS_KEY_PREFIX="+rd.prefix)

	svc1 := startRedisService(t, env, file)
	insertBacklog(t, b.pool, events)
	ids := b.eventIDs(t)
	waitFor(t, "half of the events delivered", func() bool { return len(recv.delivered()) >= events/2 })
	inFlight := recv.inFlight()
	svc1.Kill(t)
	beforeKill := len(recv.deliveredByEvent())
	if beforeKill >= events {
		t.Fatalf("all %d events delivered before the kill; the test needs some left", events)
	}

	svc2 := startRedisService(t, env, file)
	recv.waitDelivered(t, ids)
	b.waitCheckpointAtEnd(t)
	time.Sleep(300 * time.Millisecond)
	if code := svc2.terminate(t); code != 0 {
		t.Errorf("second service exit status after SIGTERM = %d, want 0", code)
	}

	dups := 0
	for _, c := range recv.deliveredByWebhookID() {
		dups += c - 1
	}
	t.Logf("SIGKILL mid-stream: %d events, %d delivered before the kill, %d requests in flight at the kill, %d duplicate deliveries (bound: max_concurrent_actions = %d)",
		events, beforeKill, inFlight, dups, maxConcurrent)
	if got := len(recv.deliveredByEvent()); got != events {
		t.Errorf("%d distinct events delivered, want %d", got, events)
	}
	if dups > maxConcurrent {
		t.Errorf("%d duplicate deliveries, want at most %d (the actions in flight at the kill)", dups, maxConcurrent)
	}
}

// With Redis gone the service fails open: events keep flowing and the
// fail-open counter rises. When Redis is back, dedup works again: an event
// read a second time is skipped.
func TestRedisStoppedMidRun(t *testing.T) {
	t.Parallel()
	srv := startPrivateRedis(t)
	b := setup(t)
	rd := newRedisEnv(t, srv.URL())
	recv := newReceiver(t, nil)
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), nil))
	rd.configure(&cfg)

	app1 := b.start(t, cfg)
	before := b.insert(t, orders(3)...)
	recv.waitDelivered(t, before)
	if got := app1.metric(t, dedupFailOpenSeries); got != 0 {
		t.Fatalf("%s = %v with Redis up, want 0", dedupFailOpenSeries, got)
	}

	srv.stop(t)
	during := b.insert(t, orders(5)...)
	recv.waitDelivered(t, during)
	if got := app1.metric(t, dedupFailOpenSeries); got < 1 {
		t.Errorf("%s = %v after events processed without Redis, want at least 1", dedupFailOpenSeries, got)
	}
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Errorf("dead letters while Redis was down = %+v, want none", dl)
	}

	// /readyz answers without a token: it names the kind of failure, not
	// the error (which names the address); the log has the error, once
	// however often the probe asks. (Its checks are kept for a second.)
	waitFor(t, "/readyz seeing Redis down", func() bool { return app1.redisState(t) != "ok" })
	for range 3 {
		got := app1.redisState(t)
		if !strings.HasPrefix(got, "unreachable") || !strings.HasSuffix(got, "failing open") {
			t.Errorf("/readyz redis = %q while Redis is down, want unreachable, failing open", got)
		}
		if strings.Contains(got, strconv.Itoa(srv.port)) || strings.Contains(got, "127.0.0.1") {
			t.Errorf("/readyz redis = %q names the address", got)
		}
	}
	if recs := b.logs.records("readiness check failed"); len(recs) != 1 || recs[0]["dependency"] != "redis" ||
		!strings.Contains(fmt.Sprint(recs[0]["error"]), strconv.Itoa(srv.port)) {
		t.Errorf("log records \"readiness check failed\" = %v, want one, for redis, with the error naming the port", recs)
	}

	srv.start(t) // same port, empty
	waitFor(t, "the service reaching Redis again (/readyz)", func() bool { return app1.redisState(t) == "ok" })
	if n := b.logs.count("readiness check passes again"); n != 1 {
		t.Errorf("log records \"readiness check passes again\" = %d, want 1", n)
	}
	failOpen := app1.metric(t, dedupFailOpenSeries)
	last := b.waitCheckpointAtEnd(t)
	after := b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"phase": "redis back"}`})[0]
	recv.waitDelivered(t, []string{after})
	b.waitCheckpointAtEnd(t)
	if got := app1.metric(t, dedupFailOpenSeries); got != failOpen {
		t.Errorf("%s rose from %v to %v after Redis came back", dedupFailOpenSeries, failOpen, got)
	}
	app1.stop(t)
	if !rd.exists(t, dedupKey(after)) {
		t.Fatalf("event %s, processed after Redis came back, is not marked done", after)
	}

	// Read the last event again: Redis says it is done.
	b.setCheckpoint(t, last)
	app2 := b.start(t, cfg)
	waitFor(t, "the event read again and skipped", func() bool { return app2.metric(t, dedupSkippedSeries) >= 1 })
	b.waitCheckpointAtEnd(t)
	time.Sleep(300 * time.Millisecond)
	if got := app2.metric(t, dedupSkippedSeries); got != 1 {
		t.Errorf("%s = %v, want 1", dedupSkippedSeries, got)
	}
	if got := recv.deliveredByEvent()[after]; got != 1 {
		t.Errorf("event %s delivered %d times, want 1", after, got)
	}
	if got := len(recv.all()); got != len(before)+len(during)+1 {
		t.Errorf("receiver got %d requests, want %d (one per event)", got, len(before)+len(during)+1)
	}
}

// A cache action removes exactly the keys its pattern names for the
// event: the event's values are glob-escaped, the pattern's own * is a
// wildcard, and the action's key_prefix applies (the observer's own
// redis.key_prefix is its namespace for dedup and results, never put in
// front of application keys).
func TestRedisCacheInvalidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rd := newRedisEnv(t, "")
	plain := newUUID()
	const globby = `ord*[1]?` // unescaped it would match ordX1Y
	keys := []struct {
		key  string
		gone bool
	}{
		{"orders:" + plain + ":summary", true},
		{"orders:" + plain + ":lines", true},
		{"orders:" + plain, false}, // the pattern needs a third segment
		{"orders:other:x", false},
		{"orders:" + newUUID() + ":summary", false},
		{"orders:" + globby + ":summary", true},
		{"orders:" + globby + ":lines", true},
		{"orders:ordX1Y:summary", false},
		{"orders:ord*[1]?x:summary", false},
		{"customers:" + plain + ":summary", false},
	}
	for _, k := range keys {
		rd.set(t, k.key, "cached")
	}
	// The same names outside the prefix belong to someone else.
	outside := "orders:" + plain + ":summary:" + rd.prefix
	t.Cleanup(func() { _ = rd.rdb.Del(t.Context(), outside).Err() })
	if err := rd.rdb.Set(t.Context(), outside, "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}

	cfg := b.config(config.ObserverConfig{
		Name: "orders-cache", Entity: "Order", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{{Type: "cache", KeyPattern: "orders:{{ event.entity_id }}:*", KeyPrefix: rd.prefix, Action: "invalidate"}},
	})
	rd.configure(&cfg)
	cfg.Redis.KeyPrefix = rd.prefix + "observer:" // must not reach the invalidated keys
	b.start(t, cfg)
	b.insert(t, change{Entity: "Order", Kind: "INSERT", ID: plain, Data: `{}`})
	b.insertKeyed(t, "Order", globby)
	b.waitCheckpointAtEnd(t)

	for _, k := range keys {
		if got := rd.exists(t, k.key); got == k.gone {
			t.Errorf("key %q exists = %v, want %v", rd.prefix+k.key, got, !k.gone)
		}
	}
	if n, err := rd.rdb.Exists(t.Context(), outside).Result(); err != nil || n != 1 {
		t.Errorf("key %q outside the prefix: exists = %d (%v), want 1", outside, n, err)
	}
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Errorf("dead letters = %+v, want none", dl)
	}
}

// Dedup or caching on without a Redis server is a configuration error:
// exit status 2, with a message naming the flag and redis.url.
func TestRedisConfigNeedsRedis(t *testing.T) {
	t.Parallel()
	env := cliEnv("FRAISEQL_DATABASE_URL=postgres://postgres@127.0.0.1:1/unused?sslmode=disable")
	cases := []struct {
		name string
		toml string
		want []string
	}{
		{"postgres-redis with dedup", "topology = \"postgres-redis\"\n[performance]\nenable_dedup = true\n",
			[]string{"performance.enable_dedup", "redis.url", "postgres-redis"}},
		{"postgres-redis with caching", "topology = \"postgres-redis\"\n[performance]\nenable_caching = true\n",
			[]string{"performance.enable_caching", "redis.url", "postgres-redis"}},
		{"nats-distributed with dedup", "topology = \"nats-distributed\"\n[performance]\nenable_dedup = true\n",
			[]string{"performance.enable_dedup", "redis.url", "nats-distributed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, "config.toml", c.toml)
			for _, cmd := range []string{"validate-config", "run"} {
				_, stderr, code := cli(t, env, cmd, "--config", file)
				if code != 2 {
					t.Errorf("%s: exit status %d, want 2; stderr:\n%s", cmd, code, stderr)
				}
				for _, want := range append([]string{file}, c.want...) {
					if !strings.Contains(stderr, want) {
						t.Errorf("%s: stderr does not name %q:\n%s", cmd, want, stderr)
					}
				}
			}
		})
	}
}
