package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// waitTimeout bounds every wait for an asynchronous outcome: a correctness
// timeout, not a speed target.
const waitTimeout = 10 * time.Second

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

type testBundle struct {
	pool *pgxpool.Pool
	cl   *ChangeLog
	logs *testsupport.Buffer
}

// newTestPool opens a pool on a fresh database.
func newTestPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := testenv.NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close) // registered after NewDatabase's drop, so it runs first
	return pool
}

// setup migrates a fresh database with the defaults and opens a ChangeLog
// on it.
func setup(t testing.TB, cfg ChangeLogConfig) *testBundle {
	t.Helper()
	pool := newTestPool(t)
	if err := Migrate(context.Background(), pool, MigrateConfig{ChangeLogTable: cfg.Table, Channel: cfg.Channel, Trigger: triggerFor(cfg.PollOnly)}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	cl, logs := newTestChangeLog(t, pool, cfg)
	return &testBundle{pool: pool, cl: cl, logs: logs}
}

// triggerFor is the trigger policy of a reader that polls or not.
func triggerFor(pollOnly bool) TriggerPolicy {
	if pollOnly {
		return TriggerDrop
	}
	return TriggerInstall
}

func newTestChangeLog(t testing.TB, pool *pgxpool.Pool, cfg ChangeLogConfig) (*ChangeLog, *testsupport.Buffer) {
	t.Helper()
	logs := &testsupport.Buffer{}
	cl, err := NewChangeLog(t.Context(), pool, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("NewChangeLog: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl, logs
}

// change is a change-log row to insert; empty strings are NULL (ID and
// CreatedAt get the column defaults).
type change struct {
	ID, ObjectType, ModificationType, ObjectID, ObjectKey string
	Data, Before, TenantID, Contact, CreatedAt            string
}

func insertChange(t testing.TB, q execer, c change) {
	t.Helper()
	_, err := q.Exec(context.Background(), `
		INSERT INTO core.tb_entity_change_log
			(id, created_at, object_type, modification_type, object_id, object_key,
			 object_data, object_data_before, tenant_id, fk_contact)
		VALUES (coalesce(nullif($1, '')::uuid, gen_random_uuid()), coalesce(nullif($2, '')::timestamptz, now()),
			$3, $4, nullif($5, '')::uuid, nullif($6, ''), nullif($7, '')::jsonb, nullif($8, '')::jsonb,
			nullif($9, '')::uuid, nullif($10, ''))`,
		c.ID, c.CreatedAt, c.ObjectType, c.ModificationType, c.ObjectID, c.ObjectKey,
		c.Data, c.Before, c.TenantID, c.Contact)
	if err != nil {
		t.Fatalf("insert change %+v: %v", c, err)
	}
}

// readUntil reads from after, continuing from each batch's End, until n
// records arrived (rows may be held back by open transactions anywhere in
// the cluster), then checks that nothing more is readable.
func readUntil(t testing.TB, cl *ChangeLog, after ports.Position, n int) ([]ports.Record, ports.Position) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var got []ports.Record
	for len(got) < n {
		b, err := cl.Read(context.Background(), after, ports.ReadLimit{Rows: 100})
		if err != nil {
			t.Fatalf("Read(%+v): %v", after, err)
		}
		got = append(got, b.Records...)
		after = b.End
		if len(b.Records) > 0 {
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d records within %v", len(got), n, waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := cl.Read(context.Background(), after, ports.ReadLimit{Rows: 100})
	if err != nil {
		t.Fatalf("Read(%+v): %v", after, err)
	}
	if len(got) != n || len(b.Records) != 0 {
		t.Fatalf("read %d records, want %d", len(got)+len(b.Records), n)
	}
	return got, after
}

func mustRead(t testing.TB, cl *ChangeLog, after ports.Position, limit int) ports.Batch {
	t.Helper()
	b, err := cl.Read(context.Background(), after, ports.ReadLimit{Rows: limit})
	if err != nil {
		t.Fatalf("Read(%+v, %d): %v", after, limit, err)
	}
	return b
}

func TestNewChangeLogConfig(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	cases := []struct {
		name    string
		cfg     ChangeLogConfig
		logger  *slog.Logger
		wantErr string
	}{
		{"ThreePartTable", ChangeLogConfig{Table: "a.b.c"}, logger, "change_log_table"},
		{"EmptySchema", ChangeLogConfig{Table: ".t"}, logger, "change_log_table"},
		{"LongChannel", ChangeLogConfig{Channel: strings.Repeat("c", 64)}, logger, "channel"},
		{"NegativePoll", ChangeLogConfig{PollInterval: -time.Second}, logger, "poll_interval"},
		{"NilLogger", ChangeLogConfig{}, nil, "logger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Validation happens before the pool is used; a pool that
			// cannot connect proves it.
			pool, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
			if err != nil {
				t.Fatalf("pgxpool.New: %v", err)
			}
			defer pool.Close()
			cl, err := NewChangeLog(t.Context(), pool, tc.cfg, tc.logger)
			if err == nil {
				cl.Close()
				t.Fatalf("NewChangeLog(%+v) = nil error, want one naming %q", tc.cfg, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewChangeLog(%+v) = %v, want it to name %q", tc.cfg, err, tc.wantErr)
			}
		})
	}
}

func TestChangeLogDatabaseDownIsNotAnError(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	defer pool.Close()
	cl, err := NewChangeLog(t.Context(), pool, ChangeLogConfig{PollInterval: 10 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("NewChangeLog with the database down: %v", err)
	}
	defer cl.Close()
	if err := cl.Wait(t.Context()); err != nil {
		t.Fatalf("Wait falls back to polling: %v", err)
	}
	_, err = cl.Read(t.Context(), ports.Position{}, ports.ReadLimit{Rows: 10})
	if !errors.Is(err, ports.ErrUnavailable) {
		t.Fatalf("Read with the database down = %v, want ports.ErrUnavailable", err)
	}
}

func TestChangeLogLateCommit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// earlyXID makes the late transaction take its xid before the
		// other one commits but insert after it, so pk order and txid
		// order disagree.
		earlyXID bool
	}{
		{"LateTransactionInsertsFirst", false},
		{"LateTransactionInsertsLast", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ChangeLogConfig{})
			ctx := t.Context()
			insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "before"})
			// A reader that has consumed everything committed so far.
			_, cursor := readUntil(t, b.cl, ports.Position{}, 1)

			tx1, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatalf("begin tx1: %v", err)
			}
			defer tx1.Rollback(context.Background()) //nolint:errcheck // no-op after commit
			if tc.earlyXID {
				if _, err := tx1.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
					t.Fatalf("tx1 xid: %v", err)
				}
			} else {
				insertChange(t, tx1, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "late"})
			}
			tx2, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatalf("begin tx2: %v", err)
			}
			insertChange(t, tx2, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "early"})
			if err := tx2.Commit(ctx); err != nil {
				t.Fatalf("commit tx2: %v", err)
			}
			if tc.earlyXID {
				insertChange(t, tx1, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "late"})
			}

			// tx2's row is committed but tx1 is open: nothing may be read,
			// however often the reader asks.
			for range 3 {
				batch := mustRead(t, b.cl, cursor, 100)
				if len(batch.Records) != 0 {
					t.Fatalf("read %q while an older transaction is open", batch.Records[0].Event.EntityID)
				}
				if batch.End != cursor {
					t.Fatalf("End moved to %+v past a held-back row (from %+v)", batch.End, cursor)
				}
				cursor = batch.End
			}

			if err := tx1.Commit(ctx); err != nil {
				t.Fatalf("commit tx1: %v", err)
			}
			got, _ := readUntil(t, b.cl, cursor, 2)
			if got[0].Event.EntityID != "late" || got[1].Event.EntityID != "early" {
				t.Fatalf("read %q then %q, want the older transaction's row first", got[0].Event.EntityID, got[1].Event.EntityID)
			}
			if !cursor.Less(got[0].Position) || !got[0].Position.Less(got[1].Position) {
				t.Fatalf("positions %+v, %+v do not follow %+v in order", got[0].Position, got[1].Position, cursor)
			}
			// A reader starting over sees all three rows, in the same order.
			all, _ := readUntil(t, b.cl, ports.Position{}, 3)
			if all[1].Position != got[0].Position || all[2].Position != got[1].Position {
				t.Fatalf("a fresh reader saw another order: %+v", all)
			}
		})
	}
}

