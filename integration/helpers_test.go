package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/pgbench"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// waitTimeout bounds every wait for an observable outcome: generous, for a
// loaded two-core machine; never a speed assertion.
const waitTimeout = 20 * time.Second

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, waitTimeout, what, cond)
}

// ---------------------------------------------------------------- logs

// logBuffer collects JSON log lines (of the in-process App or of a
// subprocess's stderr). Safe for concurrent use.
type logBuffer struct{ testsupport.Buffer }

// records returns the JSON log records whose "msg" is msg.
func (l *logBuffer) records(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (l *logBuffer) count(msg string) int { return len(l.records(msg)) }

// tail returns the last n bytes of the log, for failure messages.
func (l *logBuffer) tail(n int) string {
	s := l.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// ---------------------------------------------------------------- receiver

// receipt is one request a receiver answered.
type receipt struct {
	Seq       int // order in which the receiver decided the answers, from 1
	WebhookID string
	Event     domain.Event
	Attempt   int // how many requests with this webhook-id so far, this one included
	Status    int // 0 when the sender went away before the answer
	Started   time.Time
	Answered  time.Time
}

// receiver is a scripted webhook endpoint: respond decides each answer's
// status (nil: always 204) and delay holds every answer back. respond runs
// under the receiver's lock, one call at a time, so it may keep state
// without its own lock (and must not call the receiver's methods).
type receiver struct {
	srv     *httptest.Server
	delay   time.Duration
	respond func(rc receipt) int

	mu       sync.Mutex
	started  int
	decided  int
	receipts []receipt
	attempts map[string]int
}

// newReceiver starts a receiver; respond may be nil.
func newReceiver(t testing.TB, respond func(rc receipt) int) *receiver {
	t.Helper()
	r := &receiver{respond: respond, attempts: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL() string { return r.srv.URL + "/hook" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	rc := receipt{WebhookID: req.Header.Get("webhook-id"), Started: time.Now()}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if rc.Event, err = domain.DecodeEvent(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.started++
	r.attempts[rc.WebhookID]++
	rc.Attempt = r.attempts[rc.WebhookID]
	r.decided++
	rc.Seq = r.decided
	status := http.StatusNoContent
	if r.respond != nil {
		status = r.respond(rc)
	}
	r.mu.Unlock()

	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-req.Context().Done():
			status = 0
		}
	}
	r.mu.Lock()
	rc.Status, rc.Answered = status, time.Now()
	r.receipts = append(r.receipts, rc)
	r.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
	}
}

// all returns every receipt in answer order.
func (r *receiver) all() []receipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receipt(nil), r.receipts...)
}

// delivered returns the receipts answered with 2xx.
func (r *receiver) delivered() []receipt {
	var out []receipt
	for _, rc := range r.all() {
		if rc.Status >= 200 && rc.Status < 300 {
			out = append(out, rc)
		}
	}
	return out
}

// deliveredByEvent counts 2xx answers per event id.
func (r *receiver) deliveredByEvent() map[string]int {
	out := map[string]int{}
	for _, rc := range r.delivered() {
		out[rc.Event.ID]++
	}
	return out
}

// deliveredByWebhookID counts 2xx answers per webhook-id.
func (r *receiver) deliveredByWebhookID() map[string]int {
	out := map[string]int{}
	for _, rc := range r.delivered() {
		out[rc.WebhookID]++
	}
	return out
}

// inFlight is the number of requests not answered yet.
func (r *receiver) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started - len(r.receipts)
}

// waitDelivered waits until every event id in ids got a 2xx answer.
func (r *receiver) waitDelivered(t testing.TB, ids []string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d events delivered", len(ids)), func() bool {
		got := r.deliveredByEvent()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
}

// ---------------------------------------------------------------- database

// testBundle is one test's database, a pool for the test's own statements
// and the log of the Apps it starts.
type testBundle struct {
	dbURL  string
	pool   *pgxpool.Pool
	logs   *logBuffer
	logger *slog.Logger
}

// setup creates a fresh, migrated database for the test.
func setup(t testing.TB) *testBundle {
	t.Helper()
	b := newBundle(t)
	if _, err := bootstrap.Migrate(t.Context(), b.config(), b.logger, ""); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return b
}

// newBundle creates a fresh, empty database for the test.
func newBundle(t testing.TB) *testBundle {
	t.Helper()
	b := &testBundle{dbURL: testenv.NewDatabase(t), logs: &logBuffer{}}
	b.logger = slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	pcfg, err := pgxpool.ParseConfig(b.dbURL)
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	pcfg.MaxConns = 3
	b.pool, err = pgxpool.NewWithConfig(t.Context(), pcfg)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(b.pool.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log (tail):\n%s", b.logs.tail(6000))
		}
	})
	return b
}

