package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// The suites of the NATS topologies (issue 4), against the machine's NATS,
// PostgreSQL and Redis. Each test has its own database(s), stream, subject
// prefix, durable consumer and Redis key prefix.

// One bridge process and two worker processes share the stream: every one
// of 10k events is delivered exactly once, and both workers do part of the
// work.
func TestNATSTwoWorkersShareTheStream(t *testing.T) {
	t.Parallel()
	const n = 10000
	b := setup(t)
	e := newJSEnv(t)
	recv := newHookReceiver(t, nil)
	e.startNATSProcess(t, b.dbURL, natsProcess{Role: "bridge", HookURL: recv.URL()})
	for _, w := range []string{"w1", "w2"} {
		e.startNATSProcess(t, b.dbURL, natsProcess{Role: "worker", Worker: w, HookURL: recv.URL()})
	}

	insertBacklog(t, b.pool, n)
	ids := b.eventIDs(t)
	waitWithin(t, 2*time.Minute, fmt.Sprintf("%d events delivered", n), func() bool { return recv.distinctDelivered() >= n })
	b.waitNamedCheckpointAtEnd(t, "bridge:default", waitTimeout)
	waitFor(t, "every message acknowledged", func() bool {
		ci := e.consumerInfo(t)
		return ci.NumAckPending == 0 && ci.NumPending == 0
	})

	recv.checkExactlyOnce(t, ids)
	shares := recv.deliveredByWorker()
	t.Logf("shares: w1 %d, w2 %d", shares["w1"], shares["w2"])
	if shares["w1"] == 0 || shares["w2"] == 0 || shares["w1"]+shares["w2"] != n || len(shares) != 2 {
		t.Errorf("deliveries per worker = %v, want both workers to share all %d", shares, n)
	}
	if got := e.streamMsgs(t); got != n {
		t.Errorf("stream holds %d messages, want %d", got, n)
	}
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Errorf("%d dead letters, want none (first: %+v)", len(dl), dl[0])
	}
}

// A worker killed while its actions are in flight loses nothing: once the
// ack wait passes, the other worker gets the messages it held and
// delivers each event once.
func TestNATSWorkerKilledMidActionIsRedelivered(t *testing.T) {
	t.Parallel()
	const n = 40
	b := setup(t)
	e := newJSEnv(t)
	// Worker 1's requests are held until it dies; worker 2's answered 204.
	recv := newHookReceiver(t, func(worker string) bool { return worker == "w1" })
	e.startNATSProcess(t, b.dbURL, natsProcess{Role: "bridge", HookURL: recv.URL()})
	worker := natsProcess{
		Role: "worker", HookURL: recv.URL(), Concurrency: 4,
		// A dedup claim shorter than the ack wait: only the heartbeats keep
		// worker 2 from taking over worker 1's live messages. Seconds, not
		// fractions: worker 1 renews every third of them (1s, 2s), and a
		// stall of worker 1 on a loaded machine must not outlast them.
		AckWait: 6 * time.Second, DedupLease: 3 * time.Second, ActionTimeout: 2 * time.Minute,
	}
	w1 := worker
	w1.Worker = "w1"
	p1 := e.startNATSProcess(t, b.dbURL, w1)
	w2 := worker
	w2.Worker = "w2"
	e.startNATSProcess(t, b.dbURL, w2)

	ids := b.insert(t, orders(n)...)
	waitFor(t, "worker 1 holding requests while worker 2 delivers", func() bool {
		return recv.held("w1") >= 1 && recv.deliveredByWorker()["w2"] >= 1
	})
	// Twice the ack wait (four dedup leases): worker 1's heartbeats must
	// keep its messages from being redelivered while it lives.
	time.Sleep(2 * worker.AckWait)
	heldBefore := recv.heldEvents()
	for id := range heldBefore {
		if got := recv.receiptsFor(id); len(got) != 0 && got[len(got)-1].Status != 0 {
			t.Fatalf("event %s, held by live worker 1, was delivered by %s", id, got[len(got)-1].Worker)
		}
	}
	p1.Kill(t)
	waitFor(t, "worker 1's held requests abandoned", func() bool { return recv.held("w1") == 0 })
	held := recv.heldEvents()

	waitWithin(t, time.Minute, fmt.Sprintf("%d events delivered", n), func() bool { return recv.distinctDelivered() >= n })
	waitFor(t, "every message acknowledged", func() bool {
		ci := e.consumerInfo(t)
		return ci.NumAckPending == 0 && ci.NumPending == 0
	})
	time.Sleep(time.Second) // room for a duplicate to show up

	recv.checkExactlyOnce(t, ids)
	if len(held) == 0 {
		t.Fatal("worker 1 held no event when it was killed")
	}
	t.Logf("worker 1 held %d events when killed", len(held))
	for id := range held {
		rcs := recv.receiptsFor(id)
		if len(rcs) < 2 || rcs[0].Worker != "w1" || rcs[0].Status != 0 {
			t.Errorf("event %s: receipts %+v, want worker 1's abandoned request first", id, rcs)
			continue
		}
		if last := rcs[len(rcs)-1]; last.Worker != "w2" || last.Status != http.StatusNoContent {
			t.Errorf("event %s held by killed worker 1: last request by %q answered %d, want worker 2 delivering it", id, last.Worker, last.Status)
		}
	}
	if got := recv.deliveredByWorker(); got["w1"] != 0 || got["w2"] != n {
		t.Errorf("deliveries per worker = %v, want all %d by worker 2", got, n)
	}
	if dl := b.deadLetters(t); len(dl) != 0 {
		t.Errorf("%d dead letters, want none (first: %+v)", len(dl), dl[0])
	}
}

