package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// durablePolicy is a retry policy for the durable-delivery tests: quick
// in-memory attempts, then parked retries for an hour at most a few
// seconds apart.
func durablePolicy(inMemory int, maxDelay time.Duration) *config.RetryConfig {
	initial, maxAge, backoff := 100*time.Millisecond, time.Hour, "exponential"
	return &config.RetryConfig{InitialDelay: &initial, MaxDelay: &maxDelay, MaxAge: &maxAge, Backoff: &backoff, InMemoryAttempts: &inMemory}
}

// switchReceiver answers 503 while down, else 204.
func switchReceiver(t testing.TB) (*receiver, *atomic.Bool) {
	t.Helper()
	down := &atomic.Bool{}
	recv := newReceiver(t, func(receipt) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	return recv, down
}

// TestEndpointBreakerOpensProbesAndCloses: a receiver that keeps failing
// opens its endpoint's circuit after delivery.breaker_failures; while open
// new events park without an attempt and only probes reach the receiver,
// one per probe interval; when a probe succeeds the circuit closes and the
// whole backlog is delivered at once, whatever its backoff had reached.
func TestEndpointBreakerOpensProbesAndCloses(t *testing.T) {
	// Not parallel: it counts the probes of an open circuit over a few
	// seconds, which the suite's parallel tests (private clusters, crash
	// tests) would make noisy on a small machine. Sequential tests run
	// before them.
	b := setup(t)
	recv, down := switchReceiver(t)
	down.Store(true)
	// One attempt in memory, then parked 5-10 minutes out: only waking the
	// backlog on recovery delivers those before the wait below gives up.
	initial := 10 * time.Minute
	policy := durablePolicy(1, initial)
	policy.InitialDelay = &initial
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), policy))
	cfg.Delivery.BreakerFailures = 3
	cfg.Delivery.ProbeInterval = time.Second
	app := b.start(t, cfg)
	endpoint := `endpoint="` + mustEndpoint(t, recv.URL()) + `"`

	first := b.insert(t, orders(10)...)
	waitFor(t, "the circuit open", func() bool { return app.metric(t, "fraiseql_observer_endpoint_state{"+endpoint+"}") == 2 })
	env := cliEnv("FRAISEQL_DATABASE_URL=" + b.dbURL)
	statusShows := func(state string) bool {
		out, errOut, code := cli(t, env, "status")
		if code != 0 {
			t.Fatalf("status exit %d: %s", code, errOut)
		}
		return strings.Contains(out, "endpoint "+mustEndpoint(t, recv.URL())+": "+state) && strings.Contains(out, "parked retries:")
	}
	waitFor(t, "status showing the circuit open", func() bool { return statusShows("open") || statusShows("half_open") })
	b.waitCheckpointAtEnd(t) // parked events are finished for the checkpoint
	openedAt, before := time.Now(), len(recv.all())

	second := b.insert(t, orders(40)...)
	b.waitCheckpointAtEnd(t)
	time.Sleep(2500 * time.Millisecond) // a few probe intervals
	probes := len(recv.all()) - before
	if limit := int(time.Since(openedAt)/time.Second) + 2; probes > limit {
		t.Errorf("%d requests reached the receiver in %v while the circuit was open, want at most one probe per second (%d)",
			probes, time.Since(openedAt).Round(time.Millisecond), limit)
	}
	if got := app.metric(t, `fraiseql_observer_endpoint_deferred_total{`+endpoint+`,reason="open"}`); got < float64(len(second)) {
		t.Errorf("endpoint_deferred_total{reason=open} = %v, want at least the %d new events parked without an attempt", got, len(second))
	}

	down.Store(false)
	back := time.Now()
	// A liveness bound, not a speed target: alone this takes about a probe
	// interval (1s), and other test binaries running beside it stretch
	// that. Without the wake-up on recovery the first events would wait
	// out their backoff, 5 minutes at least.
	waitWithin(t, time.Minute, "the backlog delivered after the receiver came back", func() bool {
		got := recv.deliveredByEvent()
		for _, id := range append(first, second...) {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("backlog delivered %v after the receiver came back", time.Since(back).Round(time.Millisecond))
	if got := app.metric(t, "fraiseql_observer_endpoint_state{"+endpoint+"}"); got != 0 {
		t.Errorf("endpoint_state = %v after recovery, want 0 (closed)", got)
	}
	waitFor(t, "status showing the circuit closed", func() bool { return statusShows("closed") })
	if got := app.metric(t, `fraiseql_observer_endpoint_transitions_total{`+endpoint+`,state="closed"}`); got < 2 {
		t.Errorf(`transitions to closed = %v, want the initial state and the recovery`, got)
	}
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Errorf("dead letters = %+v, want none", dl)
	}
	waitFor(t, "the retry store empty", func() bool { return b.parkedItems(t) == 0 })
}

// mustEndpoint names a receiver URL's endpoint as the service does.
func mustEndpoint(t testing.TB, url string) string {
	t.Helper()
	return config.NormalizeEndpoint(url)
}

// logParkedOnFailure has a failed test log the retry store's items by state,
// claim and due time, and the endpoint states the service reported, so that
// a backlog that was not delivered can be told apart: items claimed and
// never settled, items due but skipped, an endpoint left open or probing.
func (b *testBundle) logParkedOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rows, err := b.pool.Query(ctx, `
			SELECT state, coalesce(holder, ''), coalesce(claim_until > now(), false), due_at <= now(), count(*)
			FROM observer.retries GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`)
		if err != nil {
			t.Logf("retry store: %v", err)
			return
		}
		for rows.Next() {
			var state, holder string
			var claimed, due bool
			var n int
			if err := rows.Scan(&state, &holder, &claimed, &due, &n); err != nil {
				t.Logf("retry store: %v", err)
				break
			}
			t.Logf("retry store: %d items state=%s holder=%q claimed=%v due=%v", n, state, holder, claimed, due)
		}
		rows.Close()
		rows, err = b.pool.Query(ctx, `SELECT endpoint, state, consecutive_failures, coalesce(next_probe::text, ''), reported_at::text FROM observer.endpoint_states`)
		if err != nil {
			t.Logf("endpoint states: %v", err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			var endpoint, state, probe, reported string
			var failures int
			if err := rows.Scan(&endpoint, &state, &failures, &probe, &reported); err != nil {
				t.Logf("endpoint states: %v", err)
				return
			}
			t.Logf("endpoint %s: %s, %d consecutive failures, next probe %q, reported %s", endpoint, state, failures, probe, reported)
		}
		logSessions(ctx, t, b.pool)
		logRetryRunnerGoroutines(t)
	})
}