func TestChangeLogOrdersByTxIDNumerically(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	// Old, finished transaction ids written explicitly: 10 sorts before 9
	// as text, 9 before 10 as a number; pk order is the reverse of txid
	// order for the first two.
	for _, r := range []struct{ txid, key string }{{"100", "a"}, {"10", "b"}, {"9", "c"}, {"10", "d"}} {
		if _, err := b.pool.Exec(t.Context(), `INSERT INTO core.tb_entity_change_log (txid, object_type, modification_type, object_key)
			VALUES ($1::text::xid8, 'Order', 'INSERT', $2)`, r.txid, r.key); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	var got []ports.Record
	after := ports.Position{}
	for range 4 { // one row per batch: End must advance in the same order
		batch := mustRead(t, b.cl, after, 1)
		if len(batch.Records) != 1 {
			t.Fatalf("batch after %+v has %d records", after, len(batch.Records))
		}
		got = append(got, batch.Records...)
		after = batch.End
	}
	var keys []string
	var txids []uint64
	for _, r := range got {
		keys = append(keys, r.Event.EntityID)
		txids = append(txids, r.Position.TxID)
	}
	if fmt.Sprint(keys) != "[c b d a]" || fmt.Sprint(txids) != "[9 10 10 100]" {
		t.Fatalf("read %v with txids %v, want [c b d a] with [9 10 10 100]", keys, txids)
	}
	if rest := mustRead(t, b.cl, after, 10); len(rest.Records) != 0 {
		t.Fatalf("%d records after the last one", len(rest.Records))
	}
}

func TestChangeLogSkipsNoopAndRead(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "NOOP", ObjectKey: "1"})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "read", ObjectKey: "2"})

	// A batch made only of skipped rows still advances, past both rows once
	// no older transaction anywhere in the cluster holds the second back.
	var lastPK int64
	if err := b.pool.QueryRow(t.Context(), `SELECT max(pk_entity_change_log) FROM core.tb_entity_change_log`).Scan(&lastPK); err != nil {
		t.Fatalf("last pk: %v", err)
	}
	deadline := time.Now().Add(waitTimeout)
	var end ports.Position
	for end.Seq != lastPK {
		batch := mustRead(t, b.cl, ports.Position{}, 100)
		if len(batch.Records) != 0 {
			t.Fatalf("NOOP/READ rows returned: %+v", batch.Records)
		}
		end = batch.End
		if time.Now().After(deadline) {
			t.Fatalf("End did not move past the skipped rows within %v", waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// With limit 1 the first batch examines the NOOP row only.
	first := mustRead(t, b.cl, ports.Position{}, 1)
	if len(first.Records) != 0 || first.End.IsZero() || !first.End.Less(end) {
		t.Fatalf("limit 1: %d records, End %+v; want none and an End before %+v", len(first.Records), first.End, end)
	}

	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "3"})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "NOOP", ObjectKey: "4"})
	got, _ := readUntil(t, b.cl, end, 1)
	if got[0].Event.EntityID != "3" || got[0].Event.EventType != domain.EventInsert {
		t.Fatalf("read %+v, want the INSERT of 3", got[0].Event)
	}
	// The trailing NOOP is examined (End moves past the INSERT) once no
	// transaction elsewhere in the cluster holds it back.
	deadline = time.Now().Add(waitTimeout)
	for {
		batch := mustRead(t, b.cl, got[0].Position, 100)
		if len(batch.Records) != 0 {
			t.Fatalf("NOOP row returned: %+v", batch.Records)
		}
		if got[0].Position.Less(batch.End) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("End %+v did not move past the trailing NOOP within %v", batch.End, waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestChangeLogInvalidRows(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		bad  change
	}{
		{"UnknownModificationType", change{ObjectType: "Order", ModificationType: "MERGE", ObjectKey: "k1", Data: `{"a":1}`}},
		{"DataIsAnArray", change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "k1", Data: `[1,2]`}},
		{"BeforeIsAString", change{ObjectType: "Order", ModificationType: "UPDATE", ObjectKey: "k1", Data: `{}`, Before: `"x"`}},
		{"EmptyObjectType", change{ObjectType: " ", ModificationType: "INSERT", ObjectKey: "k1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ChangeLogConfig{})
			tc.bad.ID = "7f0c1d7e-5c1a-4e0e-9d55-0d3f3b8d2a10"
			insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "k0", Data: `{}`})
			insertChange(t, b.pool, tc.bad)
			insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "k2", Data: `{}`})

			got, _ := readUntil(t, b.cl, ports.Position{}, 3)
			if got[0].Err != nil || got[2].Err != nil {
				t.Fatalf("valid rows carry errors: %v, %v", got[0].Err, got[2].Err)
			}
			if got[2].Event.EntityID != "k2" {
				t.Fatalf("row after the invalid one = %q, want k2", got[2].Event.EntityID)
			}
			bad := got[1]
			if !errors.Is(bad.Err, domain.ErrInvalidEvent) {
				t.Fatalf("Err = %v, want it to wrap domain.ErrInvalidEvent", bad.Err)
			}
			if bad.Event.ID != tc.bad.ID || bad.Event.EntityID != "k1" || bad.Event.EntityType != tc.bad.ObjectType {
				t.Fatalf("Event = %+v, want the known id, type and entity id", bad.Event)
			}
			var raw map[string]any
			if err := json.Unmarshal(bad.Raw, &raw); err != nil {
				t.Fatalf("Raw is not JSON: %v: %s", err, bad.Raw)
			}
			if raw["modification_type"] != tc.bad.ModificationType || raw["id"] != tc.bad.ID || raw["object_key"] != "k1" {
				t.Fatalf("Raw = %s, want the row", bad.Raw)
			}
			if tc.bad.Data != "" {
				var wantData any
				_ = json.Unmarshal([]byte(tc.bad.Data), &wantData)
				if !domain.ValuesEqual(normalize(raw["object_data"]), normalize(wantData)) {
					t.Fatalf("Raw object_data = %v, want %v", raw["object_data"], wantData)
				}
			}
		})
	}
}