// A bridge killed mid-stream and restarted publishes every event: the
// workers process each once, the stream holds each once, and the events
// the restarted bridge re-published are the duplicates JetStream dropped.
func TestNATSBridgeKilledMidStream(t *testing.T) {
	t.Parallel()
	const total, batch = 5000, 100
	b := setup(t)
	e := newJSEnv(t)
	recv := newHookReceiver(t, nil)
	for range 2 {
		cfg := b.config(webhookObserver("orders", "*", recv.URL(), nil))
		e.configure(&cfg, "worker")
		b.start(t, cfg)
	}
	bridgeProc := natsProcess{Role: "bridge", CheckpointInterval: 500 * time.Millisecond}
	bridge := e.startNATSProcess(t, b.dbURL, bridgeProc)

	writerDone := make(chan error, 1)
	go func() {
		for range total / batch {
			if _, err := b.pool.Exec(t.Context(), `INSERT INTO core.tb_entity_change_log
				(object_type, modification_type, object_id, object_data)
				SELECT 'Order', 'INSERT', gen_random_uuid(), jsonb_build_object('n', g)
				FROM generate_series(1, $1::int) AS g`, batch); err != nil {
				writerDone <- err
				return
			}
			time.Sleep(30 * time.Millisecond)
		}
		writerDone <- nil
	}()

	// Kill it once it saved a checkpoint, while messages are published
	// past it.
	waitWithin(t, time.Minute, "bridge mid-stream", func() bool {
		m, covered := e.streamMsgs(t), b.coveredBy(t, "bridge:default")
		return m >= 1500 && int(m) < total-500 && covered > 0 && int(m) > covered+100
	})
	bridge.Kill(t)
	if err := <-writerDone; err != nil {
		t.Fatalf("insert: %v", err)
	}
	stored := e.streamMsgs(t)
	for {
		time.Sleep(300 * time.Millisecond) // publications already sent may still land
		m := e.streamMsgs(t)
		if m == stored {
			break
		}
		stored = m
	}
	covered := b.coveredBy(t, "bridge:default")
	if stored >= total {
		t.Fatalf("the bridge published all %d events before it was killed", total)
	}
	if covered >= int(stored) {
		// The bridge saved a checkpoint covering everything it had
		// published in the moment between the wait and the kill. Move it
		// back 100 events, where a save that came later would have left
		// it, so that the restarted bridge has events to re-publish.
		t.Logf("the checkpoint caught up before the kill (%d events); moving it back 100", covered)
		b.rewindCheckpoint(t, "bridge:default", int(stored)-100)
		covered = b.coveredBy(t, "bridge:default")
	}
	t.Logf("killed: %d events in the stream, %d covered by the saved checkpoint", stored, covered)

	restarted := e.startNATSProcess(t, b.dbURL, bridgeProc)
	addr := restarted.adminAddr(t)
	ids := b.eventIDs(t)
	waitWithin(t, time.Minute, fmt.Sprintf("%d events delivered", total), func() bool { return recv.distinctDelivered() >= total })
	b.waitNamedCheckpointAtEnd(t, "bridge:default", waitTimeout)
	waitFor(t, "every message acknowledged", func() bool {
		ci := e.consumerInfo(t)
		return ci.NumAckPending == 0 && ci.NumPending == 0
	})

	recv.checkExactlyOnce(t, ids)
	if got := e.streamMsgs(t); got != total {
		t.Errorf("stream holds %d messages, want one per event (%d)", got, total)
	}
	dups := scrapeMetric(t, addr, `fraiseql_observer_bridge_published_total{result="duplicate"}`)
	fresh := scrapeMetric(t, addr, `fraiseql_observer_bridge_published_total{result="stored"}`)
	t.Logf("restarted bridge: %v duplicates dropped by JetStream, %v stored", dups, fresh)
	if want := int(stored) - covered; int(dups) != want || want <= 0 {
		t.Errorf("duplicates reported by the restarted bridge = %v, want %d (in the stream %d - covered by the checkpoint %d), more than 0",
			dups, want, stored, covered)
	}
	if want := total - int(stored); int(fresh) != want {
		t.Errorf("stored by the restarted bridge = %v, want %d", fresh, want)
	}
}

