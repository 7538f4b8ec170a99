package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// workerHeader names the worker that sent a webhook: each worker's action
// sets it, so the receiver knows who delivered what.
const workerHeader = "X-Worker"

// waitWithin polls cond until it holds or limit passes: a correctness
// timeout for the larger suites, never a speed assertion.
func waitWithin(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	testsupport.WaitUntil(t, limit, 20*time.Millisecond, what, cond)
}

// ---------------------------------------------------------------- JetStream

// jsEnv is one test's share of NATS and Redis: its own stream, subject
// prefix, durable consumer and Redis key prefix, and a direct JetStream
// handle to inspect the stream. The stream is deleted when the test ends.
type jsEnv struct {
	natsURL     string
	redisURL    string
	stream      string
	prefix      string
	durable     string
	redisPrefix string

	js jetstream.JetStream
}

// newJSEnv reserves names for the test and connects to NATS.
func newJSEnv(t testing.TB) *jsEnv {
	t.Helper()
	e := &jsEnv{
		natsURL:  testenv.NATSURL(t),
		redisURL: testenv.RedisURL(t),
		stream:   strings.ToUpper(testenv.Name("OBS")),
		prefix:   testenv.Name("obs"),
		durable:  testenv.Name("workers"),
		// The Redis env deletes the keys under its prefix when the test ends.
		redisPrefix: newRedisEnv(t, "").prefix,
	}
	nc, err := nats.Connect(e.natsURL, nats.Name("fraiseql-observer integration test"))
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	t.Cleanup(func() { e.deleteStream(t) })
	return e
}

// adapterConfig is the NATS adapter's view of this test's stream.
func (e *jsEnv) adapterConfig() natsadapter.Config {
	return natsadapter.Config{
		URL:      e.natsURL,
		Stream:   natsadapter.StreamConfig{Name: e.stream, SubjectPrefix: e.prefix, Storage: "memory"},
		Consumer: natsadapter.ConsumerConfig{Durable: e.durable},
	}
}

// deleteStream removes the test's stream (through the adapter, as an
// operator would); a missing stream is fine.
func (e *jsEnv) deleteStream(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := natsadapter.Connect(ctx, e.adapterConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Logf("delete stream %s: %v", e.stream, err)
		return
	}
	defer c.Close()
	if err := c.DeleteStream(ctx); err != nil && !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("delete stream %s: %v", e.stream, err)
	}
}

// configure turns cfg into the nats-distributed topology on this test's
// stream, with Redis dedup under the test's key prefix and the stream in
// memory.
func (e *jsEnv) configure(cfg *config.Config, role string) {
	cfg.Topology = config.TopologyNATSDistributed
	cfg.Role = config.Role(role)
	cfg.NATS.URL = e.natsURL
	cfg.NATS.SubjectPrefix = e.prefix
	cfg.NATS.Stream.Name = e.stream
	cfg.NATS.Stream.Storage = "memory"
	cfg.NATS.Consumer.Durable = e.durable
	cfg.Redis.URL = e.redisURL
	cfg.Redis.KeyPrefix = e.redisPrefix
	cfg.Redis.DedupWindow = 10 * time.Minute
	cfg.Performance.EnableDedup = true
}

// streamInfo reads the stream's state and configuration from the server.
func (e *jsEnv) streamInfo(t testing.TB) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, e.stream)
	if err != nil {
		t.Fatalf("stream %s: %v", e.stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", e.stream, err)
	}
	return info
}

// streamMsgs is the number of messages stored in the stream (0 when it
// does not exist yet).
func (e *jsEnv) streamMsgs(t testing.TB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, e.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("stream %s: %v", e.stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", e.stream, err)
	}
	return info.State.Msgs
}

// consumerInfo reads the workers' durable consumer from the server.
func (e *jsEnv) consumerInfo(t testing.TB) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, e.stream, e.durable)
	if err != nil {
		t.Fatalf("consumer %s: %v", e.durable, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer %s info: %v", e.durable, err)
	}
	return info
}

// ---------------------------------------------------------------- processes