// normalize maps float64 (what json.Unmarshal into any yields) to
// json.Number so ValuesEqual can compare.
func normalize(v any) any {
	switch x := v.(type) {
	case float64:
		return json.Number(fmt.Sprint(x))
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalize(x[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k := range x {
			out[k] = normalize(x[k])
		}
		return out
	}
	return v
}

func TestChangeLogEventFields(t *testing.T) {
	t.Parallel()
	const (
		objectID = "0b5c3d0e-1111-4222-8333-444455556666"
		tenant   = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
		eventID  = "11111111-2222-4333-8444-555555555555"
		created  = "2024-05-06T07:08:09.123456Z"
	)
	createdAt, _ := time.Parse(time.RFC3339Nano, created)
	cases := []struct {
		name        string
		give        change
		wantType    domain.EventType
		wantEntity  string
		wantData    map[string]any
		wantBefore  map[string]any
		wantChanges map[string]domain.Change
		wantTenant  string
		wantUser    string
	}{
		{
			name:       "InsertWithMetadata",
			give:       change{ObjectType: "Order", ModificationType: "INSERT", ObjectID: objectID, Data: `{"total": 100.00, "status": "new"}`, TenantID: tenant, Contact: "user-7"},
			wantType:   domain.EventInsert,
			wantEntity: objectID,
			wantData:   map[string]any{"total": json.Number("100.00"), "status": "new"},
			wantTenant: tenant,
			wantUser:   "user-7",
		},
		{
			name:        "UpdateWithBeforeHasChanges",
			give:        change{ObjectType: "Order", ModificationType: "UPDATE", ObjectID: objectID, Data: `{"total": 100, "status": "shipped"}`, Before: `{"total": 100.00, "status": "new", "old": true}`},
			wantType:    domain.EventUpdate,
			wantEntity:  objectID,
			wantData:    map[string]any{"total": json.Number("100"), "status": "shipped"},
			wantBefore:  map[string]any{"total": json.Number("100.00"), "status": "new", "old": true},
			wantChanges: map[string]domain.Change{"status": {Old: "new", New: "shipped"}, "old": {Old: true, New: nil}},
		},
		{
			name:       "UpdateWithoutBeforeHasNoChanges",
			give:       change{ObjectType: "Order", ModificationType: "UPDATE", ObjectID: objectID, Data: `{"status": "shipped"}`},
			wantType:   domain.EventUpdate,
			wantEntity: objectID,
			wantData:   map[string]any{"status": "shipped"},
		},
		{
			name:       "DeleteWithOnlyBeforeImage",
			give:       change{ObjectType: "Order", ModificationType: "DELETE", ObjectKey: "42", Before: `{"id": 42}`},
			wantType:   domain.EventDelete,
			wantEntity: "42",
			wantData:   map[string]any{"id": json.Number("42")},
			wantBefore: map[string]any{"id": json.Number("42")},
		},
		{
			name:       "ObjectKeyWinsOverObjectID",
			give:       change{ObjectType: "Order", ModificationType: "custom", ObjectID: objectID, ObjectKey: "order-9"},
			wantType:   domain.EventCustom,
			wantEntity: "order-9",
			wantData:   map[string]any{},
		},
		{
			name:     "NoEntityID",
			give:     change{ObjectType: "Report", ModificationType: "CUSTOM", Data: `{"x": "y"}`},
			wantType: domain.EventCustom,
			wantData: map[string]any{"x": "y"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ChangeLogConfig{Source: "db-east"})
			tc.give.ID, tc.give.CreatedAt = eventID, created
			insertChange(t, b.pool, tc.give)
			got, _ := readUntil(t, b.cl, ports.Position{}, 1)
			r := got[0]
			if r.Err != nil {
				t.Fatalf("Err = %v", r.Err)
			}
			ev := r.Event
			if ev.ID != eventID || ev.EventType != tc.wantType || ev.EntityType != tc.give.ObjectType || ev.EntityID != tc.wantEntity {
				t.Fatalf("event = %s %s %s %q, want %s %s %s %q", ev.ID, ev.EventType, ev.EntityType, ev.EntityID,
					eventID, tc.wantType, tc.give.ObjectType, tc.wantEntity)
			}
			if ev.TenantID != tc.wantTenant || ev.UserID != tc.wantUser || ev.Source != "db-east" || !ev.Timestamp.Equal(createdAt) {
				t.Fatalf("metadata = tenant %q user %q source %q at %v", ev.TenantID, ev.UserID, ev.Source, ev.Timestamp)
			}
			if !domain.ValuesEqual(ev.Data, tc.wantData) || fmt.Sprint(ev.Data) != fmt.Sprint(tc.wantData) {
				t.Fatalf("Data = %v, want %v", ev.Data, tc.wantData)
			}
			if (ev.Before == nil) != (tc.wantBefore == nil) || !domain.ValuesEqual(asAny(ev.Before), asAny(tc.wantBefore)) {
				t.Fatalf("Before = %v, want %v", ev.Before, tc.wantBefore)
			}
			if len(ev.Changes) != len(tc.wantChanges) {
				t.Fatalf("Changes = %v, want %v", ev.Changes, tc.wantChanges)
			}
			for k, want := range tc.wantChanges {
				c, ok := ev.Changes[k]
				if !ok || !domain.ValuesEqual(c.Old, want.Old) || !domain.ValuesEqual(c.New, want.New) {
					t.Fatalf("Changes[%q] = %v, want %v", k, c, want)
				}
			}
		})
	}
}

func asAny(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

func TestChangeLogWait(t *testing.T) {
	t.Parallel()
	t.Run("WakesOnCommittedInsert", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ChangeLogConfig{PollInterval: noPoll})
		expectWake(t, b.cl, func() {
			insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "1"})
		})
	})
	t.Run("ReturnsAfterPollInterval", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ChangeLogConfig{PollInterval: 50 * time.Millisecond})
		settle(t, b.cl)
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		if err := b.cl.Wait(ctx); err != nil {
			t.Fatalf("Wait without inserts = %v, want nil after the poll interval", err)
		}
	})
	t.Run("ReturnsContextError", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ChangeLogConfig{PollInterval: noPoll})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := b.cl.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait with a cancelled ctx = %v, want context.Canceled", err)
		}
		settle(t, b.cl)
		ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if err := b.cl.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("armed Wait with a deadline = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestChangeLogCloseStopsListener(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{PollInterval: time.Minute})
	pid := b.cl.listener.pid.Load()
	b.cl.Close()
	b.cl.Close() // idempotent
	var n int
	if err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, int32(pid)).Scan(&n); err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	deadline := time.Now().Add(waitTimeout)
	for n != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("listener backend %d still connected after Close", pid)
		}
		time.Sleep(20 * time.Millisecond)
		if err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, int32(pid)).Scan(&n); err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
	}
	// Read still works on the caller's pool.
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "1"})
	readUntil(t, b.cl, ports.Position{}, 1)
}

func TestChangeLogBacklogAndOldestTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	ctx := t.Context()
	if n, err := b.cl.Backlog(ctx, ports.Position{}); err != nil || n != 0 {
		t.Fatalf("Backlog of an empty log = %d, %v", n, err)
	}
	for i := range 5 {
		insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: fmt.Sprint(i)})
	}
	got, end := readUntil(t, b.cl, ports.Position{}, 5)
	cases := []struct {
		after ports.Position
		want  int64
	}{
		{ports.Position{}, 5},
		{got[1].Position, 3},
		{end, 0},
	}
	for _, tc := range cases {
		if n, err := b.cl.Backlog(ctx, tc.after); err != nil || n != tc.want {
			t.Fatalf("Backlog(%+v) = %d, %v; want %d", tc.after, n, err, tc.want)
		}
	}

	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // cleanup
	insertChange(t, tx, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "open"})
	age, err := b.cl.OldestTransactionAge(ctx)
	if err != nil {
		t.Fatalf("OldestTransactionAge: %v", err)
	}
	if age <= 0 {
		t.Fatalf("OldestTransactionAge with an open writing transaction = %v, want > 0", age)
	}
	// The open transaction's row is not in the backlog until it commits.
	if n, err := b.cl.Backlog(ctx, end); err != nil || n != 0 {
		t.Fatalf("Backlog with an uncommitted row = %d, %v; want 0", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if n, err := b.cl.Backlog(ctx, end); err != nil || n != 1 {
		t.Fatalf("Backlog after commit = %d, %v; want 1", n, err)
	}
}

// TestChangeLogConformance runs the event-source suite against both ways
// of waking: NOTIFY and polling (database.wake = "poll").
func TestChangeLogConformance(t *testing.T) {
	t.Parallel()
	for _, pollOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("PollOnly=%v", pollOnly), func(t *testing.T) {
			t.Parallel()
			runChangeLogConformance(t, pollOnly)
		})
	}
}

func runChangeLogConformance(t *testing.T, pollOnly bool) {
	porttest.RunEventSource(t, func(t *testing.T) porttest.SourceHarness {
		const maxEvent = 64 << 10
		b := setup(t, ChangeLogConfig{MaxEventBytes: maxEvent, PollOnly: pollOnly})
		appendRow := func(ctx context.Context, ev domain.Event) error {
			data, err := json.Marshal(ev.Data)
			if err != nil {
				return err
			}
			var before []byte
			if ev.Before != nil {
				if before, err = json.Marshal(ev.Before); err != nil {
					return err
				}
			}
			_, err = b.pool.Exec(ctx, `
				INSERT INTO core.tb_entity_change_log
					(id, created_at, object_type, modification_type, object_id, object_data, object_data_before, tenant_id, fk_contact)
				VALUES ($1::uuid, $2, $3, $4, nullif($5, '')::uuid, $6::jsonb, $7::jsonb, nullif($8, '')::uuid, nullif($9, ''))`,
				ev.ID, ev.Timestamp, ev.EntityType, string(ev.EventType), ev.EntityID, string(data), nullJSON(before), ev.TenantID, ev.UserID)
			return err
		}
		return porttest.SourceHarness{
			Source: b.cl,
			Append: appendRow,
			AppendInvalid: func(ctx context.Context) error {
				_, err := b.pool.Exec(ctx, `INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_data)
					VALUES ('Order', 'BOGUS', '{}')`)
				return err
			},
			MaxEventBytes: maxEvent,
		}
	})
}