// A transaction that commits late is not skipped by the bridge: nothing
// after it is published while it is open, and then both events reach the
// worker once.
func TestNATSLateCommitThroughTheBridge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := newJSEnv(t)
	recv := newHookReceiver(t, nil)
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), nil))
	e.configure(&cfg, "all")
	app := b.start(t, cfg)
	waitFor(t, "bridge reading", func() bool { return app.bridgeReading(t, "default") })
	ctx := t.Context()

	tx1, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx1.Rollback(ctx) }()
	early := insertTx(t, tx1, change{Entity: "Order", Kind: "INSERT", Data: `{"tx": 1}`})
	late := b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"tx": 2}`})[0]

	time.Sleep(time.Second)
	if n := e.streamMsgs(t); n != 0 {
		t.Fatalf("%d messages published while an earlier transaction was open", n)
	}
	if n := recv.distinctDelivered(); n != 0 {
		t.Fatalf("%d events delivered while an earlier transaction was open", n)
	}

	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both events delivered", func() bool { return recv.distinctDelivered() >= 2 })
	b.waitNamedCheckpointAtEnd(t, "bridge:default", waitTimeout)
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show up

	recv.checkExactlyOnce(t, []string{early, late})
	if n := e.streamMsgs(t); n != 2 {
		t.Errorf("stream holds %d messages, want 2", n)
	}
}

// Two databases, each with its change log and bridge, feed one stream:
// every event is processed once and carries its database's name as source
// (in the webhook body and in the subject).
func TestNATSTwoDatabasesOneStream(t *testing.T) {
	t.Parallel()
	const perDB = 30
	b := setup(t) // the observer's own database: dead letters
	e := newJSEnv(t)
	sources := []*testBundle{newBundle(t), newBundle(t)}
	recv := newHookReceiver(t, nil)
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), nil))
	e.configure(&cfg, "all")
	cfg.Topology = config.TopologyMultiDatabase
	names := make([]string, len(sources))
	for i, s := range sources {
		names[i] = databaseName(t, s.dbURL)
		cfg.Databases = append(cfg.Databases, config.SourceDatabase{Name: names[i], URL: s.dbURL})
	}
	app := b.start(t, cfg) // migrates both source databases
	waitFor(t, "both bridges reading", func() bool {
		return app.bridgeReading(t, names[0]) && app.bridgeReading(t, names[1])
	})

	idsOf := make([][]string, len(sources))
	for range 3 { // interleaved transactions of 10
		for i, s := range sources {
			idsOf[i] = append(idsOf[i], s.insert(t, orders(perDB/3)...)...)
		}
	}
	all := slices.Concat(idsOf...)
	waitFor(t, "every event delivered", func() bool { return recv.distinctDelivered() >= len(all) })
	for i, s := range sources {
		s.waitNamedCheckpointAtEnd(t, "bridge:"+names[i], waitTimeout)
	}
	time.Sleep(300 * time.Millisecond)

	recv.checkExactlyOnce(t, all)
	// Each bridge's reader has its own in-flight series (one unlabelled
	// gauge showed whichever read last).
	_, metrics := httpGet(t, "http://"+app.app.HTTPAddr()+"/metrics")
	for _, name := range names {
		if series := `fraiseql_observer_events_in_flight{reader="bridge:` + name + `"} 0`; !strings.Contains(metrics, series) {
			t.Errorf("/metrics has no %s", series)
		}
	}
	for i, ids := range idsOf {
		wrong := 0
		for _, id := range ids {
			if got := recv.receiptsFor(id)[0].Event.Source; got != names[i] {
				if wrong++; wrong <= 3 {
					t.Errorf("event %s from database %s has source %q", id, names[i], got)
				}
			}
		}
		if wrong > 0 {
			t.Errorf("%d of %d events from database %s have another source", wrong, len(ids), names[i])
		}
	}
	ctx := t.Context()
	st, err := e.js.Stream(ctx, e.stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(e.prefix+".>"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for _, name := range names {
		want[e.prefix+"."+name+".Order.INSERT"] = perDB
	}
	if fmt.Sprint(info.State.Subjects) != fmt.Sprint(want) {
		t.Errorf("messages per subject = %v, want %v", info.State.Subjects, want)
	}
}

// The [nats.stream] settings are applied to the stream, created or
// updated: the server reports exactly those settings.
func TestNATSStreamSettingsApplied(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		existing *natsadapter.StreamConfig // created before the App starts
		settings config.NATSStreamConfig
	}{
		{
			name: "created, memory work queue",
			settings: config.NATSStreamConfig{Storage: "memory", Retention: "workqueue",
				MaxAge: 90 * time.Minute, MaxMsgs: 12345, MaxBytes: 8 << 20, DuplicateWindow: 45 * time.Second, Replicas: 1},
		},
		{
			name: "updated, memory interest",
			existing: &natsadapter.StreamConfig{Storage: "memory", Retention: "interest",
				MaxAge: time.Hour, MaxMsgs: 10, MaxBytes: 1 << 20, DuplicateWindow: 10 * time.Second},
			settings: config.NATSStreamConfig{Storage: "memory", Retention: "interest",
				MaxAge: 3 * time.Hour, MaxMsgs: 777, MaxBytes: 4 << 20, DuplicateWindow: 90 * time.Second, Replicas: 1},
		},
		{
			name: "created, file limits, unlimited",
			settings: config.NATSStreamConfig{Storage: "file", Retention: "limits",
				MaxAge: 0, MaxMsgs: 0, MaxBytes: 0, DuplicateWindow: 30 * time.Second, Replicas: 1},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			e := newJSEnv(t)
			if c.existing != nil {
				ac := e.adapterConfig()
				ac.Stream = *c.existing
				ac.Stream.Name, ac.Stream.SubjectPrefix = e.stream, e.prefix
				conn, err := natsadapter.Connect(t.Context(), ac, b.logger)
				if err != nil {
					t.Fatal(err)
				}
				err = conn.EnsureStream(t.Context())
				conn.Close()
				if err != nil {
					t.Fatalf("create the existing stream: %v", err)
				}
			}
			cfg := b.config()
			e.configure(&cfg, "all")
			cfg.NATS.Stream = c.settings
			cfg.NATS.Stream.Name = e.stream
			app, err := bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: b.logger, LookupEnv: noEnv})
			if err != nil {
				t.Fatalf("bootstrap.New: %v", err)
			}
			app.Close()

			got := e.streamInfo(t).Config
			s := c.settings
			unlimited := func(n int64) int64 {
				if n == 0 {
					return -1
				}
				return n
			}
			storage := map[string]jetstream.StorageType{"file": jetstream.FileStorage, "memory": jetstream.MemoryStorage}[s.Storage]
			retention := map[string]jetstream.RetentionPolicy{"limits": jetstream.LimitsPolicy, "workqueue": jetstream.WorkQueuePolicy,
				"interest": jetstream.InterestPolicy}[s.Retention]
			checks := []struct {
				field     string
				got, want any
			}{
				{"name", got.Name, e.stream},
				{"subjects", fmt.Sprint(got.Subjects), fmt.Sprint([]string{e.prefix + ".>"})},
				{"storage", got.Storage, storage},
				{"retention", got.Retention, retention},
				{"max_age", got.MaxAge, s.MaxAge},
				{"max_msgs", got.MaxMsgs, unlimited(s.MaxMsgs)},
				{"max_bytes", got.MaxBytes, unlimited(s.MaxBytes)},
				{"duplicate_window", got.Duplicates, s.DuplicateWindow},
				{"replicas", got.Replicas, s.Replicas},
				{"discard", got.Discard, jetstream.DiscardNew}, // a full stream refuses, never drops unconsumed events
			}
			for _, ch := range checks {
				if ch.got != ch.want {
					t.Errorf("stream %s = %v, want %v", ch.field, ch.got, ch.want)
				}
			}
		})
	}
}

// Garbage published straight to the stream's subject is dead-lettered
// with its raw bytes, terminated (never redelivered), and does not hold
// back the events after it.
func TestNATSUndecodableMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := newJSEnv(t)
	recv := newHookReceiver(t, nil)
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), nil))
	e.configure(&cfg, "all")
	cfg.NATS.Consumer.AckWait = time.Second
	cfg.NATS.Consumer.MaxDeliver = 3
	app := b.start(t, cfg)
	waitFor(t, "bridge reading", func() bool { return app.bridgeReading(t, "default") })

	garbage := []byte("\x00\xffnot an event {")
	if _, err := e.js.Publish(t.Context(), e.prefix+".default.Order.INSERT", garbage); err != nil {
		t.Fatalf("publish garbage: %v", err)
	}
	waitFor(t, "garbage dead-lettered", func() bool { return len(b.deadLetters(t)) >= 1 })
	id := b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"after": "garbage"}`})[0]
	waitFor(t, "the next event delivered", func() bool { return recv.distinctDelivered() >= 1 })
	time.Sleep(3 * time.Second) // three ack waits: a redelivery would show

	dls := b.deadLetters(t)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want exactly one for the garbage: %+v", len(dls), dls)
	}
	if d := dls[0]; string(d.Raw) != string(garbage) || d.EventID != "" || d.Observer != "" || d.Action != "" || d.Attempts != 1 {
		t.Errorf("dead letter = %+v, want the raw garbage %q, no event, observer or action, attempt 1", d, garbage)
	}
	ci := e.consumerInfo(t)
	if ci.NumAckPending != 0 || ci.NumRedelivered != 0 || ci.NumPending != 0 {
		t.Errorf("consumer: %d ack pending, %d redelivered, %d pending; want the garbage terminated, not redelivered",
			ci.NumAckPending, ci.NumRedelivered, ci.NumPending)
	}
	if ci.Delivered.Stream != 2 || ci.AckFloor.Stream != 2 {
		t.Errorf("consumer delivered up to stream seq %d, ack floor %d; want both messages (2) finished", ci.Delivered.Stream, ci.AckFloor.Stream)
	}
	recv.checkExactlyOnce(t, []string{id})
}