// natsProcess describes one `run` subprocess of the nats-distributed
// topology; zero fields take the defaults noted.
type natsProcess struct {
	Role               string        // bridge | worker | all
	Worker             string        // X-Worker header of the webhook ("" none)
	HookURL            string        // webhook target of the observer
	Concurrency        int           // performance.max_concurrent_actions (default 32)
	AckWait            time.Duration // nats.consumer.ack_wait (default 30s)
	CheckpointInterval time.Duration // reader.checkpoint_interval (default 100ms)
	DedupLease         time.Duration // redis.dedup_lease (default 30s)
	ActionTimeout      time.Duration // the webhook's timeout (default 10s)
}

// writeConfig writes the process's configuration file for the database
// at dbURL and returns its path.
func (e *jsEnv) writeConfig(t testing.TB, dbURL string, p natsProcess) string {
	t.Helper()
	dur := func(d, def time.Duration) string {
		if d == 0 {
			d = def
		}
		return d.String()
	}
	if p.Concurrency == 0 {
		p.Concurrency = 32
	}
	headers := ""
	if p.Worker != "" {
		headers = fmt.Sprintf("headers = { %q = %q }\n", workerHeader, p.Worker)
	}
	hook := p.HookURL
	if hook == "" {
		hook = "http://127.0.0.1:1/unused"
	}
	body := fmt.Sprintf(`
topology = "nats-distributed"
role = %q

[database]
url = %q
migrate_on_start = true
max_connections = 4
poll_interval = "200ms"

[reader]
checkpoint_interval = %q
lease_ttl = "3s"

[redis]
url = %q
key_prefix = %q
dedup_window = "10m"
dedup_lease = %q

[performance]
enable_dedup = true
max_concurrent_actions = %d

[nats]
url = %q
subject_prefix = %q

[nats.stream]
name = %q
storage = "memory"

[nats.consumer]
durable = %q
ack_wait = %q
max_deliver = 10

[http]
listen = "127.0.0.1:0"

[logging]
format = "json"

[security]
allowed_networks = ["127.0.0.1/32"]

[[observers]]
name = "everything"
entity = "*"
events = ["INSERT", "UPDATE", "DELETE", "CUSTOM"]
[[observers.actions]]
type = "webhook"
url = %q
timeout = %q
%s`, p.Role, dbURL, dur(p.CheckpointInterval, 100*time.Millisecond), e.redisURL, e.redisPrefix,
		dur(p.DedupLease, 30*time.Second), p.Concurrency, e.natsURL, e.prefix, e.stream, e.durable,
		dur(p.AckWait, 30*time.Second), hook, dur(p.ActionTimeout, 10*time.Second), headers)
	return writeFile(t, p.Role+p.Worker+".toml", body)
}

// startNATSProcess runs the binary with the process's configuration and
// waits until its workload runs: the bridge reading, the worker consuming.
func (e *jsEnv) startNATSProcess(t testing.TB, dbURL string, p natsProcess) *service {
	t.Helper()
	s := startService(t, cliEnv(), e.writeConfig(t, dbURL, p))
	ready := func() bool {
		switch p.Role {
		case "bridge":
			return s.stderr.count("reader started") >= 1
		case "worker":
			return s.stderr.count("worker started") >= 1
		default:
			return s.stderr.count("reader started") >= 1 && s.stderr.count("worker started") >= 1
		}
	}
	waitWithin(t, 30*time.Second, p.Role+" "+p.Worker+" process started", func() bool {
		if s.Exited() {
			t.Fatalf("%s %s process exited early: %v\n%s", p.Role, p.Worker, s.Err(), s.stderr.tail(4000))
		}
		return ready()
	})
	return s
}

// adminAddr is the admin HTTP address the process logged.
func (s *service) adminAddr(t testing.TB) string {
	t.Helper()
	var addr string
	waitFor(t, "admin http listening", func() bool {
		recs := s.stderr.records("admin http listening")
		if len(recs) == 0 {
			return false
		}
		addr, _ = recs[0]["addr"].(string)
		return addr != ""
	})
	return addr
}