func nullJSON(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func BenchmarkChangeLogRead(b *testing.B) { benchmarkReadAll(b, ChangeLogConfig{}, true) }

// BenchmarkChangeLogReadSkipped reads the same rows as
// BenchmarkChangeLogRead when no observer names their entity: each row
// is examined (its position) and skipped, as the service reads a busy
// change log whose rows it does not want.
func BenchmarkChangeLogReadSkipped(b *testing.B) {
	benchmarkReadAll(b, ChangeLogConfig{Entities: []string{"Unmatched"}}, false)
}

// benchmarkReadAll reads 10 000 seeded rows in batches of 500 per
// iteration: as records when wanted, else as skipped rows.
func benchmarkReadAll(b *testing.B, cfg ChangeLogConfig, wanted bool) {
	const rows, batch = 10_000, 500
	bundle := setup(b, cfg)
	_, err := bundle.pool.Exec(context.Background(), `
		INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_id, object_data, object_data_before)
		SELECT 'Order', 'UPDATE', gen_random_uuid(),
		       jsonb_build_object('id', i, 'status', 'shipped', 'total', i * 1.5, 'customer', jsonb_build_object('tier', 'gold')),
		       jsonb_build_object('id', i, 'status', 'pending', 'total', i * 1.5, 'customer', jsonb_build_object('tier', 'gold'))
		FROM generate_series(1, $1) AS i`, rows)
	if err != nil {
		b.Fatalf("seed: %v", err)
	}
	ctx := context.Background()
	readAll := func() int { // the rows read, as records when wanted, else as skipped rows
		var n int
		for after := (ports.Position{}); ; {
			got, err := bundle.cl.Read(ctx, after, ports.ReadLimit{Rows: batch})
			if err != nil {
				b.Fatalf("Read: %v", err)
			}
			if got.End == after {
				return n
			}
			if !wanted && len(got.Records) > 0 {
				b.Fatalf("read %d records; want every row skipped", len(got.Records))
			}
			n += len(got.Records) + got.Skipped
			after = got.End
		}
	}
	// Visible before timing starts.
	testsupport.WaitUntil(b, 10*time.Second, 10*time.Millisecond, fmt.Sprintf("the %d seeded rows to become readable", rows),
		func() bool { return readAll() == rows })
	for b.Loop() {
		if n := readAll(); n != rows {
			b.Fatalf("read %d rows, want %d", n, rows)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// TestChangeLogInfiniteCreatedAt: created_at = 'infinity' (a timestamptz
// PostgreSQL accepts, which no Go time holds) becomes an invalid record
// naming it, with its position, and the rows after it flow; the read is
// not failed (which would be retried for ever).
func TestChangeLogInfiniteCreatedAt(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "k0", Data: `{}`})
	if _, err := b.pool.Exec(t.Context(), `INSERT INTO core.tb_entity_change_log (id, created_at, object_type, modification_type, object_key, object_data)
		VALUES (gen_random_uuid(), '-infinity', 'Order', 'INSERT', 'k1', '{"a": 1}')`); err != nil {
		t.Fatal(err)
	}
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "k2", Data: `{}`})
	got, _ := readUntil(t, b.cl, ports.Position{}, 3)
	if got[0].Err != nil || got[2].Err != nil || got[2].Event.EntityID != "k2" {
		t.Fatalf("the rows around the infinite one: %+v, %+v", got[0], got[2])
	}
	bad := got[1]
	if !errors.Is(bad.Err, domain.ErrInvalidEvent) || !strings.Contains(bad.Err.Error(), "created_at is -infinity") {
		t.Fatalf("Err = %v, want invalid naming created_at -infinity", bad.Err)
	}
	if bad.Position.IsZero() || bad.Event.EntityID != "k1" || !strings.Contains(string(bad.Raw), `"created_at":"-infinity"`) {
		t.Fatalf("record = %+v (raw %s), want its position, entity and raw row", bad, bad.Raw)
	}
}

// TestChangeLogCreatedAtPastYear9999: a created_at PostgreSQL holds but
// JSON does not (RFC 3339 ends at 9999) becomes an invalid record whose
// event can be written as JSON (the dead-letter store needs it), and the
// rows after it flow.
func TestChangeLogCreatedAtPastYear9999(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	if _, err := b.pool.Exec(t.Context(), `INSERT INTO core.tb_entity_change_log (id, created_at, object_type, modification_type, object_key, object_data)
		VALUES (gen_random_uuid(), '12000-01-01T00:00:00Z', 'Order', 'INSERT', 'k0', '{"a": 1}')`); err != nil {
		t.Fatal(err)
	}
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "k1", Data: `{}`})
	got, _ := readUntil(t, b.cl, ports.Position{}, 2)
	bad := got[0]
	if !errors.Is(bad.Err, domain.ErrInvalidEvent) || !strings.Contains(bad.Err.Error(), "created_at 12000-01-01T00:00:00Z: outside the years 0 to 9999") {
		t.Fatalf("Err = %v, want invalid naming created_at", bad.Err)
	}
	if _, err := bad.Event.Envelope(); err != nil || !bad.Event.Timestamp.IsZero() {
		t.Fatalf("the invalid record's event: timestamp %v, envelope error %v; want zero and none", bad.Event.Timestamp, err)
	}
	if got[1].Err != nil || got[1].Event.EntityID != "k1" {
		t.Fatalf("the row after it: %+v", got[1])
	}
}

// TestChangeLogPayloadTooDeep: object_data nested deeper than
// domain.MaxPayloadDepth becomes an invalid record naming the depth, whose
// Raw keeps the payload even past encoding/json's own limit of 10000
// levels (the dead letter must carry the data); the rows after it flow.
func TestChangeLogPayloadTooDeep(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	for i, depth := range []int{domain.MaxPayloadDepth + 1, 10001} {
		deep := strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
		if _, err := b.pool.Exec(t.Context(), `INSERT INTO core.tb_entity_change_log (id, object_type, modification_type, object_key, object_data)
			VALUES (gen_random_uuid(), 'Order', 'INSERT', $1, $2::jsonb)`, fmt.Sprintf("deep%d", i), deep); err != nil {
			t.Fatal(err)
		}
	}
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "after", Data: `{}`})
	got, _ := readUntil(t, b.cl, ports.Position{}, 3)
	for i, depth := range []int{domain.MaxPayloadDepth + 1, 10001} {
		bad := got[i]
		if !errors.Is(bad.Err, domain.ErrInvalidEvent) || !strings.Contains(bad.Err.Error(), fmt.Sprintf("nested %d levels deep", depth)) &&
			!strings.Contains(bad.Err.Error(), "exceeded max depth") {
			t.Fatalf("depth %d: Err = %v, want invalid naming the depth", depth, bad.Err)
		}
		if n := strings.Count(string(bad.Raw), `{"a": `); n != depth || !strings.Contains(string(bad.Raw), `"pk_entity_change_log":`) {
			t.Fatalf("depth %d: Raw holds %d levels of the payload (%d bytes), want the row and all %d", depth, n, len(bad.Raw), depth)
		}
	}
	if got[2].Err != nil || got[2].Event.EntityID != "after" {
		t.Fatalf("the row after them: %+v", got[2])
	}
}

