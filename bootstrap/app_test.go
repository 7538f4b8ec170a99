package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// receiver records webhook bodies.
type receiver struct {
	mu     sync.Mutex
	bodies []map[string]any
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(req.Body).Decode(&body)
	r.mu.Lock()
	r.bodies = append(r.bodies, body)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.WaitUntil(t, 10*time.Second, 10*time.Millisecond, what, cond)
}

type memoryBundle struct {
	app     *bootstrap.App
	recv    *receiver
	obsFile string
	stop    func()
	recvURL string
}

// setupMemory runs the memory topology with observers from observers_file.
func setupMemory(t *testing.T, observers string) *memoryBundle {
	t.Helper()
	return setupMemoryWith(t, observers, "", &receiver{})
}

// setupMemoryWith is setupMemory with extra [reader] keys and the
// receiver's handler.
func setupMemoryWith(t *testing.T, observers, readerKeys string, handler http.Handler) *memoryBundle {
	t.Helper()
	return setupMemoryLogged(t, observers, readerKeys, handler, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// setupMemoryLogged is setupMemoryWith logging to logger.
func setupMemoryLogged(t *testing.T, observers, readerKeys string, handler http.Handler, logger *slog.Logger) *memoryBundle {
	t.Helper()
	recv, _ := handler.(*receiver)
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	obsFile := filepath.Join(dir, "observers.toml")
	if err := os.WriteFile(obsFile, []byte(strings.ReplaceAll(observers, "RECEIVER", srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.toml")
	body := "topology = \"memory\"\nobservers_file = \"" + obsFile + "\"\n[http]\nlisten = \"127.0.0.1:0\"\n[security]\nallowed_networks = [\"127.0.0.1/32\"]\n[reader]\ncheckpoint_interval = \"50ms\"\n" + readerKeys
	if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		if k == "FRAISEQL_ADMIN_TOKEN" {
			return "tok", true
		}
		return "", false
	}
	app, stop := runApp(t, cfg, bootstrap.Options{Logger: logger, LookupEnv: env})
	return &memoryBundle{app: app, recv: recv, obsFile: obsFile, stop: stop, recvURL: srv.URL}
}

// runApp builds the app of cfg and runs it until stop (called at the
// test's end when the test did not).
func runApp(t *testing.T, cfg config.Config, opts bootstrap.Options) (app *bootstrap.App, stop func()) {
	t.Helper()
	app, err := bootstrap.New(t.Context(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		app.Close()
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return app, stop
}

const shippedObserver = `
[[observers]]
name = "shipped"
entity = "Order"
events = ["UPDATE"]
condition = "status == 'shipped' && field_changed('status')"
[[observers.actions]]
type = "webhook"
url = "RECEIVER/hook"
body_template = '{"id": "{{ event.entity_id }}", "status": "{{ status }}"}'
`

func TestMemoryTopologyDeliversAndReloads(t *testing.T) {
	t.Parallel()
	b := setupMemory(t, shippedObserver)
	src := b.app.MemorySource()
	ctx := t.Context()
	mustAppend := func(ev domain.Event) {
		t.Helper()
		if _, err := src.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(domain.Event{EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o1",
		Data: map[string]any{"status": "shipped"}, Before: map[string]any{"status": "pending"},
		Changes: map[string]domain.Change{"status": {Old: "pending", New: "shipped"}}})
	mustAppend(domain.Event{EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o2",
		Data: map[string]any{"status": "pending"}})
	waitFor(t, "first delivery", func() bool { return b.recv.count() == 1 })
	b.recv.mu.Lock()
	got := b.recv.bodies[0]
	b.recv.mu.Unlock()
	if got["id"] != "o1" || got["status"] != "shipped" {
		t.Fatalf("body = %v", got)
	}

	// Reload with an observer for every Order update, through the admin API.
	all := strings.ReplaceAll(`
[[observers]]
name = "every-update"
entity = "Order"
events = ["UPDATE"]
[[observers.actions]]
type = "webhook"
url = "RECEIVER/hook"
`, "RECEIVER", b.recvURL)
	if err := os.WriteFile(b.obsFile, []byte(all), 0o600); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+b.app.HTTPAddr()+"/api/observers/reload", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload status %d", resp.StatusCode)
	}
	mustAppend(domain.Event{EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o3",
		Data: map[string]any{"status": "pending"}})
	waitFor(t, "delivery after reload", func() bool { return b.recv.count() == 2 })

	// A broken file keeps the running observers.
	if err := os.WriteFile(b.obsFile, []byte("[[observers]]\nname = \"x\"\nentity = \"Order\"\nevents = [\"UPDATE\"]\ncondition = \"((\"\n[[observers.actions]]\ntype = \"log\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.app.Reload(); err == nil || !strings.Contains(err.Error(), "condition") {
		t.Fatalf("reload of a broken file: %v", err)
	}
	mustAppend(domain.Event{EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o4",
		Data: map[string]any{"status": "pending"}})
	waitFor(t, "delivery with the kept observers", func() bool { return b.recv.count() == 3 })
}

// Without observers_file a reload cannot change the observers (the main
// file's are read at start): it says so, an error wrapping
// admin.ErrNothingToReload (409 from POST /reload), rather than answer
// that it reloaded. Before, the API answered 200 with the count.
func TestReloadWithoutObserversFileSaysSo(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.Topology = config.TopologyMemory
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Observers = []config.ObserverConfig{{Name: "logged", Entity: "Order", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{{Type: "log"}}}}
	env := func(k string) (string, bool) { return "tok", k == "FRAISEQL_ADMIN_TOKEN" }
	app, _ := runApp(t, cfg, bootstrap.Options{Logger: slog.New(slog.DiscardHandler), LookupEnv: env})
	if err := app.Reload(); !errors.Is(err, admin.ErrNothingToReload) || !strings.Contains(err.Error(), "observers_file") {
		t.Errorf("Reload without observers_file = %v, want ErrNothingToReload naming observers_file", err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+app.HTTPAddr()+"/api/observers/reload", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("POST /reload without observers_file = %d, want 409", resp.StatusCode)
	}
}

// A reload that adds batched actions beyond the workers sized at start
// says so (batches could wait out max_wait before they fill).
func TestReloadWarnsOfBatchesBeyondTheStartBudget(t *testing.T) {
	t.Parallel()
	logs := &testsupport.Logs{}
	b := setupMemoryLogged(t, shippedObserver, "", &receiver{}, slog.New(logs))
	batched := strings.ReplaceAll(`
[[observers]]
name = "batched"
entity = "Order"
events = ["UPDATE"]
[[observers.actions]]
type = "webhook"
url = "RECEIVER/hook"
[observers.actions.batch]
max_events = 50
`, "RECEIVER", b.recvURL)
	if err := os.WriteFile(b.obsFile, []byte(batched), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.app.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.Find("reload: the batched actions now ask for more workers than were sized at start; batches may wait out max_wait before they fill: restart to resize")); n != 1 {
		t.Errorf("%d warnings of the workers' budget, want 1", n)
	}
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	b := setupMemory(t, shippedObserver)
	base := "http://" + b.app.HTTPAddr()
	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	waitFor(t, "ready", func() bool { code, _ := get("/readyz", ""); return code == http.StatusOK })
	if code, _ := get("/api/observers/status", ""); code != http.StatusUnauthorized {
		t.Errorf("status without token = %d, want 401", code)
	}
	if code, _ := get("/api/observers/status", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("status with a wrong token = %d, want 401", code)
	}
	code, body := get("/api/observers/status", "tok")
	if code != http.StatusOK || !strings.Contains(body, `"topology": "memory"`) {
		t.Errorf("status = %d %s", code, body)
	}
	// Events posted as JSON lines are processed.
	line := `{"event_type":"UPDATE","entity_type":"Order","entity_id":"o9","data":{"status":"shipped"},"before":{"status":"new"}}`
	req, _ := http.NewRequest(http.MethodPost, base+"/api/observers/events", bytes.NewBufferString(line+"\n"))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("post events = %d", resp.StatusCode)
	}
	waitFor(t, "posted event delivered", func() bool { return b.recv.count() == 1 })
	// The event is counted when it finishes, just after the receiver saw it.
	waitFor(t, "the processed event in /metrics", func() bool {
		code, metrics := get("/metrics", "")
		return code == http.StatusOK && strings.Contains(metrics, `fraiseql_observer_events_processed_total{outcome="ok"} 1`)
	})
}

// The SSRF policy is parsed where the executors are built; a bad entry is
// a configuration error naming the key.
func TestBadAllowedNetworkIsAConfigError(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.Topology = config.TopologyMemory
	cfg.HTTP.Listen = ""
	cfg.Security.AllowedNetworks = []string{"10.0.0.0/33"}
	_, err := bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: slog.New(slog.DiscardHandler)})
	var ce *config.ConfigError
	if !errors.As(err, &ce) || ce.Key != "security.allowed_networks" {
		t.Errorf("New with a bad allowed network = %v, want a ConfigError on security.allowed_networks", err)
	}
}

// TestReadyzTellsReadingFromStalled: /readyz answers 200 "reading" while
// the checkpoint moves, and 503 "stalled" once it has not moved for
// reader.stall_after while an event is unfinished (here a receiver that
// holds the request); the live status says so too. Before, /readyz said
// "reading" whatever happened.
func TestReadyzTellsReadingFromStalled(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hanging := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusNoContent)
	})
	observers := strings.Replace(shippedObserver, "url = \"RECEIVER/hook\"", "url = \"RECEIVER/hook\"\ntimeout = \"60s\"", 1)
	b := setupMemoryWith(t, observers, "stall_after = \"1s\"\n", hanging)
	t.Cleanup(func() { close(release) }) // before the service stops: its action returns
	base := "http://" + b.app.HTTPAddr()
	readyz := func() (int, map[string]string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var detail map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&detail)
		return resp.StatusCode, detail
	}
	waitFor(t, "reading", func() bool { code, d := readyz(); return code == http.StatusOK && d["reader"] == "reading" })
	line := `{"event_type":"UPDATE","entity_type":"Order","entity_id":"o9","data":{"status":"shipped"},"before":{"status":"new"}}`
	if _, err := b.app.PostEvents(t.Context(), strings.NewReader(line+"\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stalled", func() bool {
		code, d := readyz()
		return code == http.StatusServiceUnavailable && strings.HasPrefix(d["reader"], "stalled")
	})
	if st := b.app.Status().Readers["default"]; st.State != "stalled" || st.InFlight != 1 {
		t.Fatalf("status = %+v, want stalled with the event unfinished", st)
	}
}

// An admin request in progress at shutdown sees its context end with the
// service's: it answers at once instead of running on (here a CPU profile
// of 30s) while the stores close under it.
func TestShutdownEndsAdminRequestsInProgress(t *testing.T) {
	t.Parallel()
	cfgFile := filepath.Join(t.TempDir(), "config.toml")
	body := "topology = \"memory\"\n[http]\nlisten = \"127.0.0.1:0\"\npprof = true\n" +
		"[[observers]]\nname = \"o\"\nentity = \"Order\"\nevents = [\"INSERT\"]\n[[observers.actions]]\ntype = \"log\"\n"
	if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) { return "tok", k == "FRAISEQL_ADMIN_TOKEN" }
	app, err := bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: slog.New(slog.DiscardHandler), LookupEnv: env})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- app.Run(ctx) }()

	answered := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+app.HTTPAddr()+"/debug/pprof/profile?seconds=30", nil)
		if err != nil {
			answered <- err
			return
		}
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		answered <- err
	}()
	time.Sleep(300 * time.Millisecond) // the profile under way
	cancel()
	select {
	case err := <-answered:
		if err != nil {
			t.Errorf("the request in progress: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the admin request in progress still runs 15s after shutdown began")
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run has not returned 15s after shutdown began")
	}
}