// scrapeMetric returns the value of series (name and labels exactly as
// exposed) at the admin server addr; 0 when absent.
func scrapeMetric(t testing.TB, addr, series string) float64 {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics answered %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// bridgeReading reports whether the App's bridge of the named database
// holds its lease and reads (as /readyz reports it).
func (r *runningApp) bridgeReading(t testing.TB, name string) bool {
	t.Helper()
	code, body := httpGet(t, "http://"+r.app.HTTPAddr()+"/readyz")
	return code == http.StatusOK && strings.Contains(body, fmt.Sprintf(`"bridge:%s": "reading"`, name))
}

// ---------------------------------------------------------------- receiver

// hookReceipt is one request a hookReceiver got.
type hookReceipt struct {
	Worker    string
	WebhookID string
	Event     domain.Event
	Status    int // 0: held until the sender went away
	At        time.Time
}

// hookReceiver is a webhook endpoint that records which worker sent each
// request. Requests for which hold returns true are held until the sender
// goes away (they count as not delivered); the others get 204.
type hookReceiver struct {
	srv  *httptest.Server
	hold func(worker string) bool

	mu       sync.Mutex
	receipts []hookReceipt
	holding  map[string]int    // requests held now, per worker
	okByID   map[string]int    // 2xx answers per webhook-id
	okEvents map[string]int    // 2xx answers per event id
	heldIDs  map[string]string // event id -> worker that held it
	byWorker map[string]int    // 2xx answers per worker
}

func newHookReceiver(t testing.TB, hold func(worker string) bool) *hookReceiver {
	t.Helper()
	r := &hookReceiver{
		hold: hold, holding: map[string]int{}, okByID: map[string]int{}, okEvents: map[string]int{},
		heldIDs: map[string]string{}, byWorker: map[string]int{},
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) URL() string { return r.srv.URL + "/hook" }

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	rc := hookReceipt{Worker: req.Header.Get(workerHeader), WebhookID: req.Header.Get("webhook-id"), At: time.Now()}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if rc.Event, err = domain.DecodeEvent(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.hold != nil && r.hold(rc.Worker) {
		r.mu.Lock()
		r.holding[rc.Worker]++
		r.heldIDs[rc.Event.ID] = rc.Worker
		r.mu.Unlock()
		<-req.Context().Done()
		r.mu.Lock()
		r.holding[rc.Worker]--
		r.receipts = append(r.receipts, rc)
		r.mu.Unlock()
		return
	}
	rc.Status = http.StatusNoContent
	r.mu.Lock()
	r.receipts = append(r.receipts, rc)
	r.okByID[rc.WebhookID]++
	r.okEvents[rc.Event.ID]++
	r.byWorker[rc.Worker]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// distinctDelivered is the number of events answered 2xx at least once.
func (r *hookReceiver) distinctDelivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.okEvents)
}

// held is the number of requests of worker held right now.
func (r *hookReceiver) held(worker string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holding[worker]
}

// heldEvents returns the ids of the events whose requests were held, with
// the worker that sent them.
func (r *hookReceiver) heldEvents() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.heldIDs))
	for k, v := range r.heldIDs {
		out[k] = v
	}
	return out
}

// deliveredByWorker counts 2xx answers per X-Worker value.
func (r *hookReceiver) deliveredByWorker() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.byWorker))
	for k, v := range r.byWorker {
		out[k] = v
	}
	return out
}

// receiptsFor returns the requests for event id, in arrival order.
func (r *hookReceiver) receiptsFor(id string) []hookReceipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hookReceipt
	for _, rc := range r.receipts {
		if rc.Event.ID == id {
			out = append(out, rc)
		}
	}
	return out
}

// checkExactlyOnce fails the test unless every event of ids got exactly
// one 2xx answer, under one webhook-id answered once, and nothing else
// was delivered.
func (r *hookReceiver) checkExactlyOnce(t testing.TB, ids []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	missing, twice := 0, 0
	for _, id := range ids {
		switch n := r.okEvents[id]; {
		case n == 0:
			if missing++; missing <= 5 {
				t.Errorf("event %s never delivered", id)
			}
		case n > 1:
			if twice++; twice <= 5 {
				t.Errorf("event %s delivered %d times", id, n)
			}
		}
	}
	for wid, n := range r.okByID {
		if n != 1 {
			if twice++; twice <= 5 {
				t.Errorf("webhook-id %s answered 2xx %d times", wid, n)
			}
		}
	}
	extra := 0
	for id := range r.okEvents {
		if !want[id] {
			extra++
		}
	}
	if missing > 0 || twice > 0 || extra > 0 || len(r.okByID) != len(ids) {
		t.Fatalf("of %d events: %d never delivered, %d delivered more than once, %d unexpected; %d distinct webhook-ids",
			len(ids), missing, twice, extra, len(r.okByID))
	}
}

