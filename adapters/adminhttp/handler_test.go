package adminhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// runtime is a fake adminhttp.Runtime whose answers are fields.
type runtime struct {
	mu        sync.Mutex
	ready     bool
	status    admin.LiveStatus
	reloadErr error
	posted    []string
	postErr   error
}

var _ adminhttp.Runtime = (*runtime)(nil)

func (r *runtime) Ready(context.Context) (bool, map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ready {
		return false, map[string]string{"database": "down"}
	}
	return true, map[string]string{"database": "ok"}
}

func (r *runtime) Status() admin.LiveStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *runtime) Reload() error { return r.reloadErr }

func (r *runtime) PostEvents(_ context.Context, body io.Reader) (adminhttp.PostedEvents, error) {
	if r.postErr != nil {
		return adminhttp.PostedEvents{Accepted: 1}, r.postErr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return adminhttp.PostedEvents{}, err
	}
	var res adminhttp.PostedEvents
	for i, line := range strings.Fields(string(b)) {
		if line != "{}" {
			res.Invalid++
			res.InvalidLines = append(res.InvalidLines, adminhttp.InvalidLine{Line: i + 1, Error: "not an event"})
			continue
		}
		res.Accepted++
	}
	r.mu.Lock()
	r.posted = append(r.posted, strings.Fields(string(b))...)
	r.mu.Unlock()
	return res, nil
}

type bundle struct {
	rt      *runtime
	src     *memory.Source
	cps     *memory.Checkpoints
	lease   *memory.Lease
	dl      *memory.DeadLetters
	retries *memory.Retries
	states  *memory.EndpointStates
	log     *memory.DeliveryLog
	state   *admin.State
	srv     *httptest.Server
	handler *adminhttp.Handler
	calls   map[string]int
	mu      sync.Mutex
}

// newBundle makes the memory stores, the runtime and the state use cases
// of a test; serve starts its server.
func newBundle(t *testing.T) *bundle {
	t.Helper()
	src, err := memory.NewSource(nil, memory.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	lease := memory.NewLease(nil)
	b := &bundle{rt: &runtime{ready: true}, src: src, cps: memory.NewCheckpointsWithLease(lease), lease: lease,
		dl: memory.NewDeadLetters(nil), states: memory.NewEndpointStates(), log: memory.NewDeliveryLog(0), calls: map[string]int{}}
	b.retries = memory.NewRetries(b.dl, nil)
	b.rt.status = admin.LiveStatus{Topology: "memory", Role: "all", Observers: 1,
		Readers: map[string]application.ReaderStatus{"default": {State: application.ReaderReading, Running: true, ReadAt: ports.Position{Seq: 2}}}}
	store := &admin.Store{Name: "memory", Checkpoints: b.cps, Leases: b.lease, DeadLetters: b.dl, ChangeLog: src,
		Retries: b.retries, Endpoints: b.states, Readers: []admin.Reader{admin.ReaderOf("default")}}
	b.state = &admin.State{Topology: "memory", Stores: admin.Stores{Primary: store}, Holder: "me", LeaseTTL: time.Minute,
		Logger: slog.New(slog.DiscardHandler)}
	return b
}

// config is the API over b's stores with token and no optional route.
func (b *bundle) config(token string) adminhttp.Config {
	return adminhttp.Config{
		Token: token, TokenEnv: "FRAISEQL_ADMIN_TOKEN", Runtime: b.rt, State: b.state, Logger: b.state.Logger,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metric 1\n") }),
	}
}

// serve builds the handler of cfg and serves it through conform, so that
// every answer is checked against openapi.json; its routes join those a
// full run must see answer 2xx.
func (b *bundle) serve(t *testing.T, cfg adminhttp.Config) {
	t.Helper()
	h, err := adminhttp.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.handler = h
	seen.Lock()
	for _, r := range h.Routes() {
		seen.routes[r] = true
	}
	seen.Unlock()
	b.srv = httptest.NewServer(conform(t, h))
	t.Cleanup(b.srv.Close)
}

// setup serves the whole API (every optional route) over memory stores
// with token ("" closes it); the executor's "fail-hook" action fails.
func setup(t *testing.T, token string) *bundle {
	t.Helper()
	b := newBundle(t)
	obs := domain.Observer{Name: "hooks", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, Retry: domain.DefaultRetryPolicy,
		Actions: []domain.Action{{Name: "ok-hook", Type: domain.ActionLog}, {Name: "fail-hook", Type: domain.ActionLog}}}
	m := domain.NewMatcher([]domain.Observer{obs})
	exec := ports.ActionExecutorFunc(func(_ context.Context, _ *domain.Event, _ *domain.Observer, act *domain.Action) error {
		b.mu.Lock()
		b.calls[act.Name]++
		b.mu.Unlock()
		if act.Name == "fail-hook" {
			return errors.New("status 500")
		}
		return nil
	})
	retrier := &application.DeadLetterRetrier{Store: b.dl, Executor: exec, Matcher: func() *domain.Matcher { return m }}
	resender := &application.Resender{Executor: exec, Matcher: func() *domain.Matcher { return m }}
	cfg := b.config(token)
	cfg.DeadLetters = &admin.DeadLetters{Store: b.dl, Retrier: func(context.Context) (*application.DeadLetterRetrier, error) { return retrier, nil }}
	cfg.Endpoints = &admin.Endpoints{Retries: b.retries}
	cfg.Deliveries = &admin.Deliveries{Log: b.log}
	cfg.Resend = &admin.Resend{Stores: b.state.Stores, Resender: func(context.Context) (*application.Resender, error) { return resender, nil }}
	b.serve(t, cfg)
	return b
}

// call sends a request with token (none when "") and decodes the JSON
// answer.
func (b *bundle) call(t *testing.T, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: body is not a JSON object: %v\n%s", method, path, err, raw)
		}
	}
	return resp.StatusCode, out
}

