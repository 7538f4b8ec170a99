package integration

// The fault-injection suite (issue 8): each test injects one fault and
// checks that nothing is lost, the stream keeps moving and, where it
// matters, memory stays in bound. Each logs one line of counts,
//
//	fault <name>: written=N delivered=N dead_lettered=N duplicates=N ...
//
// which the README's "Failure behaviour" section quotes. Services a test
// crashes or restarts are private ones it starts on loopback
// (testsupport.StartPostgres, StartNATS, StartNATSCluster).

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// faultCounts is what a fault test reports.
type faultCounts struct {
	written, delivered, deadLettered, duplicates int
	extra                                        string
}

func (c faultCounts) log(t testing.TB, name string) {
	t.Helper()
	line := fmt.Sprintf("fault %s: written=%d delivered=%d dead_lettered=%d duplicates=%d", name, c.written, c.delivered, c.deadLettered, c.duplicates)
	if c.extra != "" {
		line += " " + c.extra
	}
	t.Log(line)
}

// duplicates counts the 2xx answers beyond the first, per event.
func duplicates(byEvent map[string]int) int {
	n := 0
	for _, c := range byEvent {
		n += max(c-1, 0)
	}
	return n
}

// writer inserts one change-log row at a time into the database at url
// until stopped; a failed insert (the database restarting) is retried.
// What the change log holds at the end is the truth of what was written.
type writer struct {
	stop    chan struct{}
	done    chan struct{}
	written atomic.Int64
	errors  atomic.Int64
}

func startWriter(t testing.TB, pool *pgxpool.Pool, every time.Duration) *writer {
	t.Helper()
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(every):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := pool.Exec(ctx, `INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_id, object_data)
				VALUES ('Order', 'INSERT', gen_random_uuid(), jsonb_build_object('n', $1::int))`, i)
			cancel()
			if err != nil {
				w.errors.Add(1)
				continue
			}
			w.written.Add(1)
		}
	}()
	t.Cleanup(w.halt)
	return w
}