// ---------------------------------------------------------------- database

// insertBacklog writes n INSERT rows of entity Order (one entity each) in
// one statement.
func insertBacklog(t testing.TB, pool *pgxpool.Pool, n int) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), `INSERT INTO core.tb_entity_change_log
		(object_type, modification_type, object_id, object_data)
		SELECT 'Order', 'INSERT', gen_random_uuid(), jsonb_build_object('n', g, 'status', 'new')
		FROM generate_series(1, $1::int) AS g`, n); err != nil {
		t.Fatalf("insert backlog: %v", err)
	}
}

// insertEntityBacklog inserts n INSERT events of the given number of
// entities (Orders), spread round-robin, in one statement.
func insertEntityBacklog(t testing.TB, pool *pgxpool.Pool, n, entities int) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), `WITH e AS (SELECT array_agg(gen_random_uuid()) AS ids FROM generate_series(1, $2::int))
		INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_id, object_data)
		SELECT 'Order', 'INSERT', e.ids[1 + g % $2::int], jsonb_build_object('n', g, 'status', 'new')
		FROM e, generate_series(1, $1::int) AS g`, n, entities); err != nil {
		t.Fatalf("insert backlog of %d entities: %v", entities, err)
	}
}

// eventIDs returns every event id of the change log in reading order.
func (b *testBundle) eventIDs(t testing.TB) []string {
	t.Helper()
	rows := b.rows(t)
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.EventID
	}
	return out
}

// namedCheckpoint returns the saved checkpoint called name (zero when
// none), e.g. "bridge:default".
func (b *testBundle) namedCheckpoint(t testing.TB, name string) position {
	t.Helper()
	var p position
	err := b.pool.QueryRow(t.Context(), `SELECT txid, seq FROM observer.checkpoints WHERE name = $1`, name).Scan(&p.TxID, &p.Seq)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("read checkpoint %s: %v", name, err)
	}
	return p
}

// coveredBy counts the change-log rows at or before the saved checkpoint
// called name (0 when none is saved).
func (b *testBundle) coveredBy(t testing.TB, name string) int {
	t.Helper()
	var n int
	err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM core.tb_entity_change_log l
		JOIN observer.checkpoints c ON c.name = $1
		WHERE (l.txid::text::bigint, l.pk_entity_change_log) <= (c.txid, c.seq)`, name).Scan(&n)
	if err != nil {
		t.Fatalf("rows covered by checkpoint %s: %v", name, err)
	}
	return n
}

// rewindCheckpoint moves the checkpoint called name back so that it covers
// the first n rows of the change log.
func (b *testBundle) rewindCheckpoint(t testing.TB, name string, n int) {
	t.Helper()
	tag, err := b.pool.Exec(t.Context(), `UPDATE observer.checkpoints c SET txid = l.txid, seq = l.pk
		FROM (SELECT txid::text::bigint AS txid, pk_entity_change_log AS pk FROM core.tb_entity_change_log
		      ORDER BY txid, pk_entity_change_log OFFSET $2 - 1 LIMIT 1) AS l
		WHERE c.name = $1`, name, n)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("rewind checkpoint %s to row %d: %v (%d rows updated)", name, n, err, tag.RowsAffected())
	}
}

// waitNamedCheckpointAtEnd waits until the checkpoint called name covers
// the whole change log.
func (b *testBundle) waitNamedCheckpointAtEnd(t testing.TB, name string, limit time.Duration) {
	t.Helper()
	rows := b.rows(t)
	if len(rows) == 0 {
		t.Fatal("change log is empty")
	}
	last := rows[len(rows)-1].Pos
	waitWithin(t, limit, "checkpoint "+name+" at "+last.String(), func() bool { return !b.namedCheckpoint(t, name).less(last) })
}

// databaseName is the database part of a PostgreSQL URL.
func databaseName(t testing.TB, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	return cfg.Database
}