// TestChangeLogPayloadThatCannotBeRendered: a payload of a few MB stored
// whose JSON text passes PostgreSQL's 1 GB limit for one value (180M
// control characters, each written as \u0001) failed every read that
// reached it ("out of memory", SQLSTATE 54000): the stream stopped there
// for ever. The rows before it are read, it becomes an invalid record
// (too large, without its payload), and the rows after it flow. A large
// payload that renders (stored above the size from which payloads are
// measured as text) is told apart from it.
func TestChangeLogPayloadThatCannotBeRendered(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	ctx := t.Context()
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "before", Data: `{}`})
	if _, err := b.pool.Exec(ctx, `INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_key, object_data)
		VALUES ('Order', 'INSERT', 'large', jsonb_build_object('a', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) AS i))),
		       ('Order', 'INSERT', 'unrenderable', jsonb_build_object('a', repeat(chr(1), 180000000))),
		       ('Order', 'INSERT', 'after', '{}')`); err != nil {
		t.Fatal(err)
	}
	got, _ := readUntil(t, b.cl, ports.Position{}, 4)
	for i, want := range []string{"before", "large", "unrenderable", "after"} {
		if got[i].Event.EntityID != want {
			t.Fatalf("record %d is %q (%v), want %q", i, got[i].Event.EntityID, got[i].Err, want)
		}
		if bad := want == "unrenderable"; bad != (got[i].Err != nil) {
			t.Fatalf("record %s: error %v", want, got[i].Err)
		}
	}
	bad := got[2]
	if !errors.Is(bad.Err, ports.ErrEventTooLarge) || !errors.Is(bad.Err, domain.ErrInvalidEvent) || !strings.Contains(bad.Err.Error(), "cannot be rendered") {
		t.Fatalf("Err = %v, want too large and invalid, saying it cannot be rendered", bad.Err)
	}
	if !strings.Contains(string(bad.Raw), `"object_data":null`) || bad.Position.IsZero() {
		t.Fatalf("record = %+v (raw %s), want its position and the row without its payload", bad, bad.Raw)
	}
	// Resend's lookup by event id finds it the same way (it failed with
	// the database's "out of memory" every time).
	stats, err := NewChangeLogStats(b.pool, "")
	if err != nil {
		t.Fatal(err)
	}
	var id string
	if err := b.pool.QueryRow(ctx, `SELECT id::text FROM core.tb_entity_change_log WHERE object_key = 'unrenderable'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	rec, err := stats.Event(ctx, id)
	if err != nil || !errors.Is(rec.Err, ports.ErrEventTooLarge) || !strings.Contains(rec.Err.Error(), "cannot be rendered") || rec.Position != bad.Position {
		t.Fatalf("Event(%s) = %+v, %v; want the record the reader returned", id, rec, err)
	}
}

// TestChangeLogNullContractColumns: an existing FraiseQL table may allow
// NULL in the contract columns. Such a row becomes an invalid record (the
// raw row as JSON, its position) and the rows after it flow. Before, the
// scan into non-nullable strings failed the whole batch, which was
// retried for ever: nothing after the row was ever read.
func TestChangeLogNullContractColumns(t *testing.T) {
	t.Parallel()
	const eventID = "7f0c1d7e-5c1a-4e0e-9d55-0d3f3b8d2a10"
	cases := []struct {
		name    string
		columns string // the row's id, created_at, object_type, modification_type, object_id
		values  string
		want    string // the error names these columns
		wantID  string
	}{
		{"NullID", "id, object_type, modification_type, object_id", "NULL, 'Order', 'INSERT', gen_random_uuid()", "id", ""},
		{"NullCreatedAt", "id, created_at, object_type, modification_type, object_id", "'" + eventID + "', NULL, 'Order', 'INSERT', gen_random_uuid()", "created_at", eventID},
		{"NullObjectType", "id, object_type, modification_type, object_id", "'" + eventID + "', NULL, 'INSERT', gen_random_uuid()", "object_type", eventID},
		{"NullModificationType", "id, object_type, modification_type, object_id", "'" + eventID + "', 'Order', NULL, gen_random_uuid()", "modification_type", eventID},
		{"NullObjectIDOfAnInsert", "id, object_type, modification_type, object_id", "'" + eventID + "', 'Order', 'INSERT', NULL", "object_id", eventID},
		{"SeveralNulls", "id, created_at, object_type, modification_type", "NULL, NULL, NULL, NULL", "id, created_at, object_type, modification_type", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ChangeLogConfig{})
			ctx := t.Context()
			// An existing table as FraiseQL may have made it: nothing NOT NULL.
			for _, col := range []string{"id", "created_at", "object_type", "modification_type"} {
				if _, err := b.pool.Exec(ctx, `ALTER TABLE core.tb_entity_change_log ALTER COLUMN `+col+` DROP NOT NULL`); err != nil {
					t.Fatal(err)
				}
			}
			insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "k0", Data: `{}`})
			if _, err := b.pool.Exec(ctx, `INSERT INTO core.tb_entity_change_log (`+tc.columns+`, object_data) VALUES (`+tc.values+`, '{"a": 1}')`); err != nil {
				t.Fatalf("insert the row with NULLs: %v", err)
			}
			insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "k2", Data: `{}`})

			got, _ := readUntil(t, b.cl, ports.Position{}, 3)
			if got[0].Err != nil || got[2].Err != nil || got[2].Event.EntityID != "k2" {
				t.Fatalf("the rows around the NULLs: %+v, %+v", got[0], got[2])
			}
			bad := got[1]
			if !errors.Is(bad.Err, domain.ErrInvalidEvent) || !strings.Contains(bad.Err.Error(), "NULL in "+tc.want) {
				t.Fatalf("Err = %v, want invalid naming NULL in %s", bad.Err, tc.want)
			}
			if bad.Position.IsZero() || bad.Event.ID != tc.wantID {
				t.Fatalf("record = %+v, want its position and known id", bad)
			}
			var raw map[string]any
			if err := json.Unmarshal(bad.Raw, &raw); err != nil {
				t.Fatalf("Raw is not JSON: %v: %s", err, bad.Raw)
			}
			if raw["pk_entity_change_log"] == nil || fmt.Sprint(raw["object_data"]) != "map[a:1]" {
				t.Fatalf("Raw = %s, want the row", bad.Raw)
			}
			for _, col := range strings.Split(tc.want, ", ") {
				if v, ok := raw[col]; col != "object_id" && (!ok || v != nil) {
					t.Fatalf("Raw %s = %v, want null", col, v)
				}
			}
		})
	}
}

// BenchmarkChangeLogReadFew reads the last 5 rows with a limit of 500, as
// a reader that keeps up with the writers does.
func BenchmarkChangeLogReadFew(b *testing.B) {
	const rows, few, limit = 1_000, 5, 500
	bundle := setup(b, ChangeLogConfig{})
	_, err := bundle.pool.Exec(context.Background(), `
		INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_id, object_data)
		SELECT 'Order', 'INSERT', gen_random_uuid(), jsonb_build_object('id', i, 'status', 'new')
		FROM generate_series(1, $1) AS i`, rows)
	if err != nil {
		b.Fatalf("seed: %v", err)
	}
	all, _ := readUntil(b, bundle.cl, ports.Position{}, rows)
	after := all[len(all)-few-1].Position
	ctx := context.Background()
	for b.Loop() {
		got, err := bundle.cl.Read(ctx, after, ports.ReadLimit{Rows: limit})
		if err != nil {
			b.Fatalf("Read: %v", err)
		}
		if len(got.Records) != few {
			b.Fatalf("read %d rows, want %d", len(got.Records), few)
		}
	}
}

// TestChangeLogSkipsEntitiesNoObserverWants: with Entities, rows of other
// object types are examined (End moves past them, Skipped counts them)
// but not returned, and their payload weighs nothing against the byte
// budget (it is neither rendered nor sent); a row with NULL object_type
// is still returned, as an invalid record. SetEntities(nil) returns every
// row from the next read on.
func TestChangeLogSkipsEntitiesNoObserverWants(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{Entities: []string{"Order"}})
	ctx := t.Context()
	big := `{"note": "` + strings.Repeat("x", 2000) + `"}`
	insertChange(t, b.pool, change{ObjectType: "Invoice", ModificationType: "INSERT", ObjectKey: "i1", Data: big})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "o1", Data: `{"n": 1}`})
	if _, err := b.pool.Exec(ctx, `ALTER TABLE core.tb_entity_change_log ALTER COLUMN object_type DROP NOT NULL`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_key) VALUES (NULL, 'INSERT', 'null-type')`); err != nil {
		t.Fatal(err)
	}
	insertChange(t, b.pool, change{ObjectType: "Invoice", ModificationType: "INSERT", ObjectKey: "i2", Data: big})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "o2", Data: `{"n": 2}`})
	var lastPK int64
	if err := b.pool.QueryRow(ctx, `SELECT max(pk_entity_change_log) FROM core.tb_entity_change_log`).Scan(&lastPK); err != nil {
		t.Fatal(err)
	}
	// Once no transaction elsewhere in the cluster holds the rows back,
	// one read within a 500-byte budget takes them all.
	deadline := time.Now().Add(waitTimeout)
	var batch ports.Batch
	for {
		var err error
		if batch, err = b.cl.Read(ctx, ports.Position{}, ports.ReadLimit{Rows: 100, Bytes: 500}); err != nil {
			t.Fatal(err)
		}
		if batch.End.Seq == lastPK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("End %+v did not reach pk %d within %v", batch.End, lastPK, waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var keys []string
	for _, r := range batch.Records {
		keys = append(keys, r.Event.EntityID)
		if (r.Err != nil) != (r.Event.EntityID == "null-type") {
			t.Fatalf("record %+v: only the NULL object_type row is invalid", r)
		}
	}
	if fmt.Sprint(keys) != "[o1 null-type o2]" || batch.Skipped != 2 {
		t.Fatalf("records %q, skipped %d; want o1, the invalid NULL-type row, o2, and 2 skipped", keys, batch.Skipped)
	}
	// A skipped row ships its position, wanted flag and size (0) alone:
	// every other column NULL, tenant and contact empty.
	rows, err := b.pool.Query(ctx, b.cl.readSQL, "0", int64(0), 100, 1<<20, int64(math.MaxInt64), 1<<18, []string{"Order"})
	if err != nil {
		t.Fatal(err)
	}
	var unwanted int
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		if v[2] == true {
			continue
		}
		unwanted++
		for i := 3; i <= 11; i++ {
			if v[i] != nil {
				t.Errorf("skipped row pk %v: column %d = %v, want NULL", v[0], i, v[i])
			}
		}
		if v[12] != "" || v[13] != "" || fmt.Sprint(v[14]) != "0" {
			t.Errorf("skipped row pk %v: tenant %q, contact %q, size %v; want '', '', 0", v[0], v[12], v[13], v[14])
		}
	}
	if err := rows.Err(); err != nil || unwanted != 2 {
		t.Fatalf("direct read: %v, %d skipped rows, want 2", err, unwanted)
	}

	b.cl.SetEntities(nil)
	insertChange(t, b.pool, change{ObjectType: "Invoice", ModificationType: "INSERT", ObjectKey: "i3", Data: `{}`})
	got, _ := readUntil(t, b.cl, batch.End, 1)
	if got[0].Event.EntityType != "Invoice" || got[0].Event.EntityID != "i3" {
		t.Fatalf("after SetEntities(nil) read %+v, want the Invoice i3", got[0].Event)
	}
}