// logSessions logs the database's other sessions grouped by state, wait
// and statement: where the service's connections are and what they wait on.
func logSessions(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
	rows, err := pool.Query(ctx, `
		SELECT coalesce(state, ''), coalesce(wait_event_type || '/' || wait_event, ''), left(regexp_replace(query, '\s+', ' ', 'g'), 100), count(*)
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
		GROUP BY 1, 2, 3 ORDER BY 4 DESC`)
	if err != nil {
		t.Logf("sessions: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var state, wait, query string
		var n int
		if err := rows.Scan(&state, &wait, &query, &n); err != nil {
			t.Logf("sessions: %v", err)
			return
		}
		t.Logf("sessions: %d %s wait=%q: %s", n, state, wait, query)
	}
}

// logRetryRunnerGoroutines logs the stacks of this process's goroutines
// that run parked retries (the service runs in the test's process), so
// that a runner whose items stay claimed shows where they wait.
func logRetryRunnerGoroutines(t *testing.T) {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	stacks := map[string]int{}
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if !strings.Contains(g, "RetryRunner") || strings.Contains(g, "logRetryRunnerGoroutines") {
			continue
		}
		header, frames, _ := strings.Cut(g, "\n") // "goroutine N [state]:", then the frames
		_, state, _ := strings.Cut(header, " [")
		stacks["["+state+"\n"+frames]++
	}
	for st, n := range stacks {
		t.Logf("%d retry-runner goroutines %s", n, st)
	}
}

