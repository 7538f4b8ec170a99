package bootstrap_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/operate"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// hookReceiver answers /ok with 200 and /fail with 500, and records the
// entity ids of the bodies it was sent.
type hookReceiver struct {
	mu       sync.Mutex
	requests map[string]int // path -> count
	entities []string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.requests[r.URL.Path]++
	if ev, err := domain.DecodeEvent(body); err == nil {
		h.entities = append(h.entities, ev.EntityID)
	}
	h.mu.Unlock()
	if r.URL.Path == "/fail" {
		http.Error(w, "receiver down", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *hookReceiver) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests[path]
}

func (h *hookReceiver) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.entities...)
}

const operatorObservers = `
[[observers]]
name = "hooks"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
name = "ok-hook"
type = "webhook"
url = "RECEIVER/ok"
[[observers.actions]]
name = "fail-hook"
type = "webhook"
url = "RECEIVER/fail"
`

type opBundle struct {
	cfg  config.Config
	db   *postgres.DB
	dl   *postgres.DeadLetters
	cps  *postgres.Checkpoints
	ls   *postgres.Lease
	op   *operate.Operator
	cmds *admin.DeadLetters
	recv *hookReceiver
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setupOperator migrates a fresh database, writes a configuration whose
// observers post to a local receiver and opens an Operator on it.
func setupOperator(t *testing.T, observers string) *opBundle {
	t.Helper()
	recv := &hookReceiver{requests: map[string]int{}}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	url := testenv.NewDatabase(t)
	file := filepath.Join(t.TempDir(), "config.toml")
	body := "[database]\nurl = \"" + url + "\"\n[http]\nlisten = \"\"\n[security]\nallowed_networks = [\"127.0.0.1/32\"]\n" +
		"[reader]\ncheckpoint_interval = \"50ms\"\nlease_ttl = \"3s\"\n" +
		strings.ReplaceAll(observers, "RECEIVER", srv.URL)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := bootstrap.Migrate(ctx, cfg, quietLogger(), ""); err != nil {
		t.Fatal(err)
	}
	db, err := stores.Connect(ctx, cfg.Database, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	b := &opBundle{cfg: cfg, db: db, recv: recv}
	if b.dl, err = postgres.NewDeadLetters(db.Pool, ""); err != nil {
		t.Fatal(err)
	}
	if b.cps, err = postgres.NewCheckpoints(db.Pool, ""); err != nil {
		t.Fatal(err)
	}
	if b.ls, err = postgres.NewLease(db.Pool, ""); err != nil {
		t.Fatal(err)
	}
	if b.op, err = operate.Open(ctx, cfg, operate.Options{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.op.Close)
	if b.cmds, err = b.op.DeadLetters(); err != nil {
		t.Fatal(err)
	}
	return b
}

func orderEvent(entityID string) domain.Event {
	return domain.Event{
		ID: "ev-" + entityID, EventType: domain.EventInsert, EntityType: "Order", EntityID: entityID,
		Data: map[string]any{"status": "new"}, Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func (b *opBundle) addDeadLetter(t *testing.T, d ports.DeadLetter) int64 {
	t.Helper()
	id, err := b.dl.Add(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (b *opBundle) addAction(t *testing.T, entityID, observer, action string) int64 {
	t.Helper()
	return b.addDeadLetter(t, ports.DeadLetter{Event: orderEvent(entityID), Observer: observer, Action: action,
		ActionType: domain.ActionWebhook, Error: "webhook: status 503", Attempts: 5})
}

func (b *opBundle) addInput(t *testing.T, raw []byte) int64 {
	t.Helper()
	return b.addDeadLetter(t, ports.DeadLetter{Event: domain.Event{ID: "broken"}, Error: "invalid event: not a JSON object",
		Attempts: 1, Raw: raw})
}

func TestOperatorDeadLetters(t *testing.T) {
	t.Parallel()
	b := setupOperator(t, operatorObservers)
	ctx := t.Context()
	first := b.addAction(t, "o1", "hooks", "ok-hook")
	second := b.addAction(t, "o2", "hooks", "fail-hook")
	binary := b.addInput(t, []byte{0xff, 0xfe, 'x'})
	text := b.addInput(t, []byte(`["not an object"]`))

	t.Run("list", func(t *testing.T) {
		cases := []struct {
			name string
			q    admin.DeadLetterQuery
			want []int64
		}{
			{"all", admin.DeadLetterQuery{}, []int64{first, second, binary, text}},
			{"by observer", admin.DeadLetterQuery{Observer: "hooks"}, []int64{first, second}},
			{"page", admin.DeadLetterQuery{Limit: 2, AfterID: first}, []int64{second, binary}},
			{"unknown observer", admin.DeadLetterQuery{Observer: "nobody"}, nil},
		}
		for _, c := range cases {
			items, err := b.cmds.List(ctx, c.q)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			var got []int64
			for _, it := range items {
				got = append(got, it.ID)
			}
			if !equalIDs(got, c.want) {
				t.Errorf("%s: ids %v, want %v", c.name, got, c.want)
			}
		}
	})

	t.Run("show", func(t *testing.T) {
		cases := []struct {
			id       int64
			raw, enc string
			observer string
		}{
			{first, "", "", "hooks"},
			{binary, base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe, 'x'}), "base64", ""},
			{text, `["not an object"]`, "text", ""},
		}
		for _, c := range cases {
			d, err := b.cmds.Get(ctx, c.id)
			if err != nil {
				t.Fatal(err)
			}
			if d.Raw != c.raw || d.RawEncoding != c.enc || d.Observer != c.observer {
				t.Errorf("dead letter %d: raw %q (%s), observer %q; want %q (%s), %q", c.id, d.Raw, d.RawEncoding, d.Observer, c.raw, c.enc, c.observer)
			}
		}
		if _, err := b.cmds.Get(ctx, 999999); !errors.Is(err, ports.ErrNotFound) {
			t.Errorf("unknown id: %v, want ErrNotFound", err)
		}
	})

	t.Run("stats and remove", func(t *testing.T) {
		st, err := b.cmds.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Total != 4 || st.ByObserver["hooks"] != 2 || st.ByObserver[""] != 2 {
			t.Errorf("stats = %+v, want 4: hooks 2, inputs 2", st)
		}
		if err := b.cmds.Remove(ctx, text); err != nil {
			t.Fatal(err)
		}
		if err := b.cmds.Remove(ctx, text); !errors.Is(err, ports.ErrNotFound) {
			t.Errorf("second remove: %v, want ErrNotFound", err)
		}
		if _, err := b.cmds.Get(ctx, text); !errors.Is(err, ports.ErrNotFound) {
			t.Errorf("show after remove: %v, want ErrNotFound", err)
		}
		if st, _ := b.cmds.Stats(ctx); st.Total != 3 || st.ByObserver[""] != 1 {
			t.Errorf("stats after remove = %+v", st)
		}
	})
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOperatorRetry(t *testing.T) {
	t.Parallel()
	b := setupOperator(t, operatorObservers)
	ctx := t.Context()

	ok := b.addAction(t, "o1", "hooks", "ok-hook")
	res, err := b.cmds.Retry(ctx, ok)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != admin.RetrySucceeded || b.recv.count("/ok") != 1 {
		t.Errorf("retry to a 200 receiver: %+v, %d requests", res, b.recv.count("/ok"))
	}
	if _, err := b.cmds.Get(ctx, ok); !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("succeeded item still there: %v", err)
	}

	fail := b.addAction(t, "o2", "hooks", "fail-hook")
	res, err = b.cmds.Retry(ctx, fail)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != admin.RetryFailed || !strings.Contains(res.Error, "500") {
		t.Errorf("retry to a 500 receiver: %+v", res)
	}
	d, err := b.cmds.Get(ctx, fail)
	if err != nil {
		t.Fatal(err)
	}
	if d.Attempts != 6 || !strings.Contains(d.Error, "status 500") || d.LastRetryAt == nil {
		t.Errorf("failed item = attempts %d, error %q, last retry %v; want 6, the new error, a time", d.Attempts, d.Error, d.LastRetryAt)
	}

	input := b.addInput(t, []byte("garbage"))
	res, err = b.cmds.Retry(ctx, input)
	if err != nil || res.Status != admin.RetryNotRetryable {
		t.Errorf("retry of an input = %+v, %v; want not retryable", res, err)
	}
	if _, err := b.cmds.Retry(ctx, 999999); !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("retry of an unknown id: %v, want ErrNotFound", err)
	}
}

func TestOperatorRetryAll(t *testing.T) {
	t.Parallel()
	b := setupOperator(t, operatorObservers)
	ctx := t.Context()
	succeeded := b.addAction(t, "o1", "hooks", "ok-hook")
	failed := b.addAction(t, "o2", "hooks", "fail-hook")
	gone := b.addAction(t, "o3", "hooks", "removed-action")
	input := b.addInput(t, []byte("garbage"))

	rep, err := b.cmds.RetryAll(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Succeeded != 1 || rep.Failed != 1 || rep.NotRetryable != 2 || rep.OK() || len(rep.Results) != 4 {
		t.Fatalf("report = %+v, want 1 succeeded, 1 failed, 2 not retryable", rep)
	}
	want := map[int64]admin.RetryStatus{succeeded: admin.RetrySucceeded, failed: admin.RetryFailed,
		gone: admin.RetryNotRetryable, input: admin.RetryNotRetryable}
	for _, r := range rep.Results {
		if want[r.ID] != r.Status {
			t.Errorf("item %d: %s, want %s", r.ID, r.Status, want[r.ID])
		}
	}
	// Only the failed and the unretryable items remain; the filter limits a
	// second run to one observer.
	st, _ := b.cmds.Stats(ctx)
	if st.Total != 3 {
		t.Errorf("%d items left, want 3", st.Total)
	}
	rep, err = b.cmds.RetryAll(ctx, "nobody")
	if err != nil || len(rep.Results) != 0 || !rep.OK() {
		t.Errorf("retry-all of an observer without items = %+v, %v", rep, err)
	}
}

// changeRow inserts one change-log row in its own transaction and returns
// its position.
func (b *opBundle) changeRow(t *testing.T, entityID string, age time.Duration) ports.Position {
	t.Helper()
	var txid string
	var pk int64
	err := b.db.Pool.QueryRow(t.Context(), `INSERT INTO core.tb_entity_change_log
		(object_type, modification_type, object_id, object_data, created_at)
		VALUES ('Order', 'INSERT', $1::uuid, '{"status": "new"}', now() - $2 * interval '1 second')
		RETURNING txid::text, pk_entity_change_log`, entityID, int64(age/time.Second)).Scan(&txid, &pk)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := strconv.ParseUint(txid, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return ports.Position{TxID: tx, Seq: pk}
}

func TestOperatorStatus(t *testing.T) {
	t.Parallel()
	b := setupOperator(t, operatorObservers)
	ctx := t.Context()
	p1 := b.changeRow(t, "00000000-0000-0000-0000-000000000001", time.Minute)
	b.changeRow(t, "00000000-0000-0000-0000-000000000002", 0)
	b.changeRow(t, "00000000-0000-0000-0000-000000000003", 0)
	if err := b.cps.Save(ctx, "default", p1); err != nil {
		t.Fatal(err)
	}
	if err := b.cps.Save(ctx, "old-reader", ports.Position{}); err != nil {
		t.Fatal(err)
	}
	if held, err := b.ls.Acquire(ctx, "reader:default", "replica-7", time.Minute); err != nil || !held {
		t.Fatalf("acquire: %v %v", held, err)
	}
	b.addAction(t, "o1", "hooks", "ok-hook")
	b.addAction(t, "o2", "hooks", "fail-hook")
	b.addInput(t, []byte("x"))

	rep, err := b.op.State.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Databases) != 1 {
		t.Fatalf("databases = %+v", rep.Databases)
	}
	d := rep.Databases[0]
	if d.DeadLetterTotal != 3 || d.DeadLetters["hooks"] != 2 || d.DeadLetters[""] != 1 {
		t.Errorf("dead letters = %d %v", d.DeadLetterTotal, d.DeadLetters)
	}
	if len(d.Checkpoints) != 2 {
		t.Fatalf("checkpoints = %+v", d.Checkpoints)
	}
	def, old := d.Checkpoints[0], d.Checkpoints[1]
	if def.Name != "default" || !def.Configured || !def.Stored || def.Position != p1 || def.Backlog != 2 || def.UpdatedAt == nil {
		t.Errorf("default checkpoint = %+v, want stored at %s with backlog 2", def, p1)
	}
	if !def.Lease.Active || def.Lease.Holder != "replica-7" || def.Lease.Name != "reader:default" {
		t.Errorf("default lease = %+v, want held by replica-7", def.Lease)
	}
	if old.Name != "old-reader" || old.Configured || old.Backlog != 3 || old.Lease.Holder != "" {
		t.Errorf("other checkpoint = %+v, want unconfigured, backlog 3, free", old)
	}
}

func TestOperatorReplay(t *testing.T) {
	t.Parallel()
	b := setupOperator(t, `
[[observers]]
name = "orders"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
url = "RECEIVER/ok"
`)
	ctx := t.Context()
	ids := []string{"00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b", "00000000-0000-0000-0000-00000000000c"}
	b.changeRow(t, ids[0], 3*time.Hour)
	p2 := b.changeRow(t, ids[1], time.Hour)
	p3 := b.changeRow(t, ids[2], 30*time.Minute)
	if err := b.cps.Save(ctx, "default", p3); err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-2 * time.Hour)

	// Refused while another process holds the reader's lease.
	if held, err := b.ls.Acquire(ctx, "reader:default", "replica-7", time.Minute); err != nil || !held {
		t.Fatalf("acquire: %v %v", held, err)
	}
	if _, err := b.op.State.Replay(ctx, "", since); !errors.Is(err, admin.ErrReaderRunning) || !strings.Contains(err.Error(), "replica-7") {
		t.Fatalf("replay under a held lease: %v, want ErrReaderRunning naming the holder", err)
	}
	if pos, _, _ := b.cps.Load(ctx, "default"); pos != p3 {
		t.Fatalf("checkpoint moved to %s while refused", pos)
	}
	if err := b.ls.Release(ctx, "reader:default", "replica-7"); err != nil {
		t.Fatal(err)
	}

	if _, err := b.op.State.Replay(ctx, "nope", since); err == nil {
		t.Error("replay of an unknown reader succeeded")
	}
	res, err := b.op.State.Replay(ctx, "", since)
	if err != nil {
		t.Fatal(err)
	}
	want := ports.Position{TxID: p2.TxID, Seq: p2.Seq - 1}
	if !res.Moved || res.Old != p3 || res.New != want || res.Reread != 2 || res.Backlog != 2 {
		t.Fatalf("replay = %+v, want moved from %s to %s, 2 rows", res, p3, want)
	}
	if pos, _, _ := b.cps.Load(ctx, "default"); pos != want {
		t.Fatalf("stored checkpoint %s, want %s", pos, want)
	}
	// The lease was released: a second replay to a later time does not
	// move forward.
	res, err = b.op.State.Replay(ctx, "", time.Now().Add(-45*time.Minute))
	if err != nil || res.Moved || res.Reason == "" {
		t.Errorf("replay forward = %+v, %v; want unchanged with a reason", res, err)
	}

	// A service started now delivers the two replayed events again, not the
	// older one.
	app, err := bootstrap.New(ctx, b.cfg, bootstrap.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(rctx) }()
	waitFor(t, "replayed deliveries", func() bool { return b.recv.count("/ok") >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	app.Close()
	got := b.recv.seen()
	slices.Sort(got) // different entities are delivered in parallel
	if len(got) != 2 || got[0] != ids[1] || got[1] != ids[2] {
		t.Errorf("delivered %v, want %v", got, ids[1:])
	}
}

func TestOperatorDedupNote(t *testing.T) {
	t.Parallel()
	b := setupOperator(t, "[performance]\nenable_dedup = true\n"+operatorObservers)
	ctx := t.Context()
	b.changeRow(t, "00000000-0000-0000-0000-0000000000d1", time.Hour)
	p := b.changeRow(t, "00000000-0000-0000-0000-0000000000d2", 0)
	if err := b.cps.Save(ctx, "default", p); err != nil {
		t.Fatal(err)
	}
	res, err := b.op.State.Replay(ctx, "default", time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Moved || !strings.Contains(res.Dedup, "skipped as duplicates") || !strings.Contains(res.Dedup, "restarting the service clears them") {
		t.Errorf("dedup note = %q", res.Dedup)
	}
}

// The memory topology keeps its state in the running process: the
// operator's status and replay ask its admin API, and a replay pauses the
// in-process reader, moves its checkpoint and resumes it, so the events
// are delivered again.
func TestOperatorOnMemoryTopology(t *testing.T) {
	t.Parallel()
	recv := &hookReceiver{requests: map[string]int{}}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testsupport.FreePort(t)))
	cfg := config.Defaults()
	cfg.Topology = config.TopologyMemory
	cfg.HTTP.Listen = addr
	cfg.Reader.CheckpointInterval = 20 * time.Millisecond
	cfg.Reader.LeaseTTL = 3 * time.Second
	cfg.Security.AllowedNetworks = []string{"127.0.0.1/32"}
	cfg.Observers = []config.ObserverConfig{{Name: "orders", Entity: "Order", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{{Type: "webhook", URL: srv.URL + "/ok"}}}}
	ctx := t.Context()

	// Refused without what the API needs; dead letters are refused.
	noToken := func(string) (string, bool) { return "", false }
	var ce *config.ConfigError
	if _, err := operate.Open(ctx, cfg, operate.Options{Logger: quietLogger(), LookupEnv: noToken}); !errors.As(err, &ce) ||
		ce.Key != "http.admin_token_env" || !strings.Contains(err.Error(), "memory topology") {
		t.Errorf("operate.Open(memory) without a token = %v, want a ConfigError on http.admin_token_env", err)
	}
	env := func(k string) (string, bool) { return "tok", k == "FRAISEQL_ADMIN_TOKEN" }
	op, err := operate.Open(ctx, cfg, operate.Options{Logger: quietLogger(), LookupEnv: env})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	if _, err := op.DeadLetters(); !errors.As(err, &ce) || ce.Key != "topology" {
		t.Errorf("DeadLetters(memory) = %v, want a ConfigError on topology", err)
	}
	if _, err := op.State.Status(ctx); !errors.Is(err, ports.ErrUnavailable) {
		t.Errorf("Status with no service running = %v, want ErrUnavailable", err)
	}

	app, err := bootstrap.New(ctx, cfg, bootstrap.Options{Logger: quietLogger(), LookupEnv: env})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		app.Close()
	})
	for _, id := range []string{"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"} {
		if _, err := app.MemorySource().Append(ctx, domain.Event{EventType: domain.EventInsert, EntityType: "Order", EntityID: id,
			Timestamp: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both events delivered", func() bool { return recv.count("/ok") == 2 })
	waitFor(t, "the checkpoint saved", func() bool {
		rep, err := op.State.Status(ctx)
		return err == nil && len(rep.Databases) == 1 && len(rep.Databases[0].Checkpoints) == 1 &&
			rep.Databases[0].Checkpoints[0].Position == ports.Position{Seq: 2}
	})
	rep, err := op.State.Status(ctx)
	if err != nil || rep.Topology != "memory" || rep.Databases[0].Name != "memory" || !rep.Databases[0].Checkpoints[0].Lease.Active {
		t.Fatalf("status = %+v, %v; want the memory store with the reader's lease held", rep, err)
	}

	res, err := op.State.Replay(ctx, "", time.Now().Add(-2*time.Hour))
	if err != nil || !res.Moved || res.New != (ports.Position{}) || res.Reread != 2 {
		t.Fatalf("replay = %+v, %v; want moved to the start, 2 rows", res, err)
	}
	waitFor(t, "the replayed events delivered again", func() bool { return recv.count("/ok") == 4 })
}

func TestAdminAPIDeadLettersAndCheckpoints(t *testing.T) {
	t.Parallel()
	b := setupOperator(t, operatorObservers)
	ctx := t.Context()
	ok := b.addAction(t, "o1", "hooks", "ok-hook")
	fail := b.addAction(t, "o2", "hooks", "fail-hook")
	input := b.addInput(t, []byte("garbage"))
	if err := b.cps.Save(ctx, "other", ports.Position{TxID: 5, Seq: 9}); err != nil {
		t.Fatal(err)
	}

	cfg := b.cfg
	cfg.HTTP.Listen = "127.0.0.1:0"
	env := func(k string) (string, bool) { return "tok", k == "FRAISEQL_ADMIN_TOKEN" }
	app, err := bootstrap.New(ctx, cfg, bootstrap.Options{Logger: quietLogger(), LookupEnv: env})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		app.Close()
	})
	base := "http://" + app.HTTPAddr() + "/api/observers"
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: body is not a JSON object: %v", method, path, err)
		}
		return resp.StatusCode, out
	}
	id := func(n int64) string { return strconv.FormatInt(n, 10) }

	cases := []struct {
		method, path, body string
		code               int
		check              func(map[string]any) bool
	}{
		{"GET", "/dlq", "", 200, func(m map[string]any) bool { return len(m["items"].([]any)) == 3 }},
		{"GET", "/dlq?observer=hooks&limit=1", "", 200, func(m map[string]any) bool {
			return len(m["items"].([]any)) == 1 && m["next_after"] == float64(ok)
		}},
		{"GET", "/dlq?limit=abc", "", 400, nil},
		{"GET", "/dlq/stats", "", 200, func(m map[string]any) bool { return m["total"] == float64(3) }},
		{"GET", "/dlq/" + id(input), "", 200, func(m map[string]any) bool { return m["raw"] == "garbage" && m["raw_encoding"] == "text" }},
		{"GET", "/dlq/999999", "", 404, nil},
		{"GET", "/dlq/abc", "", 400, nil},
		{"POST", "/dlq/" + id(ok) + "/retry", "", 200, func(m map[string]any) bool { return m["status"] == "succeeded" }},
		{"POST", "/dlq/" + id(input) + "/retry", "", 409, nil},
		{"POST", "/dlq/999999/retry", "", 404, nil},
		{"POST", "/dlq/retry-all", "", 200, func(m map[string]any) bool {
			return m["succeeded"] == float64(0) && m["failed"] == float64(1) && m["not_retryable"] == float64(1)
		}},
		{"GET", "/dlq/" + id(fail), "", 200, func(m map[string]any) bool { return m["attempts"] == float64(6) }},
		{"DELETE", "/dlq/" + id(input), "", 200, nil},
		{"DELETE", "/dlq/" + id(input), "", 404, nil},
		{"GET", "/checkpoints", "", 200, func(m map[string]any) bool {
			cps := m["checkpoints"].([]any)
			return len(cps) == 2 && cps[0].(map[string]any)["name"] == "default" && cps[0].(map[string]any)["reading"] == true
		}},
		// This process's reader holds the lease of "default".
		{"PUT", "/checkpoints/default", `{"txid": 1, "seq": 0}`, 409, nil},
		{"PUT", "/checkpoints/other", `{"txid": 3, "seq": 4}`, 200, func(m map[string]any) bool {
			p := m["previous"].(map[string]any)
			return p["txid"] == float64(5) && p["seq"] == float64(9)
		}},
		{"PUT", "/checkpoints/unknown", `{"txid": 3, "seq": 4}`, 404, nil},
		{"PUT", "/checkpoints/other", `{"txid": 3}`, 400, nil},
		{"PUT", "/checkpoints/other", `{"txid": 3, "seq": 4, "extra": 1}`, 400, nil},
	}
	for _, c := range cases {
		if c.path == "/checkpoints" {
			waitFor(t, "reader running", func() bool { return app.Reader().Status().Running })
		}
		code, body := call(c.method, c.path, c.body)
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
	if b.recv.count("/ok") != 1 {
		t.Errorf("ok receiver got %d requests, want 1", b.recv.count("/ok"))
	}
}