// TestChangeLogTextColumnsCountAgainstTheLimits: a row's text columns
// weigh with its payload, against reader.max_event_bytes and the read's
// byte budget. Before, only object_data and object_data_before were
// counted: a 100 KB object_key (or fk_contact) under a 64 KiB limit was
// read and shipped whole, and rows of 30 KB keys all came in one read
// whatever its byte budget. A row over the limit is an invalid record
// whose text columns are cut to ports.OversizeTextChars characters, and the rows after
// it flow.
func TestChangeLogTextColumnsCountAgainstTheLimits(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	b := setup(t, ChangeLogConfig{MaxEventBytes: limit})
	big := strings.Repeat("k", 100_000)
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "before", Data: `{}`})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: big, Data: `{}`})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "contact", Contact: big, Data: `{}`})
	insertChange(t, b.pool, change{ObjectType: strings.Repeat("O", 100_000), ModificationType: "INSERT", ObjectKey: "type", Data: `{}`})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "after", Data: `{}`})
	got, end := readUntil(t, b.cl, ports.Position{}, 5)
	for i, want := range []string{"before", big[:ports.OversizeTextChars], "contact", "type", "after"} {
		rec := got[i]
		if rec.Event.EntityID != want {
			t.Fatalf("record %d: entity id %.30q… (%d bytes), want %.30q… (%d bytes); err %v", i, rec.Event.EntityID, len(rec.Event.EntityID), want, len(want), rec.Err)
		}
		if tooLarge := i > 0 && i < 4; tooLarge != errors.Is(rec.Err, ports.ErrEventTooLarge) {
			t.Fatalf("record %d (%.30s): Err = %v, want too large %v", i, want, rec.Err, tooLarge)
		}
		if rec.Err != nil && (len(rec.Raw) > 4*ports.OversizeTextChars+1024 || !strings.Contains(rec.Err.Error(), "over the 65536-byte limit")) {
			t.Fatalf("record %d: Raw %d bytes, Err %v: want the row's columns cut and the limit named", i, len(rec.Raw), rec.Err)
		}
		if rec.Size > limit {
			t.Fatalf("record %d weighs %d, over the limit it was read under", i, rec.Size)
		}
	}
	if got[3].Event.EntityType != strings.Repeat("O", ports.OversizeTextChars) {
		t.Fatalf("object_type of the row over the limit: %d bytes, want its first %d characters", len(got[3].Event.EntityType), ports.OversizeTextChars)
	}

	// Rows within the limit weigh their keys against the byte budget
	// (both readable first: an open transaction elsewhere may hold the
	// second back, which would end the read after the first anyway).
	for i := range 2 {
		insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: fmt.Sprintf("%d%s", i, strings.Repeat("k", 30_000)), Data: `{}`})
	}
	readUntil(t, b.cl, end, 2)
	batch, err := b.cl.Read(t.Context(), end, ports.ReadLimit{Rows: 10, Bytes: 40_000})
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.Records) != 1 || batch.Records[0].Err != nil || batch.Records[0].Size < 30_000 {
		t.Fatalf("a read with a 40 000-byte budget returned %d records (first %+v), want the first row alone, weighing its key", len(batch.Records), batch.Records[0].Err)
	}

	// Resend's lookup by event id weighs rows as the reader does, under
	// the reader's limit (it read them whole, whatever their size).
	stats, err := NewChangeLogStats(b.pool, "")
	if err != nil {
		t.Fatal(err)
	}
	stats = stats.WithMaxEventBytes(limit)
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "payload", Data: `{"a":"` + big + `"}`})
	for _, key := range []string{"before", big, "contact", "payload"} {
		var id string
		if err := b.pool.QueryRow(t.Context(), `SELECT id::text FROM core.tb_entity_change_log WHERE object_key = $1`, key).Scan(&id); err != nil {
			t.Fatal(err)
		}
		var rec ports.Record
		// A row is found once no transaction older than it is open in the
		// cluster (as the reader reads it).
		for deadline := time.Now().Add(waitTimeout); ; time.Sleep(20 * time.Millisecond) {
			rec, err = stats.Event(t.Context(), id)
			if !errors.Is(err, ports.ErrNotFound) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("Event(%.20s): %v", key, err)
		}
		if tooLarge := key != "before"; tooLarge != errors.Is(rec.Err, ports.ErrEventTooLarge) || len(rec.Event.EntityID) > ports.OversizeTextChars || len(rec.Raw) > 4*ports.OversizeTextChars+1024 {
			t.Fatalf("Event(%.20s): Err %v, entity id %d bytes, raw %d bytes; want too large %v, the columns cut", key, rec.Err, len(rec.Event.EntityID), len(rec.Raw), tooLarge)
		}
	}
}