// config is the service configuration for this test's database: short
// poll and checkpoint intervals, admin HTTP on a free loopback port, and
// loopback receivers allowed.
func (b *testBundle) config(observers ...config.ObserverConfig) config.Config {
	cfg := config.Defaults()
	cfg.Database.URL = b.dbURL
	cfg.Database.MigrateOnStart = true
	cfg.Database.MaxConnections = 3
	cfg.Database.PollInterval = 200 * time.Millisecond
	cfg.Reader.CheckpointInterval = 100 * time.Millisecond
	cfg.Reader.LeaseTTL = 3 * time.Second
	cfg.Retry.PollInterval = 100 * time.Millisecond
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Security.AllowedNetworks = []string{"127.0.0.1/32"}
	cfg.Observers = observers
	return cfg
}

// useWake sets cfg's database.wake and migrates b's database with it, as
// `fraiseql-observer migrate` would: the notify trigger is then on the
// change log for notify and gone for poll (checked).
func (b *testBundle) useWake(t testing.TB, cfg *config.Config, wake string) {
	t.Helper()
	cfg.Database.Wake = wake
	if _, err := bootstrap.Migrate(t.Context(), *cfg, b.logger, ""); err != nil {
		t.Fatalf("migrate with database.wake = %s: %v", wake, err)
	}
	var triggers int
	if err := b.pool.QueryRow(t.Context(), pgbench.TriggerCountSQL, pgbench.TriggerName).Scan(&triggers); err != nil {
		t.Fatalf("count notify triggers: %v", err)
	}
	if want := map[string]int{config.WakeNotify: 1, config.WakePoll: 0}[wake]; triggers != want {
		t.Fatalf("database.wake = %s: %d notify triggers on the change log after migrate, want %d", wake, triggers, want)
	}
}

// retryPolicy is a RetryConfig with every field set.
func retryPolicy(attempts int, initial, maxDelay time.Duration, backoff string) *config.RetryConfig {
	return &config.RetryConfig{MaxAttempts: &attempts, InitialDelay: &initial, MaxDelay: &maxDelay, Backoff: &backoff}
}

// webhookObserver sends every event of entity (any kind) to url.
func webhookObserver(name, entity, url string, retry *config.RetryConfig) config.ObserverConfig {
	timeout := 10 * time.Second
	return config.ObserverConfig{
		Name:    name,
		Entity:  entity,
		Events:  []string{"INSERT", "UPDATE", "DELETE", "CUSTOM"},
		Retry:   retry,
		Actions: []config.ActionConfig{{Type: "webhook", URL: url, Timeout: &timeout}},
	}
}

// actionIdentity is the identity the configuration gives actions[i] of
// o (its name, or the one derived from its content).
func actionIdentity(t testing.TB, o config.ObserverConfig, i int) string {
	t.Helper()
	obs, err := config.BuildObservers([]config.ObserverConfig{o}, noEnv, config.Checks{})
	if err != nil {
		t.Fatalf("build observer %s: %v", o.Name, err)
	}
	return obs[0].Actions[i].Name
}