// parkedItems counts the rows of observer.retries.
func (b *testBundle) parkedItems(t testing.TB) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM observer.retries`).Scan(&n); err != nil {
		t.Fatalf("count parked items: %v", err)
	}
	return n
}

// TestDeliveryLogRecordsAttempts: with delivery.log = "failures" each
// failed attempt is recorded with its status code, attempt number and
// endpoint, successes are not; `deliveries` lists them by event.
func TestDeliveryLogRecordsAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recv := newReceiver(t, func(rc receipt) int {
		if rc.Attempt <= 2 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	b.start(t, b.config(webhookObserver("orders", "Order", recv.URL(), durablePolicy(5, time.Second))))
	id := b.insert(t, orders(1)...)[0]
	recv.waitDelivered(t, []string{id})

	env := cliEnv("FRAISEQL_DATABASE_URL=" + b.dbURL)
	var page struct {
		Deliveries []struct {
			EventID    string `json:"event_id"`
			Observer   string `json:"observer"`
			Endpoint   string `json:"endpoint"`
			Attempt    int    `json:"attempt"`
			Trigger    string `json:"trigger"`
			Outcome    string `json:"outcome"`
			StatusCode int    `json:"status_code"`
			Error      string `json:"error"`
		} `json:"deliveries"`
	}
	waitFor(t, "two failed attempts in the delivery log", func() bool {
		out, errOut, code := cli(t, env, "deliveries", "--event", id, "--json")
		if code != 0 {
			t.Fatalf("deliveries exit %d: %s", code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatalf("deliveries --json: %v\n%s", err, out)
		}
		return len(page.Deliveries) >= 2
	})
	if len(page.Deliveries) != 2 {
		t.Fatalf("deliveries = %+v, want the two failed attempts only (failures mode)", page.Deliveries)
	}
	for i, d := range page.Deliveries { // newest first
		if d.EventID != id || d.Observer != "orders" || d.Endpoint != mustEndpoint(t, recv.URL()) || d.Attempt != 2-i ||
			d.Trigger != "live" || d.Outcome != "transient" || d.StatusCode != http.StatusBadGateway || !strings.Contains(d.Error, "502") {
			t.Errorf("deliveries[%d] = %+v", i, d)
		}
	}
	out, errOut, code := cli(t, env, "deliveries", "--status", "502", "--observer", "orders")
	if code != 0 || strings.Count(out, id) != 2 || !strings.Contains(out, "transient") {
		t.Errorf("deliveries --status 502 (table) exit %d:\n%s%s", code, out, errOut)
	}
	if out, _, code := cli(t, env, "deliveries", "--status", "ok", "--json"); code != 0 || strings.Contains(out, id) {
		t.Errorf("deliveries --status ok listed a success in failures mode:\n%s", out)
	}
	if _, errOut, code := cli(t, env, "deliveries", "--status", "meh"); code != 2 || !strings.Contains(errOut, "status") {
		t.Errorf("deliveries --status meh: exit %d, %s; want 2 naming status", code, errOut)
	}
}

// startWithToken starts the App with the admin API open under token.
func (b *testBundle) startWithToken(t testing.TB, cfg config.Config, token string) *runningApp {
	t.Helper()
	cfg.HTTP.AdminTokenEnv = "TEST_ADMIN_TOKEN"
	app, err := bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: b.logger, LookupEnv: func(k string) (string, bool) {
		if k == "TEST_ADMIN_TOKEN" {
			return token, true
		}
		return "", false
	}})
	if err != nil {
		t.Fatalf("bootstrap.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningApp{app: app, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- app.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// TestResendRedeliversAndIsRecorded: resend re-runs the actions of an
// event that was delivered, past dedup and the result cache, from the
// command line and from the admin API, and the delivery log records it.
func TestResendRedeliversAndIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recv := newReceiver(t, nil)
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), nil))
	cfg.Performance.EnableDedup, cfg.Performance.EnableCaching = true, true
	cfg.Delivery.Log = "all"
	app := b.startWithToken(t, cfg, "sesame")
	ids := b.insert(t, orders(2)...)
	recv.waitDelivered(t, ids)

	env := cliEnv("FRAISEQL_DATABASE_URL="+b.dbURL, "FRAISEQL_DELIVERY_LOG=all", "FRAISEQL_SECURITY_ALLOWED_NETWORKS=127.0.0.1/32")
	cfgFile := writeFile(t, "resend.toml", fmt.Sprintf("[[observers]]\nname = \"orders\"\nentity = \"Order\"\nevents = [\"INSERT\"]\n[[observers.actions]]\ntype = \"webhook\"\nurl = %q\ntimeout = \"10s\"\n", recv.URL()))
	out, errOut, code := cli(t, env, "resend", ids[0], "--config", cfgFile, "--json")
	if code != 0 {
		t.Fatalf("resend exit %d: %s%s", code, out, errOut)
	}
	var rep struct {
		Store     string `json:"store"`
		Succeeded int    `json:"succeeded"`
		Failed    int    `json:"failed"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Succeeded != 1 || rep.Failed != 0 || rep.Store != "database" {
		t.Fatalf("resend report %s: %+v %v", out, rep, err)
	}
	// The running service's admin API, past its dedup marks and cache.
	status, body := httpPost(t, "http://"+app.app.HTTPAddr()+"/api/observers/events/"+ids[1]+"/resend", "sesame", `{"observer": "orders"}`)
	if status != http.StatusOK || !strings.Contains(body, `"succeeded": 1`) {
		t.Fatalf("POST resend = %d %s", status, body)
	}
	waitFor(t, "both events delivered twice", func() bool {
		n := recv.deliveredByEvent()
		return n[ids[0]] == 2 && n[ids[1]] == 2
	})
	waitFor(t, "the resends in the delivery log", func() bool {
		var n int
		if err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM observer.deliveries WHERE trigger = 'resend' AND outcome = 'succeeded'
			AND status_code = 204 AND event_id = ANY($1)`, ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 2
	})
	if _, errOut, code := cli(t, env, "resend", newUUID(), "--config", cfgFile); code != 1 || !strings.Contains(errOut, "not in the change log") {
		t.Errorf("resend of an unknown event: exit %d, %s; want 1 saying it is not in the change log", code, errOut)
	}
	if _, errOut, code := cli(t, env, "resend", ids[0], "--config", cfgFile, "--observer", "nope"); code != 2 || !strings.Contains(errOut, "nope") {
		t.Errorf("resend to an unknown observer: exit %d, %s; want 2 naming it", code, errOut)
	}
}

func httpPost(t testing.TB, url, token, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestNATSWorkersParkAndAck: in the NATS topology a worker parks what its
// in-memory attempts did not deliver in the state database and acks the
// message, so a dead receiver's messages do not fill max_ack_pending;
// the workers' retry runner delivers them once the receiver is back.
func TestNATSWorkersParkAndAck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := newJSEnv(t)
	recv, down := switchReceiver(t)
	down.Store(true)
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), durablePolicy(2, 2*time.Second)))
	e.configure(&cfg, "all")
	cfg.NATS.Consumer.MaxAckPending = 50 // fewer than the events: parked messages must be acked
	// The test helper's 3 connections would starve the retry runner: its
	// 32 items in flight, and its next claim, queue behind each other for
	// them (one Complete per delivered item), so that on a loaded machine
	// the backlog is delivered in pool hand-offs, each waiting for a
	// goroutine to be scheduled, and can take longer than waitTimeout.
	cfg.Database.MaxConnections = config.Defaults().Database.MaxConnections
	cfg.Delivery.BreakerFailures = 5
	cfg.Delivery.ProbeInterval = time.Second
	b.start(t, cfg)
	b.logParkedOnFailure(t)

	const n = 200
	insertBacklog(t, b.pool, n)
	ids := b.eventIDs(t)
	waitFor(t, "every message acknowledged while the receiver is down", func() bool {
		ci := e.consumerInfo(t)
		return ci.NumAckPending == 0 && ci.NumPending == 0 && b.parkedItems(t) == n
	})
	if got := len(recv.delivered()); got != 0 {
		t.Fatalf("%d deliveries while the receiver was down", got)
	}
	down.Store(false)
	recv.waitDelivered(t, ids)
	waitFor(t, "the retry store empty", func() bool { return b.parkedItems(t) == 0 })
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Errorf("%d dead letters, want none", len(dl))
	}
}