// A read after a position no transaction of the cluster has reached (a
// checkpoint restored from another cluster, or set by hand) fails, saying
// so and how to move it: before, such a reader read nothing, silently,
// until the cluster's ids passed it. A position the cluster has passed
// reads as before.
func TestChangeLogReadAfterAPositionAheadOfTheCluster(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{PollInterval: noPoll})
	insertChange(t, b.pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "1"})
	limit := ports.ReadLimit{Rows: 10, Bytes: 1 << 20}
	// The row is readable once every older transaction of the cluster
	// ended (other tests' run beside this one).
	var batch ports.Batch
	var err error
	waitUntil(t, "the row readable", func() bool {
		batch, err = b.cl.Read(t.Context(), ports.Position{}, limit)
		return err != nil || len(batch.Records) == 1
	})
	if err != nil || len(batch.Records) != 1 {
		t.Fatalf("read = %d records, %v; want the row", len(batch.Records), err)
	}
	if _, err := b.cl.Read(t.Context(), batch.End, limit); err != nil {
		t.Fatalf("read at the end: %v", err)
	}
	b.cl.aheadAt.Store(0) // checked at once, not a minute after the read before
	ahead := ports.Position{TxID: batch.End.TxID + 1_000_000_000, Seq: 1}
	if _, err := b.cl.Read(t.Context(), ahead, limit); err == nil || !strings.Contains(err.Error(), "ahead of every transaction") || !strings.Contains(err.Error(), "replay") {
		t.Fatalf("read after %s = %v, want an error saying it is ahead and how to move it", ahead, err)
	}
}