// http.metrics_token_env puts /metrics behind its own bearer token; a
// variable that is not set refuses to start (closed, never open).
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	cfgFile := filepath.Join(t.TempDir(), "config.toml")
	body := "topology = \"memory\"\n[http]\nlisten = \"127.0.0.1:0\"\nmetrics_token_env = \"SCRAPE_TOKEN\"\n" +
		"[[observers]]\nname = \"log\"\nentity = \"Order\"\nevents = [\"INSERT\"]\n[[observers.actions]]\ntype = \"log\"\n"
	if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, err = bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: logger, LookupEnv: func(string) (string, bool) { return "", false }})
	if err == nil || !strings.Contains(err.Error(), "http.metrics_token_env") || !strings.Contains(err.Error(), "SCRAPE_TOKEN") {
		t.Fatalf("start without the metrics token's variable: %v", err)
	}
	env := func(k string) (string, bool) {
		if k == "SCRAPE_TOKEN" {
			return "scrape-tok", true
		}
		return "", false
	}
	app, _ := runApp(t, cfg, bootstrap.Options{Logger: logger, LookupEnv: env})
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+app.HTTPAddr()+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token = %d, want 401", code)
	}
	if code := get("scrape-tok"); code != http.StatusOK {
		t.Errorf("/metrics with the token = %d, want 200", code)
	}
}