// halt stops the writer and waits for it. Safe to call more than once.
func (w *writer) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// eventIDs returns every event id of the change log at url.
func eventIDs(t testing.TB, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT id::text FROM core.tb_entity_change_log ORDER BY txid, pk_entity_change_log`)
	if err != nil {
		t.Fatalf("read change log: %v", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read change log: %v", err)
	}
	return ids
}

// TestFaultBadInputsDoNotStallTheStream: rows that cannot become events
// (NULL in a contract column of an existing table), an event over
// reader.max_event_bytes, an event whose dead letter the store refuses as
// it is (a \u0000 from a json column: jsonb rejects it) and an UPDATE
// with 100,000-digit numbers, among ordinary rows. Every ordinary row is
// delivered, the bad ones are dead-lettered (the NUL one in fallback
// form), the checkpoint reaches the end and /readyz stays green.
func TestFaultBadInputsDoNotStallTheStream(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	// An existing FraiseQL table as it may be: nullable contract columns,
	// object_data of type json (which keeps \u0000).
	if _, err := b.pool.Exec(ctx, `
		ALTER TABLE core.tb_entity_change_log ALTER COLUMN object_type DROP NOT NULL;
		ALTER TABLE core.tb_entity_change_log ALTER COLUMN created_at DROP NOT NULL;
		ALTER TABLE core.tb_entity_change_log ALTER COLUMN object_data TYPE json USING object_data::json`); err != nil {
		t.Fatal(err)
	}
	recv := newReceiver(t, func(rc receipt) int {
		if rc.Event.Data["reject"] == true {
			return http.StatusBadRequest // dead-lettered at once
		}
		return http.StatusNoContent
	})
	b.start(t, b.config(webhookObserver("orders", "*", recv.URL(), retryPolicy(3, 20*time.Millisecond, 20*time.Millisecond, "fixed"))))

	insert := func(sql string, args ...any) string {
		t.Helper()
		var id string
		if err := b.pool.QueryRow(ctx, `INSERT INTO core.tb_entity_change_log `+sql+` RETURNING id::text`, args...).Scan(&id); err != nil {
			t.Fatalf("insert %s: %v", sql, err)
		}
		return id
	}
	good := func(n int) string {
		return insert(`(object_type, modification_type, object_id, object_data) VALUES ('Order', 'INSERT', gen_random_uuid(), json_build_object('n', $1::int))`, n)
	}
	huge := strings.Repeat("9", 100_000)
	var goods []string
	goods = append(goods, good(0))
	nullType := insert(`(object_type, modification_type, object_id, object_data) VALUES (NULL, 'INSERT', gen_random_uuid(), '{"a": 1}')`)
	goods = append(goods, good(1))
	oversize := insert(`(object_type, modification_type, object_id, object_data) VALUES ('Order', 'INSERT', gen_random_uuid(), json_build_object('blob', repeat('x', 2 << 20)))`)
	goods = append(goods, good(2))
	nul := insert(`(object_type, modification_type, object_id, object_data) VALUES ('Order', 'INSERT', gen_random_uuid(), '{"reject": true, "note": "a\u0000b"}')`)
	goods = append(goods, insert(`(object_type, modification_type, object_id, object_data, object_data_before) VALUES ('Order', 'UPDATE', gen_random_uuid(), $1::json, $2::json)`,
		`{"total": `+huge+`}`, `{"total": `+huge+`1}`))
	for i := 3; i < 20; i++ {
		goods = append(goods, good(i))
	}

	recv.waitDelivered(t, goods)
	b.waitCheckpointAtEnd(t)
	dls := b.deadLetters(t)
	byEvent := map[string]deadLetter{}
	for _, d := range dls {
		byEvent[d.EventID] = d
	}
	if len(dls) != 3 {
		t.Fatalf("dead letters = %+v, want the NULL row, the oversize row and the rejected NUL event", dls)
	}
	checks := []struct {
		name, eventID, want string
	}{
		{"NULL in a contract column", nullType, "NULL in object_type"},
		{"over max_event_bytes", oversize, "over the 1048576-byte limit"},
		{"refused by the store as it was", nul, "fallback form"},
	}
	for _, c := range checks {
		d, ok := byEvent[c.eventID]
		if !ok || !strings.Contains(d.Error, c.want) {
			t.Errorf("%s: dead letter %+v, want an error saying %q", c.name, d, c.want)
		}
	}
	if d := byEvent[oversize]; len(d.Raw) > 4096 {
		t.Errorf("the oversize row's dead letter holds %d raw bytes: its payload was loaded", len(d.Raw))
	}
	if d := byEvent[nul]; !strings.Contains(string(d.Raw), `a\u0000b`) {
		t.Errorf("the fallback dead letter's raw = %q, want the original event", d.Raw)
	}
	if got := recv.deliveredByEvent(); got[nul] != 0 || got[nullType] != 0 || got[oversize] != 0 {
		t.Errorf("a bad input reached the receiver: %v", got)
	}
	faultCounts{written: len(goods) + 3, delivered: len(recv.deliveredByEvent()), deadLettered: len(dls),
		duplicates: duplicates(recv.deliveredByEvent())}.log(t, "bad-inputs")
}

// TestFaultReceiverFailsThirtyPercent: a receiver that answers 503 to 30%
// of requests for the whole run. Every event is delivered (retried on its
// schedule), none is dead-lettered, none twice.
func TestFaultReceiverFailsThirtyPercent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rng := rand.New(rand.NewPCG(8, 30))
	var requests, failed int
	recv := newReceiver(t, func(receipt) int {
		requests++
		if rng.Float64() < 0.3 {
			failed++
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	b.start(t, b.config(webhookObserver("orders", "Order", recv.URL(), retryPolicy(15, 10*time.Millisecond, 100*time.Millisecond, "exponential"))))
	const n = 300
	ids := b.insert(t, orders(n)...)
	recv.waitDelivered(t, ids)
	b.waitCheckpointAtEnd(t)
	dls := b.deadLetters(t)
	got := recv.deliveredByEvent()
	if len(dls) != 0 || len(got) != n || duplicates(got) != 0 {
		t.Fatalf("dead letters %d, delivered %d of %d, duplicates %d; want none, all, none", len(dls), len(got), n, duplicates(got))
	}
	faultCounts{written: n, delivered: len(got), deadLettered: len(dls), duplicates: duplicates(got),
		extra: fmt.Sprintf("requests=%d answered_503=%d", requests, failed)}.log(t, "receiver-30pct-failures")
}

// TestFaultLeaseTakenAwayAndGivenBack: while events are written, the
// reader's lease is taken by another holder for longer than its TTL,
// which (as an operator's replay would) moves the checkpoint back to the
// start; then the lease is free again. The service stands by, takes the
// lease back and resumes; it never overwrites the moved checkpoint (its
// saves are fenced), so every event written before the takeover is
// delivered again, and nothing is lost.
func TestFaultLeaseTakenAwayAndGivenBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recv := newReceiver(t, nil)
	app := b.start(t, b.config(webhookObserver("orders", "Order", recv.URL(), nil)))
	app.waitReading(t)
	w := startWriter(t, b.pool, 20*time.Millisecond)
	waitFor(t, "deliveries before the takeover", func() bool { return len(recv.deliveredByEvent()) >= 30 })

	var before []string
	err := pgx.BeginFunc(t.Context(), b.pool, func(tx pgx.Tx) error {
		// Twice the service's 3s lease TTL.
		if _, err := tx.Exec(t.Context(), `UPDATE observer.leases SET holder = 'intruder', expires_at = now() + interval '6 seconds' WHERE name = 'reader:default'`); err != nil {
			return err
		}
		if _, err := tx.Exec(t.Context(), `UPDATE observer.checkpoints SET txid = 0, seq = 0 WHERE name = 'default'`); err != nil {
			return err
		}
		rows, err := tx.Query(t.Context(), `SELECT id::text FROM core.tb_entity_change_log`)
		if err != nil {
			return err
		}
		before, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatalf("take the lease away: %v", err)
	}
	waitFor(t, "the service standing by", func() bool { return !app.reading(t) })
	waitWithin(t, 30*time.Second, "the service reading again", func() bool { return app.reading(t) })
	time.Sleep(500 * time.Millisecond) // a few more rows in the new term
	w.halt()

	all := eventIDs(t, b.pool)
	recv.waitDelivered(t, all)
	b.waitCheckpointAtEnd(t)
	got := recv.deliveredByEvent()
	replayed := 0
	for _, id := range before {
		if got[id] >= 2 {
			replayed++
		}
	}
	if replayed != len(before) {
		t.Fatalf("%d of the %d events written before the takeover were delivered again: the stale term overwrote the moved checkpoint", replayed, len(before))
	}
	faultCounts{written: len(all), delivered: len(got), deadLettered: len(b.deadLetters(t)), duplicates: duplicates(got),
		extra: fmt.Sprintf("replayed=%d (the checkpoint moved back while the lease was away)", replayed)}.log(t, "lease-taken-away")
}

// TestFaultPostgresRestartedMidStream: the service reads from a private
// PostgreSQL cluster that crashes (pg_ctl stop -m immediate) and comes
// back mid-stream while rows are written. Every row that the change log
// holds at the end is delivered.
func TestFaultPostgresRestartedMidStream(t *testing.T) {
	t.Parallel()
	pg := testsupport.StartPostgres(t)
	b := newBundleAt(t, pg.URL("postgres"))
	recv := newReceiver(t, nil)
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), nil))
	app := b.start(t, cfg)
	app.waitReading(t)
	w := startWriter(t, b.pool, 10*time.Millisecond)
	waitFor(t, "deliveries before the crash", func() bool { return len(recv.deliveredByEvent()) >= 50 })
	pg.Restart(t)
	waitWithin(t, time.Minute, "deliveries after the restart", func() bool { return w.written.Load() >= 150 })
	w.halt()

	all := eventIDs(t, b.pool)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// Which rows never arrived, where the reader's order puts them.
		got, shown := recv.deliveredByEvent(), 0
		for _, id := range all {
			if got[id] == 0 && shown < 5 {
				shown++
				var pos string
				_ = b.pool.QueryRow(context.Background(), `SELECT txid::text || '/' || pk_entity_change_log FROM core.tb_entity_change_log WHERE id = $1::uuid`, id).Scan(&pos)
				t.Logf("not delivered: %s at %s", id, pos)
			}
		}
	})
	waitWithin(t, time.Minute, "every row delivered", func() bool {
		got := recv.deliveredByEvent()
		for _, id := range all {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	b.waitCheckpointAtEnd(t)
	got := recv.deliveredByEvent()
	faultCounts{written: len(all), delivered: len(got), deadLettered: len(b.deadLetters(t)), duplicates: duplicates(got),
		extra: fmt.Sprintf("insert_errors_during_restart=%d", w.errors.Load())}.log(t, "postgres-restarted")
	if len(got) != len(all) {
		t.Fatalf("delivered %d distinct events, the change log holds %d", len(got), len(all))
	}
}

// newBundleAt is newBundle for an existing database at url (a private
// cluster), migrated.
func newBundleAt(t testing.TB, url string) *testBundle {
	t.Helper()
	b := &testBundle{dbURL: url, logs: &logBuffer{}}
	b.logger = slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	pcfg.MaxConns = 3
	if b.pool, err = pgxpool.NewWithConfig(t.Context(), pcfg); err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(b.pool.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log (tail):\n%s", b.logs.tail(6000))
		}
	})
	if _, err := bootstrap.Migrate(t.Context(), b.config(), b.logger); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return b
}