// change is one change-log row to insert; Data and Before are JSON text
// ("" for NULL), ID a uuid ("" for a new one).
type change struct {
	Entity string
	Kind   string
	ID     string
	Data   string
	Before string
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

const insertChangeSQL = `INSERT INTO core.tb_entity_change_log
	(object_type, modification_type, object_id, object_data, object_data_before)
	VALUES ($1, $2, $3::uuid, $4::jsonb, $5::jsonb)
	RETURNING id::text`

// insertTx inserts c in tx and returns the event id.
func insertTx(t testing.TB, tx pgx.Tx, c change) string {
	t.Helper()
	if c.ID == "" {
		c.ID = newUUID()
	}
	var id string
	if err := tx.QueryRow(t.Context(), insertChangeSQL, c.Entity, c.Kind, c.ID, nullable(c.Data), nullable(c.Before)).Scan(&id); err != nil {
		t.Fatalf("insert change %+v: %v", c, err)
	}
	return id
}

// insert writes the changes in one transaction and returns their event
// ids in order.
func (b *testBundle) insert(t testing.TB, changes ...change) []string {
	t.Helper()
	var ids []string
	err := pgx.BeginFunc(t.Context(), b.pool, func(tx pgx.Tx) error {
		for _, c := range changes {
			ids = append(ids, insertTx(t, tx, c))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert changes: %v", err)
	}
	return ids
}

// orders returns n INSERT changes of entity Order, each its own entity.
func orders(n int) []change {
	out := make([]change, n)
	for i := range out {
		out[i] = change{Entity: "Order", Kind: "INSERT", Data: fmt.Sprintf(`{"n": %d}`, i)}
	}
	return out
}

// position is a change-log position as the checkpoint stores it.
type position struct {
	TxID int64
	Seq  int64
}

func (p position) less(q position) bool {
	if p.TxID != q.TxID {
		return p.TxID < q.TxID
	}
	return p.Seq < q.Seq
}

func (p position) String() string { return fmt.Sprintf("%d/%d", p.TxID, p.Seq) }

// logRow is a change-log row in reading order.
type logRow struct {
	Pos     position
	EventID string
}

// rows returns the change log in reading order, (txid, pk).
func (b *testBundle) rows(t testing.TB) []logRow {
	t.Helper()
	rows, err := b.pool.Query(t.Context(), `SELECT txid::text::bigint, pk_entity_change_log, id::text
		FROM core.tb_entity_change_log ORDER BY txid, pk_entity_change_log`)
	if err != nil {
		t.Fatalf("read change log: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (logRow, error) {
		var lr logRow
		return lr, r.Scan(&lr.Pos.TxID, &lr.Pos.Seq, &lr.EventID)
	})
	if err != nil {
		t.Fatalf("read change log: %v", err)
	}
	return out
}

// checkpoint returns the saved checkpoint of the default reader (zero
// when none).
func (b *testBundle) checkpoint(t testing.TB) position {
	t.Helper()
	var p position
	err := b.pool.QueryRow(t.Context(), `SELECT txid, seq FROM observer.checkpoints WHERE name = 'default'`).Scan(&p.TxID, &p.Seq)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("read checkpoint: %v", err)
	}
	return p
}

// waitCheckpointAtEnd waits until the saved checkpoint covers the whole
// change log.
func (b *testBundle) waitCheckpointAtEnd(t testing.TB) position {
	t.Helper()
	rows := b.rows(t)
	if len(rows) == 0 {
		t.Fatal("change log is empty")
	}
	last := rows[len(rows)-1].Pos
	waitFor(t, "checkpoint at "+last.String(), func() bool { return !b.checkpoint(t).less(last) })
	return last
}

// deadLetter is a row of observer.dead_letters.
type deadLetter struct {
	EventID  string
	Observer string
	Action   string
	Error    string
	Attempts int
	Raw      []byte
}

func (b *testBundle) deadLetters(t testing.TB) []deadLetter {
	t.Helper()
	rows, err := b.pool.Query(t.Context(), `SELECT event_id, observer, action, error, attempts, raw
		FROM observer.dead_letters ORDER BY id`)
	if err != nil {
		t.Fatalf("read dead letters: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (deadLetter, error) {
		var d deadLetter
		return d, r.Scan(&d.EventID, &d.Observer, &d.Action, &d.Error, &d.Attempts, &d.Raw)
	})
	if err != nil {
		t.Fatalf("read dead letters: %v", err)
	}
	return out
}

// ---------------------------------------------------------------- app

// runningApp is an App whose Run is in progress.
type runningApp struct {
	app    *bootstrap.App
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	runErr error
}

// start builds the App for cfg and runs it until stop or the end of the
// test.
func (b *testBundle) start(t testing.TB, cfg config.Config) *runningApp {
	t.Helper()
	app, err := bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: b.logger, LookupEnv: noEnv})
	if err != nil {
		t.Fatalf("bootstrap.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningApp{app: app, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- app.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func noEnv(string) (string, bool) { return "", false }

// stop cancels Run, waits for it to return and closes the App. Safe to
// call more than once.
func (r *runningApp) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.runErr = <-r.done:
		case <-time.After(60 * time.Second):
			t.Errorf("Run did not return within 60s of cancellation")
		}
		r.app.Close()
		if r.runErr != nil {
			t.Errorf("Run: %v", r.runErr)
		}
	})
}

// reading reports whether this App's reader is active (it holds the
// lease), as /readyz reports it.
func (r *runningApp) reading(t testing.TB) bool {
	t.Helper()
	code, body := httpGet(t, "http://"+r.app.HTTPAddr()+"/readyz")
	if code != http.StatusOK {
		return false
	}
	var detail map[string]string
	if err := json.Unmarshal([]byte(body), &detail); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	return detail["reader"] == "reading"
}

func (r *runningApp) waitReading(t testing.TB) {
	t.Helper()
	waitFor(t, "reader active (/readyz)", func() bool { return r.reading(t) })
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	return httpGetAuth(t, url, "")
}

// httpGetAuth is httpGet with a bearer token ("" sends none).
func httpGetAuth(t testing.TB, url, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of the sample named series (metric name with
// its labels exactly as exposed, e.g. `x_total{action_type="webhook"}`);
// 0 when absent.
func (r *runningApp) metric(t testing.TB, series string) float64 {
	t.Helper()
	return scrapeMetric(t, r.app.HTTPAddr(), series)
}