func (b *bundle) addDeadLetter(t *testing.T, observer, action string, raw []byte) int64 {
	t.Helper()
	d := ports.DeadLetter{Event: domain.Event{ID: "ev-" + action, EventType: domain.EventInsert, EntityType: "Order", EntityID: "o1"},
		Observer: observer, Action: action, ActionType: domain.ActionLog, Error: "boom", Attempts: 5, Raw: raw}
	id, err := b.dl.Add(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestHealthReadyMetricsAndToken(t *testing.T) {
	t.Parallel()
	b := setup(t, "tok")
	cases := []struct {
		method, path, token string
		code                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/api/observers/status", "", 401},
		{"GET", "/api/observers/status", "wrong", 401},
		{"GET", "/api/observers/status", "tok", 200},
		{"GET", "/api/observers/nothing-here", "tok", 404},
	}
	for _, c := range cases {
		if code, _ := b.call(t, c.method, c.path, c.token, ""); code != c.code {
			t.Errorf("%s %s (token %q) = %d, want %d", c.method, c.path, c.token, code, c.code)
		}
	}
	if code, body := b.call(t, "GET", "/api/observers/status", "tok", ""); code != 200 || body["topology"] != "memory" ||
		body["readers"].(map[string]any)["default"].(map[string]any)["running"] != true {
		t.Errorf("status = %d %v", code, body)
	}
	b.rt.mu.Lock()
	b.rt.ready = false
	b.rt.mu.Unlock()
	if code, body := b.call(t, "GET", "/readyz", "", ""); code != 503 || body["database"] != "down" {
		t.Errorf("readyz of a process that is not ready = %d %v", code, body)
	}
	resp, err := http.Get(b.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(raw) != "metric 1\n" {
		t.Errorf("/metrics = %q, want the handed-in handler's", raw)
	}

	closed := setup(t, "")
	if code, body := closed.call(t, "GET", "/api/observers/status", "anything", ""); code != 403 || body["error"] == nil {
		t.Errorf("API without a configured token = %d %v, want 403", code, body)
	}
}

// With a metrics token, /metrics needs it (and only it: the admin token
// does not open it, nor does the metrics token open the API).
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	cfg := b.config("admin-tok")
	cfg.MetricsToken = "scrape-tok"
	b.serve(t, cfg)
	for _, c := range []struct {
		path, token string
		code        int
	}{
		{"/metrics", "", 401},
		{"/metrics", "admin-tok", 401},
		{"/metrics", "scrape-tok", 200},
		{"/api/observers/status", "scrape-tok", 401},
		{"/api/observers/status", "admin-tok", 200},
		{"/healthz", "", 200},
	} {
		req, err := http.NewRequestWithContext(t.Context(), "GET", b.srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("GET %s (token %q) = %d %s, want %d", c.path, c.token, resp.StatusCode, raw, c.code)
		}
		if c.path == "/metrics" && c.code == 401 && (resp.Header.Get("WWW-Authenticate") != "Bearer" || strings.Contains(string(raw), "metric 1")) {
			t.Errorf("refused /metrics: WWW-Authenticate %q, body %q", resp.Header.Get("WWW-Authenticate"), raw)
		}
		if c.path == "/metrics" && c.code == 200 && string(raw) != "metric 1\n" {
			t.Errorf("/metrics with its token = %q", raw)
		}
	}
}

func TestReloadAndEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, "tok")
	if code, body := b.call(t, "POST", "/api/observers/reload", "tok", ""); code != 200 || body["observers"] != float64(1) {
		t.Errorf("reload = %d %v", code, body)
	}
	b.rt.reloadErr = errors.New("condition: bad")
	if code, body := b.call(t, "POST", "/api/observers/reload", "tok", ""); code != 422 || body["error"] != "condition: bad" {
		t.Errorf("failed reload = %d %v", code, body)
	}
	if code, body := b.call(t, "POST", "/api/observers/events", "tok", "{}\n{}\n"); code != 202 || body["accepted"] != float64(2) || body["invalid"] != float64(0) {
		t.Errorf("post events = %d %v", code, body)
	}
	// A line that is not an event is refused and reported; the others are
	// taken. A body of which no line is an event is refused (400).
	if code, body := b.call(t, "POST", "/api/observers/events", "tok", "{}\nnope\n{}\n"); code != 202 || body["accepted"] != float64(2) ||
		body["invalid"] != float64(1) || fmt.Sprint(body["invalid_lines"]) != "[map[error:not an event line:2]]" {
		t.Errorf("post events with a bad line = %d %v", code, body)
	}
	if code, body := b.call(t, "POST", "/api/observers/events", "tok", "[\n1\n]\n"); code != 400 || body["accepted"] != float64(0) ||
		body["invalid"] != float64(3) || !strings.Contains(fmt.Sprint(body["error"]), "no line is an event") {
		t.Errorf("post of a body with no event = %d %v, want 400", code, body)
	}
	// A body over 16 MiB is cut where the bound falls, and refused as too large.
	big := strings.Repeat("{}\n", (16<<20)/3+10)
	if code, body := b.call(t, "POST", "/api/observers/events", "tok", big); code != 413 || !strings.Contains(fmt.Sprint(body["error"]), "over 16 MiB") {
		t.Errorf("post of a body over the bound = %d %v, want 413", code, body["error"])
	}
	b.rt.postErr = errors.New("line 3: read: connection reset")
	if code, body := b.call(t, "POST", "/api/observers/events", "tok", "x"); code != 400 || body["error"] != "line 3: read: connection reset" || body["accepted"] != float64(1) {
		t.Errorf("post whose body cannot be read = %d %v", code, body)
	}
	b.rt.postErr = adminhttp.ErrNoEventInput
	if code, _ := b.call(t, "POST", "/api/observers/events", "tok", "{}"); code != 404 {
		t.Errorf("post events to a topology without input = %d, want 404", code)
	}
	b.rt.postErr = fmt.Errorf("line 1: the event log is full: %w", ports.ErrUnavailable)
	if code, body := b.call(t, "POST", "/api/observers/events", "tok", "{}"); code != 503 || !strings.Contains(fmt.Sprint(body["error"]), "full") {
		t.Errorf("post events to a full log = %d %v, want 503", code, body)
	}
}