// With nats.embedded the process runs its own JetStream server: events
// flow end to end while nats.url points nowhere.
func TestNATSEmbedded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recv := newHookReceiver(t, nil)
	store := t.TempDir()
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), nil))
	cfg.Topology = config.TopologyNATSDistributed
	cfg.Role = "all"
	cfg.NATS.Embedded = true
	cfg.NATS.StoreDir = store
	cfg.NATS.URL = "nats://127.0.0.1:1" // nothing listens: only the embedded server can serve
	app := b.start(t, cfg)
	waitFor(t, "bridge reading", func() bool { return app.bridgeReading(t, "default") })

	ids := b.insert(t, orders(10)...)
	ids = append(ids, b.insert(t, orders(10)...)...)
	waitFor(t, "every event delivered", func() bool { return recv.distinctDelivered() >= len(ids) })
	b.waitNamedCheckpointAtEnd(t, "bridge:default", waitTimeout)
	time.Sleep(300 * time.Millisecond)
	recv.checkExactlyOnce(t, ids)

	code, body := httpGet(t, "http://"+app.app.HTTPAddr()+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"nats": "ok"`) {
		t.Errorf("/readyz = %d %s, want nats ok", code, body)
	}
	if _, err := os.Stat(filepath.Join(store, "jetstream")); err != nil {
		t.Errorf("embedded server stored nothing in %s: %v", store, err)
	}
}

// A bridge-only process of the multi-database topology counts the dead
// letters its bridges keep in their source databases (what the bus
// refuses is dead-lettered there): fraiseql_observer_dlq_items was 0, as
// such a process opens no state store of its own.
func TestNATSBridgeCountsItsSourcesDeadLetters(t *testing.T) {
	t.Parallel()
	b := newBundle(t) // no state store is opened by a bridge-only process
	e := newJSEnv(t)
	src := newBundle(t)
	cfg := b.config()
	e.configure(&cfg, "bridge")
	cfg.Topology = config.TopologyMultiDatabase
	name := databaseName(t, src.dbURL)
	cfg.Databases = []config.SourceDatabase{{Name: name, URL: src.dbURL}}
	app := b.start(t, cfg) // migrates the source database
	waitFor(t, "the bridge reading", func() bool { return app.bridgeReading(t, name) })
	if _, err := src.pool.Exec(t.Context(), `INSERT INTO observer.dead_letters (event_id, event, error, attempts)
		VALUES ('e1', '{}', 'the bus refused the event', 1), ('e2', '{}', 'the bus refused the event', 1)`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dlq_items 2", func() bool {
		_, metrics := httpGet(t, "http://"+app.app.HTTPAddr()+"/metrics")
		return strings.Contains(metrics, "\nfraiseql_observer_dlq_items 2\n")
	})
}