func TestDeadLettersAndCheckpoints(t *testing.T) {
	t.Parallel()
	b := setup(t, "tok")
	ctx := t.Context()
	ok := b.addDeadLetter(t, "hooks", "ok-hook", nil)
	fail := b.addDeadLetter(t, "hooks", "fail-hook", nil)
	input := b.addDeadLetter(t, "", "", []byte("garbage"))
	if err := b.cps.Save(ctx, "other", ports.Position{TxID: 5, Seq: 9}); err != nil {
		t.Fatal(err)
	}
	// This process's reader holds the lease of "default".
	if held, err := b.lease.Acquire(ctx, "reader:default", "me", time.Minute); err != nil || !held {
		t.Fatal(held, err)
	}
	id := func(n int64) string { return strconv.FormatInt(n, 10) }
	cases := []struct {
		method, path, body string
		code               int
		check              func(map[string]any) bool
	}{
		{"GET", "/dlq", "", 200, func(m map[string]any) bool {
			items := m["items"].([]any)
			return len(items) == 3 && items[0].(map[string]any)["event"] == nil && m["next_after"] == nil
		}},
		{"GET", "/dlq?observer=hooks&limit=1", "", 200, func(m map[string]any) bool {
			return len(m["items"].([]any)) == 1 && m["next_after"] == float64(ok)
		}},
		{"GET", "/dlq?limit=abc", "", 400, nil},
		{"GET", "/dlq?obsever=hooks", "", 400, func(m map[string]any) bool { return strings.Contains(m["error"].(string), `"obsever"`) }},
		{"POST", "/dlq/retry-all?obsever=hooks", "", 400, func(m map[string]any) bool { return strings.Contains(m["error"].(string), `"obsever"`) }},
		// A parameter given twice: only the first would count, and an
		// empty first observer would retry every observer's dead letters.
		{"POST", "/dlq/retry-all?observer=&observer=other", "", 400, func(m map[string]any) bool {
			return strings.Contains(m["error"].(string), `"observer" given 2 times`)
		}},
		{"GET", "/dlq?observer=hooks&observer=other", "", 400, nil},
		// A route that takes no query refuses one, rather than ignore it.
		{"GET", "/dlq/stats?observer=hooks", "", 400, func(m map[string]any) bool { return strings.Contains(m["error"].(string), "takes none") }},
		{"DELETE", "/dlq/" + id(input) + "?observer=hooks", "", 400, nil},
		{"GET", "/dlq?after=-1", "", 400, nil},
		{"GET", "/dlq/stats", "", 200, func(m map[string]any) bool { return m["total"] == float64(3) }},
		{"GET", "/dlq/" + id(input), "", 200, func(m map[string]any) bool { return m["raw"] == "garbage" && m["raw_encoding"] == "text" }},
		{"GET", "/dlq/999999", "", 404, nil},
		{"GET", "/dlq/abc", "", 400, nil},
		{"POST", "/dlq/" + id(ok) + "/retry", "", 200, func(m map[string]any) bool { return m["status"] == "succeeded" }},
		{"POST", "/dlq/" + id(input) + "/retry", "", 409, func(m map[string]any) bool { return m["result"] != nil }},
		{"POST", "/dlq/999999/retry", "", 404, nil},
		{"POST", "/dlq/retry-all", "", 200, func(m map[string]any) bool {
			return m["succeeded"] == float64(0) && m["failed"] == float64(1) && m["not_retryable"] == float64(1)
		}},
		{"GET", "/dlq/" + id(fail), "", 200, func(m map[string]any) bool { return m["attempts"] == float64(6) }},
		{"DELETE", "/dlq/" + id(input), "", 200, func(m map[string]any) bool { return m["removed"] == float64(input) }},
		{"DELETE", "/dlq/" + id(input), "", 404, nil},
		{"GET", "/checkpoints", "", 200, func(m map[string]any) bool {
			cps := m["checkpoints"].([]any)
			return len(cps) == 2 && cps[0].(map[string]any)["name"] == "default" && cps[0].(map[string]any)["reading"] == true
		}},
		{"PUT", "/checkpoints/default", `{"txid": 1, "seq": 0}`, 409, nil},
		{"PUT", "/checkpoints/other", `{"txid": 3, "seq": 4}`, 200, func(m map[string]any) bool {
			p := m["previous"].(map[string]any)
			return p["txid"] == float64(5) && p["seq"] == float64(9) && m["position"].(map[string]any)["seq"] == float64(4)
		}},
		{"PUT", "/checkpoints/unknown", `{"txid": 3, "seq": 4}`, 404, nil},
		{"PUT", "/checkpoints/other", `{"txid": 3}`, 400, nil},
		{"PUT", "/checkpoints/other", `{"txid": 9223372036854775808, "seq": 0}`, 400, func(m map[string]any) bool {
			return strings.Contains(m["error"].(string), "txid 9223372036854775808 is over")
		}},
		{"PUT", "/checkpoints/other", `{"txid": 3, "seq": 4, "extra": 1}`, 400, nil},
	}
	for _, c := range cases {
		code, body := b.call(t, c.method, "/api/observers"+c.path, "tok", c.body)
		if code != c.code || c.check != nil && !c.check(body) {
			t.Errorf("%s %s: %d %v, want %d", c.method, c.path, code, body, c.code)
		}
		if code >= 400 && body["error"] == nil {
			t.Errorf("%s %s: error response without an error message: %v", c.method, c.path, body)
		}
	}
	if pos, _, _ := b.cps.Load(ctx, "other"); pos != (ports.Position{TxID: 3, Seq: 4}) {
		t.Errorf("checkpoint other = %s after PUT, want 3/4", pos)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.calls["ok-hook"] != 1 || b.calls["fail-hook"] != 1 {
		t.Errorf("executor calls = %v, want each retried action once", b.calls)
	}
}

func TestStateAndReplay(t *testing.T) {
	t.Parallel()
	b := setup(t, "tok")
	ctx := t.Context()
	var positions []ports.Position
	for i, age := range []time.Duration{3 * time.Hour, time.Hour, 30 * time.Minute} {
		pos, err := b.src.Append(ctx, domain.Event{EventType: domain.EventInsert, EntityType: "Order", EntityID: "o" + strconv.Itoa(i),
			Timestamp: time.Now().Add(-age)})
		if err != nil {
			t.Fatal(err)
		}
		positions = append(positions, pos)
	}
	if err := b.cps.Save(ctx, "default", positions[2]); err != nil {
		t.Fatal(err)
	}
	code, body := b.call(t, "GET", "/api/observers/state", "tok", "")
	if code != 200 || body["topology"] != "memory" {
		t.Fatalf("state = %d %v", code, body)
	}
	db := body["databases"].([]any)[0].(map[string]any)
	cp := db["checkpoints"].([]any)[0].(map[string]any)
	if db["name"] != "memory" || db["dead_letters_total"] != float64(0) || cp["name"] != "default" || cp["backlog"] != float64(0) ||
		cp["lease"].(map[string]any)["name"] != "reader:default" {
		t.Errorf("state = %v", body)
	}

	if held, err := b.lease.Acquire(ctx, "reader:default", "replica-7", time.Minute); err != nil || !held {
		t.Fatal(held, err)
	}
	for _, c := range []struct {
		body string
		code int
	}{
		{`{"since": "2h"}`, 409},
		{`{"since": "last tuesday"}`, 400},
		{`{"since": "2h", "reader": "nope"}`, 400},
		{`{"since": "2h", "extra": 1}`, 400},
		// A second document would be ignored; a body over the bound is
		// named as such, not an "unexpected EOF" of a cut document.
		{`{"since": "2h"} {"since": "1h", "reader": "default"}`, 400},
		{`{"since": "2h", "reader": "` + strings.Repeat("r", 70000) + `"}`, 413},
	} {
		if code, body := b.call(t, "POST", "/api/observers/replay", "tok", c.body); code != c.code || body["error"] == nil {
			t.Errorf("replay %s = %d %v, want %d", c.body, code, body, c.code)
		}
	}
	if err := b.lease.Release(ctx, "reader:default", "replica-7"); err != nil {
		t.Fatal(err)
	}
	code, body = b.call(t, "POST", "/api/observers/replay", "tok", `{"since": "2h", "reader": "default"}`)
	want := positions[0] // the entry before the first one created in the last 2h
	if code != 200 || body["moved"] != true || body["reread"] != float64(2) ||
		body["new"].(map[string]any)["seq"] != float64(want.Seq) || body["reader"] != "default" {
		t.Errorf("replay = %d %v", code, body)
	}
	if pos, _, _ := b.cps.Load(ctx, "default"); pos != want {
		t.Errorf("checkpoint after replay = %s, want %s", pos, want)
	}
}

// listFailsAfter is a dead-letter store whose listings after the first
// ok ones fail with err.
type listFailsAfter struct {
	*memory.DeadLetters
	ok    int32
	err   error
	lists atomic.Int32
}

func (f *listFailsAfter) List(ctx context.Context, q ports.DeadLetterFilter) ([]ports.DeadLetter, error) {
	if f.lists.Add(1) > f.ok {
		return nil, f.err
	}
	return f.DeadLetters.List(ctx, q)
}

// A store that is not set up (not migrated) cannot serve: 503 with the
// error, which says to migrate (it was 500, "an unexpected failure").
func TestNotMigratedStoreIs503(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	cfg := b.config("tok")
	cfg.DeadLetters = &admin.DeadLetters{Store: &listFailsAfter{DeadLetters: b.dl, err: fmt.Errorf("list dead letters: %w", ports.ErrNotMigrated)}}
	b.serve(t, cfg)
	if code, body := b.call(t, http.MethodGet, "/api/observers/dlq", "tok", ""); code != http.StatusServiceUnavailable || body["error"] == nil {
		t.Errorf("GET /dlq with the store not migrated = %d %v, want 503 with the error", code, body)
	}
}

// TestRetryAllStoppedAnswersWhatItDid: a retry-all the store stops after
// a page of items (retried, and removed: they succeeded) answers 503
// with the error and the report of what it did. Before, the answer was
// the error alone: the operator could not tell what had run.
func TestRetryAllStoppedAnswersWhatItDid(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	obs := domain.Observer{Name: "hooks", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, Retry: domain.DefaultRetryPolicy,
		Actions: []domain.Action{{Name: "ok-hook", Type: domain.ActionLog}}}
	m := domain.NewMatcher([]domain.Observer{obs})
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	store := &listFailsAfter{DeadLetters: b.dl, ok: 1, err: fmt.Errorf("db gone: %w", ports.ErrUnavailable)}
	retrier := &application.DeadLetterRetrier{Store: store, Executor: exec, Matcher: func() *domain.Matcher { return m }}
	for range admin.DefaultLimit + 1 {
		b.addDeadLetter(t, "hooks", "ok-hook", nil)
	}
	cfg := b.config("tok")
	cfg.DeadLetters = &admin.DeadLetters{Store: store, Retrier: func(context.Context) (*application.DeadLetterRetrier, error) { return retrier, nil }}
	b.serve(t, cfg)
	code, out := b.call(t, http.MethodPost, "/api/observers/dlq/retry-all", "tok", "")
	rep, _ := out["report"].(map[string]any)
	if code != http.StatusServiceUnavailable || rep == nil || rep["succeeded"] != float64(admin.DefaultLimit) {
		t.Fatalf("retry-all stopped by the store = %d %v, want 503 with the report of the %d items retried", code, out, admin.DefaultLimit)
	}
	if msg, _ := out["error"].(string); !strings.Contains(msg, fmt.Sprintf("stopped after %d", admin.DefaultLimit)) {
		t.Errorf("error %q should say how far it went", msg)
	}
}
