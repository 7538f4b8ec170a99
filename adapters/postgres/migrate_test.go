package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestMigrateConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		cfg     MigrateConfig
		wantErr string
	}{
		{"ThreePartTable", MigrateConfig{ChangeLogTable: "a.b.c"}, "change_log_table"},
		{"FourPartTable", MigrateConfig{ChangeLogTable: "a.b.c.d"}, "change_log_table"},
		{"EmptyTablePart", MigrateConfig{ChangeLogTable: "core."}, "change_log_table"},
		{"BlankChannel", MigrateConfig{Channel: "  "}, "channel"},
		{"LongObserverSchema", MigrateConfig{ObserverSchema: strings.Repeat("s", 64)}, "observer_schema"},
		{"NegativeBatchSize", MigrateConfig{BatchSize: -1}, "batch_size"},
		{"NegativeLockTimeout", MigrateConfig{LockTimeout: -time.Second}, "lock_timeout"},
		{"NegativeLockAttempts", MigrateConfig{LockAttempts: -1}, "lock_attempts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Validation happens before the pool is used.
			pool, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
			if err != nil {
				t.Fatalf("pgxpool.New: %v", err)
			}
			defer pool.Close()
			err = Migrate(t.Context(), pool, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Migrate(%+v) = %v, want an error naming %q", tc.cfg, err, tc.wantErr)
			}
		})
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T, pool *pgxpool.Pool)
	}{
		{"Twice", func(t *testing.T, pool *pgxpool.Pool) {
			for i := range 2 {
				if err := Migrate(t.Context(), pool, MigrateConfig{}); err != nil {
					t.Fatalf("Migrate #%d: %v", i+1, err)
				}
			}
		}},
		{"Concurrently", func(t *testing.T, pool *pgxpool.Pool) {
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Go(func() { errs[i] = Migrate(t.Context(), pool, MigrateConfig{}) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("concurrent Migrate #%d: %v", i+1, err)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := newTestPool(t)
			tc.run(t, pool)
			// Whatever the path, the result works end to end: the observer
			// schema exists, rows are read and an insert wakes a waiter.
			var n int
			if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM observer.checkpoints`).Scan(&n); err != nil {
				t.Fatalf("observer schema missing: %v", err)
			}
			cl, _ := newTestChangeLog(t, pool, ChangeLogConfig{PollInterval: noPoll})
			expectWake(t, cl, func() {
				insertChange(t, pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "1", Data: `{"a": 1}`})
			})
			got, _ := readUntil(t, cl, ports.Position{}, 1)
			if got[0].Event.EntityID != "1" {
				t.Fatalf("read %+v", got[0].Event)
			}
		})
	}
}

func TestMigrateCustomNames(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	cfg := MigrateConfig{ChangeLogTable: "Events Log", Channel: "my-channel", ObserverSchema: "obs state"}
	for range 2 {
		if err := Migrate(t.Context(), pool, cfg); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM "obs state".leases`).Scan(&n); err != nil {
		t.Fatalf("observer schema missing: %v", err)
	}
	cl, _ := newTestChangeLog(t, pool, ChangeLogConfig{Table: cfg.ChangeLogTable, Channel: cfg.Channel, PollInterval: noPoll})
	expectWake(t, cl, func() {
		if _, err := pool.Exec(t.Context(), `INSERT INTO public."Events Log" (object_type, modification_type, object_key) VALUES ('Order', 'INSERT', 'x')`); err != nil {
			t.Fatalf("insert: %v", err)
		}
	})
	got, _ := readUntil(t, cl, ports.Position{}, 1)
	if got[0].Event.EntityID != "x" {
		t.Fatalf("read %+v", got[0].Event)
	}

	// Migrating again with another channel moves the trigger.
	cfg.Channel = "other"
	if err := Migrate(t.Context(), pool, cfg); err != nil {
		t.Fatalf("Migrate with a new channel: %v", err)
	}
	moved, _ := newTestChangeLog(t, pool, ChangeLogConfig{Table: cfg.ChangeLogTable, Channel: "other", PollInterval: noPoll})
	expectWake(t, moved, func() {
		if _, err := pool.Exec(t.Context(), `INSERT INTO public."Events Log" (object_type, modification_type, object_key) VALUES ('Order', 'INSERT', 'y')`); err != nil {
			t.Fatalf("insert: %v", err)
		}
	})
}

func TestMigrateExistingFraiseQLTable(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	// FraiseQL's own table, without txid and object_key, already in use.
	_, err := pool.Exec(ctx, fraiseQLTableDDL+`;
		INSERT INTO core.tb_entity_change_log (object_type, object_id, modification_type, object_data)
		VALUES ('Order', '00000000-0000-4000-8000-000000000001', 'INSERT', '{"n": 1}'),
		       ('Order', '00000000-0000-4000-8000-000000000002', 'NOOP', '{}'),
		       ('Order', '00000000-0000-4000-8000-000000000003', 'UPDATE', '{"n": 3}')`)
	if err != nil {
		t.Fatalf("create FraiseQL table: %v", err)
	}
	for range 2 {
		if err := Migrate(ctx, pool, MigrateConfig{}); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	cl, _ := newTestChangeLog(t, pool, ChangeLogConfig{})
	insertChange(t, pool, change{ObjectType: "Order", ObjectID: "00000000-0000-4000-8000-000000000004", ModificationType: "DELETE", Before: `{"n": 4}`})
	got, _ := readUntil(t, cl, ports.Position{}, 3)
	wantIDs := []string{
		"00000000-0000-4000-8000-000000000001",
		"00000000-0000-4000-8000-000000000003",
		"00000000-0000-4000-8000-000000000004",
	}
	for i, r := range got {
		if r.Err != nil || r.Event.EntityID != wantIDs[i] {
			t.Fatalf("record %d = %q (err %v), want %q", i, r.Event.EntityID, r.Err, wantIDs[i])
		}
	}
	// The columns FraiseQL did not have were added; its own were kept.
	var cols int
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FROM information_schema.columns
		WHERE table_schema = 'core' AND table_name = 'tb_entity_change_log'
		  AND column_name IN ('txid', 'object_key', 'extra_metadata', 'change_status')`).Scan(&cols); err != nil || cols != 4 {
		t.Fatalf("columns after migrate = %d, %v; want 4", cols, err)
	}
}

// oldNotifyBody is the trigger function of earlier versions: a NOTIFY per
// statement, whether or not a reader waits.
const oldNotifyBody = `
BEGIN
	PERFORM pg_notify(TG_ARGV[0], '');
	RETURN NULL;
END
`

// notifyObjects returns the oids of the notify function and trigger, the
// function's body and the xmin of its catalog row.
func notifyObjects(t testing.TB, pool *pgxpool.Pool) (fnOID, trgOID uint32, body, rowXmin string) {
	t.Helper()
	err := pool.QueryRow(t.Context(), `
		SELECT p.oid, t.oid, p.prosrc, p.xmin::text
		FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE t.tgrelid = 'core.tb_entity_change_log'::regclass AND t.tgname = $1`, notifyTriggerName).
		Scan(&fnOID, &trgOID, &body, &rowXmin)
	if err != nil {
		t.Fatalf("look up notify trigger: %v", err)
	}
	return fnOID, trgOID, body, rowXmin
}

// TestMigrateUpgradesNotifyTrigger upgrades an installation of an earlier
// version, whose trigger has no WHEN clause and whose function notifies on
// every statement: the trigger is recreated with its WHEN clause, which
// needs a brief table lock (bounded by LockTimeout: behind a writer's open
// transaction Migrate gives up and leaves the old capture working), and
// the function is replaced in place; an up-to-date installation is left
// alone without a table lock. The upgraded capture notifies only a waiting
// reader.
func TestMigrateUpgradesNotifyTrigger(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	createFraiseQLTable(t, pool, 3)
	if err := Migrate(ctx, pool, MigrateConfig{}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	for _, q := range []string{
		`CREATE OR REPLACE FUNCTION observer.notify_change_log() RETURNS trigger LANGUAGE plpgsql AS $fn$` + oldNotifyBody + `$fn$`,
		`DROP TRIGGER ` + notifyTriggerName + ` ON core.tb_entity_change_log`,
		`CREATE TRIGGER ` + notifyTriggerName + ` AFTER INSERT ON core.tb_entity_change_log FOR EACH STATEMENT EXECUTE FUNCTION observer.notify_change_log('fraiseql_events')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatalf("install the earlier version's capture: %v", err)
		}
	}
	fnOID, _, body, _ := notifyObjects(t, pool)
	if body != oldNotifyBody {
		t.Fatalf("old body not installed: %q", body)
	}
	before := filenode(t, pool)
	counter := newNotifyCounter(t, pool, DefaultChannel)
	if err := insertLive(ctx, pool); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if n := counter.count(t); n != 1 {
		t.Fatalf("the old trigger sent %d notifications for one commit without a reader, want 1", n)
	}

	// Behind a writer's open transaction the upgrade waits for the table
	// lock, at most LockTimeout per attempt, then gives up.
	withWriterOpen := func(migrate func() error) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit: no-op
		if err := insertLive(ctx, tx); err != nil {
			t.Fatalf("insert in the open transaction: %v", err)
		}
		err = migrate()
		if err := tx.Commit(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
		return err
	}
	quick := func() error {
		return Migrate(ctx, pool, MigrateConfig{LockTimeout: 100 * time.Millisecond, LockAttempts: 1})
	}
	var pgErr *pgconn.PgError
	if err := withWriterOpen(quick); !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Fatalf("upgrade behind a writer's open transaction = %v, want a lock timeout", err)
	}
	if _, _, body, _ := notifyObjects(t, pool); body != oldNotifyBody {
		t.Fatal("a failed upgrade changed the function")
	}

	if err := Migrate(ctx, pool, MigrateConfig{}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	gotFn, trgOID, body, rowXmin := notifyObjects(t, pool)
	switch {
	case body != notifyFunctionBody:
		t.Fatalf("function body after the upgrade = %q", body)
	case gotFn != fnOID:
		t.Fatalf("function recreated (oid %d -> %d), want replaced in place", fnOID, gotFn)
	case !strings.Contains(triggerWhen(t, pool), "pg_try_advisory_xact_lock_shared"):
		t.Fatalf("trigger after the upgrade has WHEN %q, want the probe", triggerWhen(t, pool))
	case filenode(t, pool) != before:
		t.Fatal("the change log was rewritten")
	}
	// Up to date: no table lock, nothing rewritten.
	if err := withWriterOpen(quick); err != nil {
		t.Fatalf("Migrate of an up-to-date capture with a writer's transaction open: %v", err)
	}
	if _, trg, _, again := notifyObjects(t, pool); again != rowXmin || trg != trgOID {
		t.Fatal("Migrate rewrote an up-to-date notify function or trigger")
	}

	// No reader waits: no notification.
	sent := counter.count(t)
	for range 3 {
		if err := insertLive(ctx, pool); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	if n := counter.count(t); n != sent {
		t.Fatalf("%d notifications without a waiting reader after the upgrade, want none", n-sent)
	}
	// A waiting reader is woken.
	cl, _ := newTestChangeLog(t, pool, ChangeLogConfig{PollInterval: noPoll})
	expectWake(t, cl, func() {
		if err := insertLive(ctx, pool); err != nil {
			t.Fatalf("insert: %v", err)
		}
	})
	readUntil(t, cl, ports.Position{}, 3+7) // 3 rows before, 7 inserted since
}

// triggerWhen is the notify trigger's WHEN clause as PostgreSQL prints it.
func triggerWhen(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	var when string
	if err := pool.QueryRow(t.Context(), `SELECT coalesce(pg_get_expr(tgqual, tgrelid), '') FROM pg_trigger
		WHERE tgrelid = 'core.tb_entity_change_log'::regclass AND tgname = $1`, notifyTriggerName).Scan(&when); err != nil {
		t.Fatalf("look up the trigger's WHEN clause: %v", err)
	}
	return when
}

// TestMigrateKeepsCurrentTrigger migrates twice for channels whose
// hashtext is positive and negative (PostgreSQL prints the two forms of
// the WHEN clause's key differently): the second leaves the trigger alone.
func TestMigrateKeepsCurrentTrigger(t *testing.T) {
	t.Parallel()
	for _, channel := range []string{"ch_a", "ch_b"} { // hashtext 1511040857, -669259638
		t.Run(channel, func(t *testing.T) {
			t.Parallel()
			pool := newTestPool(t)
			var first uint32
			for i := range 2 {
				if err := Migrate(t.Context(), pool, MigrateConfig{Channel: channel}); err != nil {
					t.Fatalf("Migrate: %v", err)
				}
				_, trg, _, _ := notifyObjects(t, pool)
				if i == 0 {
					first = trg
				} else if trg != first {
					t.Fatalf("the second Migrate recreated the trigger (WHEN %q)", triggerWhen(t, pool))
				}
			}
		})
	}
}

func TestMigrateRejectsForeignTable(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	if _, err := pool.Exec(t.Context(), `CREATE SCHEMA core; CREATE TABLE core.tb_entity_change_log (id int)`); err != nil {
		t.Fatalf("create: %v", err)
	}
	err := Migrate(t.Context(), pool, MigrateConfig{})
	if err == nil || !strings.Contains(err.Error(), "core.tb_entity_change_log") {
		t.Fatalf("Migrate on an unrelated table = %v, want an error naming it", err)
	}
}

// fraiseQLTableDDL is FraiseQL's own change log: no txid, no object_key.
const fraiseQLTableDDL = `
		CREATE SCHEMA core;
		CREATE TABLE core.tb_entity_change_log (
			pk_entity_change_log bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			id uuid NOT NULL DEFAULT gen_random_uuid(),
			fk_customer_org uuid,
			fk_contact text,
			tenant_id uuid,
			object_type text NOT NULL,
			object_id uuid NOT NULL,
			modification_type text NOT NULL,
			change_status text,
			object_data jsonb,
			object_data_before jsonb,
			extra_metadata jsonb,
			created_at timestamptz NOT NULL DEFAULT now()
		)`

// fraiseQLPartitionedDDL is the same table partitioned by created_at (an
// identity column needs PostgreSQL 17 there, so the key is a bigserial).
const fraiseQLPartitionedDDL = `
		CREATE SCHEMA core;
		CREATE TABLE core.tb_entity_change_log (
			pk_entity_change_log bigserial,
			id uuid NOT NULL DEFAULT gen_random_uuid(),
			fk_contact text,
			tenant_id uuid,
			object_type text NOT NULL,
			object_id uuid NOT NULL,
			modification_type text NOT NULL,
			object_data jsonb,
			object_data_before jsonb,
			created_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (pk_entity_change_log, created_at)
		) PARTITION BY RANGE (created_at);
		CREATE TABLE core.tb_entity_change_log_default PARTITION OF core.tb_entity_change_log DEFAULT`

// oldRowsSQL inserts $1 rows numbered 1..$1 (object_id oldRowID(n), pk n on
// a fresh table) into the FraiseQL table.
const oldRowsSQL = `
		INSERT INTO core.tb_entity_change_log (object_type, object_id, modification_type, object_data)
		SELECT 'Order', ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'INSERT', jsonb_build_object('n', i)
		FROM generate_series(1, $1::int) AS i`

func oldRowID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// createFraiseQLTable creates FraiseQL's table holding rows old rows.
func createFraiseQLTable(t testing.TB, pool *pgxpool.Pool, rows int) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), fraiseQLTableDDL); err != nil {
		t.Fatalf("create FraiseQL table: %v", err)
	}
	if _, err := pool.Exec(t.Context(), oldRowsSQL, rows); err != nil {
		t.Fatalf("insert %d rows: %v", rows, err)
	}
}

// insertLive inserts one row the way the application does while Migrate
// runs.
func insertLive(ctx context.Context, q execer) error {
	_, err := q.Exec(ctx, `
		INSERT INTO core.tb_entity_change_log (object_type, object_id, modification_type, object_data)
		VALUES ('Order', gen_random_uuid(), 'INSERT', '{"live": true}')`)
	return err
}

// recordAttr returns the attribute key of r as an int64 (slog.Int and
// slog.Int64 values).
func recordAttr(r testsupport.Record, key string) (int64, bool) {
	n, ok := r.Attrs[key].(int64)
	return n, ok
}

// assertMigrated checks the finished change log by behaviour: a new row
// gets its transaction's id, txid cannot be NULL, the temporary check is
// gone and the (txid, pk) index is valid.
func assertMigrated(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var ownTxID bool
	if err := tx.QueryRow(ctx, `
		INSERT INTO core.tb_entity_change_log (object_type, object_id, modification_type)
		VALUES ('Order', gen_random_uuid(), 'INSERT')
		RETURNING txid = pg_current_xact_id()`).Scan(&ownTxID); err != nil || !ownTxID {
		t.Fatalf("a new row's txid is its transaction's id: %v, %v", ownTxID, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO core.tb_entity_change_log (object_type, object_id, modification_type, txid)
		VALUES ('Order', gen_random_uuid(), 'INSERT', NULL)`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23502" {
		t.Fatalf("inserting a NULL txid = %v, want a not-null violation", err)
	}
	var checks, invalid int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE conrelid = 'core.tb_entity_change_log'::regclass AND contype = 'c'`).Scan(&checks); err != nil || checks != 0 {
		t.Fatalf("check constraints left on the change log = %d, %v; want 0", checks, err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_index WHERE indrelid = 'core.tb_entity_change_log'::regclass AND NOT indisvalid`).Scan(&invalid); err != nil || invalid != 0 {
		t.Fatalf("invalid indexes on the change log = %d, %v; want 0", invalid, err)
	}
	var valid bool
	var cols []string
	if err := pool.QueryRow(ctx, `
		SELECT i.indisvalid, array(
			SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
		FROM pg_index i WHERE i.indexrelid = to_regclass('core.tb_entity_change_log_txid_idx')`).Scan(&valid, &cols); err != nil {
		t.Fatalf("txid index: %v", err)
	}
	if !valid || strings.Join(cols, ",") != "txid,pk_entity_change_log" {
		t.Fatalf("txid index valid=%v on %v, want a valid index on (txid, pk_entity_change_log)", valid, cols)
	}
}

// assertReadOrder reads the whole change log from the start: first the
// old rows 1..old in pk order with the backfilled txid, then every later
// row (total in all) in strictly increasing (txid, pk) order, then a row
// inserted now, last, with a real txid.
func assertReadOrder(t testing.TB, pool *pgxpool.Pool, old int) {
	t.Helper()
	var total int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM core.tb_entity_change_log`).Scan(&total); err != nil {
		t.Fatalf("count: %v", err)
	}
	if err := insertLive(t.Context(), pool); err != nil {
		t.Fatalf("insert after migrate: %v", err)
	}
	cl, _ := newTestChangeLog(t, pool, ChangeLogConfig{})
	got, _ := readUntil(t, cl, ports.Position{}, total+1)
	var prev ports.Position
	for i, r := range got {
		if r.Err != nil {
			t.Fatalf("record %d: %v", i, r.Err)
		}
		if i > 0 && (r.Position.TxID < prev.TxID || r.Position.TxID == prev.TxID && r.Position.Seq <= prev.Seq) {
			t.Fatalf("record %d at %+v follows %+v", i, r.Position, prev)
		}
		prev = r.Position
		if i < old && (r.Position.TxID != 1 || r.Event.EntityID != oldRowID(i+1)) {
			t.Fatalf("record %d = %s at %+v, want old row %s with txid 1", i, r.Event.EntityID, r.Position, oldRowID(i+1))
		}
	}
	if last := got[len(got)-1]; last.Position.TxID < 3 || last.Event.Data["live"] != true {
		t.Fatalf("the row inserted after Migrate came last at %+v: %+v", last.Position, last.Event)
	}
}

// newNoticePool opens a pool on a fresh database whose sessions send DEBUG1
// notices; proved reports whether one said that SET NOT NULL on the change
// log's txid used a validated constraint instead of scanning the table.
func newNoticePool(t testing.TB) (pool *pgxpool.Pool, proved func() bool) {
	t.Helper()
	pcfg, err := pgxpool.ParseConfig(testenv.NewDatabase(t))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	var mu sync.Mutex
	var notices []string
	pcfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n.Message)
	}
	pcfg.ConnConfig.RuntimeParams["client_min_messages"] = "debug1"
	pool, err = pgxpool.NewWithConfig(t.Context(), pcfg)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range notices {
			if strings.Contains(n, `"tb_entity_change_log.txid" are sufficient to prove`) {
				return true
			}
		}
		return false
	}
}

// underLoad is what migrateUnderLoad saw.
type underLoad struct {
	took     time.Duration // Migrate's duration
	inserts  int           // inserts while Migrate ran
	inWindow int           // inserts that started and ended inside the step
	maxWait  time.Duration // the longest insert
}

// migrateUnderLoad runs Migrate while inserting rows one at a time, as the
// application would, until it returns. The step between the log records
// begin and end is the window whose inserts are counted apart. So that the
// window holds inserts however fast the machine, a writer's transaction
// that inserted a row when the step began stays open until an insert
// went through inside the window (or 30s passed): a CREATE INDEX
// CONCURRENTLY waits for it, and a step that blocked writers would block
// the inserts instead.
func migrateUnderLoad(t testing.TB, pool *pgxpool.Pool, cfg MigrateConfig, logs *testsupport.Logs, begin, end string) underLoad {
	t.Helper()
	ctx := t.Context()
	var inStep atomic.Bool
	held := make(chan pgx.Tx, 1)
	logs.Hook = func(r testsupport.Record) {
		switch r.Message {
		case begin:
			tx, err := pool.Begin(ctx)
			if err == nil {
				if err = insertLive(ctx, tx); err == nil {
					held <- tx
				} else {
					_ = tx.Rollback(ctx)
				}
			}
			if err != nil {
				t.Errorf("open a writer's transaction at %q: %v", begin, err)
			}
			inStep.Store(true)
		case end:
			inStep.Store(false)
		}
	}
	var (
		holder   pgx.Tx
		heldFrom time.Time
	)
	release := func() {
		if holder != nil {
			if err := holder.Commit(ctx); err != nil {
				t.Errorf("commit the held writer's transaction: %v", err)
			}
			holder = nil
		}
	}
	defer release()
	cfg.Logger = slog.New(logs)
	migrated := make(chan error, 1)
	start := time.Now()
	go func() { migrated <- Migrate(ctx, pool, cfg) }()
	var res underLoad
	for {
		select {
		case err := <-migrated:
			if err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			res.took = time.Since(start)
			return res
		case tx := <-held:
			holder, heldFrom = tx, time.Now()
		default:
		}
		inBefore := inStep.Load()
		t0 := time.Now()
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second) // a step that blocks writers fails here, not by hanging
		err := insertLive(ictx, pool)
		cancel()
		if err != nil {
			t.Fatalf("insert during Migrate (after %v): %v", time.Since(t0).Round(time.Millisecond), err)
		}
		res.maxWait = max(res.maxWait, time.Since(t0))
		res.inserts++
		if inBefore && inStep.Load() {
			res.inWindow++
		}
		if holder != nil && (res.inWindow > 0 || time.Since(heldFrom) > 30*time.Second) {
			release()
		}
	}
}

func filenode(t testing.TB, pool *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(t.Context(), `SELECT pg_relation_filenode('core.tb_entity_change_log')::bigint`).Scan(&n); err != nil {
		t.Fatalf("filenode: %v", err)
	}
	return n
}

// TestMigrateUnderLoad migrates a large existing change log while the
// application keeps inserting: no insert waits long, the table is not
// rewritten, old rows are read first in pk order.
func TestMigrateUnderLoad(t *testing.T) {
	t.Parallel()
	const rows = 50_000
	cases := []struct {
		name       string
		setup      string // run after the rows are inserted
		begin, end string // the step during which inserts must go through
		backfill   bool
	}{
		// FraiseQL's table: txid is added with a constant default.
		{"NoTxIDColumn", "", "building the txid index", "txid index built", false},
		// A nullable txid added by hand: its NULLs are backfilled.
		{"NullableTxIDColumn", `ALTER TABLE core.tb_entity_change_log ADD COLUMN txid xid8`,
			"backfilling txid of existing change-log rows", "txid backfill finished", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, proved := newNoticePool(t)
			createFraiseQLTable(t, pool, rows)
			if tc.setup != "" {
				if _, err := pool.Exec(t.Context(), tc.setup); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			before := filenode(t, pool)
			logs := &testsupport.Logs{}
			res := migrateUnderLoad(t, pool, MigrateConfig{BatchSize: 1000}, logs, tc.begin, tc.end)
			t.Logf("%s: migrated %d rows in %v; %d concurrent inserts (%d during %q), longest insert %v",
				tc.name, rows, res.took.Round(time.Millisecond), res.inserts, res.inWindow, tc.begin, res.maxWait.Round(time.Microsecond))
			if res.inWindow == 0 {
				t.Fatalf("no insert ran during %q (%d inserts in all)", tc.begin, res.inserts)
			}
			if res.maxWait > 2*time.Second {
				t.Fatalf("an insert waited %v during Migrate, want < 2s", res.maxWait)
			}
			if after := filenode(t, pool); after != before {
				t.Fatalf("the change log was rewritten (filenode %d -> %d)", before, after)
			}
			backfilled := logs.Find("txid backfill finished")
			if !tc.backfill {
				if len(backfilled) != 0 {
					t.Fatalf("Migrate backfilled a table that had no txid column")
				}
			} else {
				if len(backfilled) != 1 {
					t.Fatalf("backfill finished %d times, want 1", len(backfilled))
				}
				if n, _ := recordAttr(backfilled[0], "rows"); n < rows {
					t.Fatalf("backfill reported %d rows, want at least %d", n, rows)
				}
				if !proved() {
					t.Fatalf("SET NOT NULL scanned the table instead of using the validated check")
				}
			}
			assertMigrated(t, pool)
			assertReadOrder(t, pool, rows)
		})
	}
}

func TestMigrateResumesInterruptedBackfill(t *testing.T) {
	t.Parallel()
	const (
		rows      = 20_000
		batch     = 1000
		cancelAt  = 5
		remaining = rows - cancelAt*batch
	)
	pool := newTestPool(t)
	createFraiseQLTable(t, pool, rows)
	// A txid column added by hand, without default: every row is NULL.
	if _, err := pool.Exec(t.Context(), `ALTER TABLE core.tb_entity_change_log ADD COLUMN txid xid8`); err != nil {
		t.Fatalf("add txid: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	batches := 0
	logs := &testsupport.Logs{Hook: func(r testsupport.Record) {
		if r.Message == "txid backfill batch" {
			if batches++; batches == cancelAt {
				cancel()
			}
		}
	}}
	err := Migrate(ctx, pool, MigrateConfig{Logger: slog.New(logs), BatchSize: batch})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Migrate = %v, want context.Canceled", err)
	}
	var done, null int
	var notNull bool
	if err := pool.QueryRow(t.Context(), `
		SELECT count(*) FILTER (WHERE txid IS NOT NULL), count(*) FILTER (WHERE txid IS NULL),
		       (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'core.tb_entity_change_log'::regclass AND attname = 'txid')
		FROM core.tb_entity_change_log`).Scan(&done, &null, &notNull); err != nil {
		t.Fatalf("count: %v", err)
	}
	if done != cancelAt*batch || null != remaining || notNull {
		t.Fatalf("after the interruption: %d rows backfilled, %d NULL, not null %v; want %d, %d, false", done, null, notNull, cancelAt*batch, remaining)
	}
	// A row written meanwhile gets a real txid and is read after the old ones.
	if err := insertLive(t.Context(), pool); err != nil {
		t.Fatalf("insert between runs: %v", err)
	}

	resumed := &testsupport.Logs{}
	if err := Migrate(t.Context(), pool, MigrateConfig{Logger: slog.New(resumed), BatchSize: batch}); err != nil {
		t.Fatalf("resumed Migrate: %v", err)
	}
	started := resumed.Find("backfilling txid of existing change-log rows")
	if len(started) != 1 {
		t.Fatalf("resumed backfill started %d times, want 1", len(started))
	}
	if n, _ := recordAttr(started[0], "rows"); n != remaining {
		t.Fatalf("resumed backfill has %d rows to do, want %d", n, remaining)
	}
	if n := len(resumed.Find("txid backfill batch")); n != remaining/batch {
		t.Fatalf("resumed backfill ran %d batches, want %d", n, remaining/batch)
	}
	assertMigrated(t, pool)
	assertReadOrder(t, pool, rows)
}

// TestMigrateResumesFromEachState starts Migrate from every state an
// interrupted run (or an older version) can leave.
func TestMigrateResumesFromEachState(t *testing.T) {
	t.Parallel()
	const rows = 3000
	exec := func(t *testing.T, pool *pgxpool.Pool, stmts ...string) {
		t.Helper()
		for _, s := range stmts {
			if _, err := pool.Exec(t.Context(), s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	const (
		addTxID    = `ALTER TABLE core.tb_entity_change_log ADD COLUMN txid xid8`
		setDefault = `ALTER TABLE core.tb_entity_change_log ALTER COLUMN txid SET DEFAULT pg_current_xact_id()`
		fillAll    = `UPDATE core.tb_entity_change_log SET txid = '1'`
		addCheck   = `ALTER TABLE core.tb_entity_change_log ADD CONSTRAINT fraiseql_observer_txid_not_null CHECK (txid IS NOT NULL) NOT VALID`
		validate   = `ALTER TABLE core.tb_entity_change_log VALIDATE CONSTRAINT fraiseql_observer_txid_not_null`
		setNotNull = `ALTER TABLE core.tb_entity_change_log ALTER COLUMN txid SET NOT NULL`
		addKey     = `ALTER TABLE core.tb_entity_change_log ADD COLUMN object_key text`
	)
	cases := []struct {
		name  string
		setup func(t *testing.T, pool *pgxpool.Pool)
		old   int // old rows read first, in pk order, with txid 1
	}{
		{"NoTxIDColumn", func(t *testing.T, pool *pgxpool.Pool) {
			createFraiseQLTable(t, pool, rows)
		}, rows},
		{"ColumnWithoutDefault", func(t *testing.T, pool *pgxpool.Pool) {
			createFraiseQLTable(t, pool, rows)
			exec(t, pool, addTxID)
		}, rows},
		{"PartlyBackfilled", func(t *testing.T, pool *pgxpool.Pool) {
			createFraiseQLTable(t, pool, rows)
			exec(t, pool, addTxID, setDefault, addKey,
				`UPDATE core.tb_entity_change_log SET txid = '1' WHERE pk_entity_change_log % 3 = 0`)
		}, rows},
		{"CheckNotValid", func(t *testing.T, pool *pgxpool.Pool) {
			createFraiseQLTable(t, pool, rows)
			exec(t, pool, addTxID, setDefault, addKey, fillAll, addCheck)
		}, rows},
		{"CheckNotValidWithNullRows", func(t *testing.T, pool *pgxpool.Pool) {
			createFraiseQLTable(t, pool, rows)
			exec(t, pool, addTxID, setDefault, addKey, addCheck)
		}, rows},
		{"CheckValidated", func(t *testing.T, pool *pgxpool.Pool) {
			createFraiseQLTable(t, pool, rows)
			exec(t, pool, addTxID, setDefault, addKey, fillAll, addCheck, validate)
		}, rows},
		{"NotNullWithCheckLeft", func(t *testing.T, pool *pgxpool.Pool) {
			createFraiseQLTable(t, pool, rows)
			exec(t, pool, addTxID, setDefault, addKey, fillAll, addCheck, validate, setNotNull)
		}, rows},
		{"InvalidIndexLeft", func(t *testing.T, pool *pgxpool.Pool) {
			createFraiseQLTable(t, pool, rows)
			exec(t, pool, addTxID, setDefault, addKey, fillAll, setNotNull)
			// A failed concurrent build leaves an INVALID index under the name.
			_, err := pool.Exec(t.Context(), `CREATE UNIQUE INDEX CONCURRENTLY tb_entity_change_log_txid_idx ON core.tb_entity_change_log (object_type)`)
			if err == nil {
				t.Fatalf("the unique build over duplicates succeeded")
			}
			var valid bool
			if err := pool.QueryRow(t.Context(), `SELECT indisvalid FROM pg_index WHERE indexrelid = 'core.tb_entity_change_log_txid_idx'::regclass`).Scan(&valid); err != nil || valid {
				t.Fatalf("leftover index valid=%v, %v; want an invalid one", valid, err)
			}
		}, rows},
		{"GapsInPK", func(t *testing.T, pool *pgxpool.Pool) {
			exec(t, pool, fraiseQLTableDDL)
			if _, err := pool.Exec(t.Context(), `
				INSERT INTO core.tb_entity_change_log (pk_entity_change_log, object_type, object_id, modification_type, object_data)
				OVERRIDING SYSTEM VALUE
				SELECT i * 1000000, 'Order', ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'INSERT', '{}'
				FROM generate_series(1, 50) AS i`); err != nil {
				t.Fatalf("insert: %v", err)
			}
			exec(t, pool, `SELECT setval(pg_get_serial_sequence('core.tb_entity_change_log', 'pk_entity_change_log'), 50000000)`)
		}, 50},
		{"Partitioned", func(t *testing.T, pool *pgxpool.Pool) {
			exec(t, pool, fraiseQLPartitionedDDL)
			if _, err := pool.Exec(t.Context(), oldRowsSQL, rows); err != nil {
				t.Fatalf("insert: %v", err)
			}
		}, rows},
		{"EmptyTable", func(t *testing.T, pool *pgxpool.Pool) {
			createFraiseQLTable(t, pool, 0)
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := newTestPool(t)
			tc.setup(t, pool)
			logs := &testsupport.Logs{}
			if err := Migrate(t.Context(), pool, MigrateConfig{Logger: slog.New(logs), BatchSize: 1000}); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			// Each backfill transaction starts at a NULL row: gaps in pk
			// cost nothing.
			if n := len(logs.Find("txid backfill batch")); n > tc.old {
				t.Fatalf("backfill ran %d batches for %d rows", n, tc.old)
			}
			assertMigrated(t, pool)
			assertReadOrder(t, pool, tc.old)
			// Once done, Migrate finds nothing to do.
			again := &testsupport.Logs{}
			if err := Migrate(t.Context(), pool, MigrateConfig{Logger: slog.New(again)}); err != nil {
				t.Fatalf("second Migrate: %v", err)
			}
			if recs := again.Records(); len(recs) != 0 {
				t.Fatalf("second Migrate logged %d records, first %q; want none", len(recs), recs[0].Message)
			}
		})
	}
}

// TestMigrateLockTimeout holds a lock that conflicts with ALTER TABLE: the
// migration's queued lock request must block writers for at most
// LockTimeout at a time, retry, and give up after LockAttempts.
func TestMigrateLockTimeout(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		attempts int
		giveUp   bool
	}{
		{"RetriesUntilFree", 1000, false},
		{"GivesUp", 2, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := newTestPool(t)
			ctx := t.Context()
			createFraiseQLTable(t, pool, 100)
			blocker, err := pool.Begin(ctx)
			if err != nil {
				t.Fatalf("begin: %v", err)
			}
			defer func() { _ = blocker.Rollback(context.Background()) }()
			if _, err := blocker.Exec(ctx, `SELECT count(*) FROM core.tb_entity_change_log`); err != nil {
				t.Fatalf("blocker: %v", err)
			}
			logs := &testsupport.Logs{}
			migrated := make(chan error, 1)
			go func() {
				migrated <- Migrate(ctx, pool, MigrateConfig{Logger: slog.New(logs), LockTimeout: 100 * time.Millisecond, LockAttempts: tc.attempts})
			}()
			logs.WaitFor(t, "table lock not available, retrying", waitTimeout)
			if tc.giveUp {
				err := <-migrated
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
					t.Fatalf("Migrate behind a long transaction = %v, want a lock timeout", err)
				}
			} else {
				// Migrate keeps asking for the lock; writers still get through.
				for range 3 {
					t0 := time.Now()
					if err := insertLive(ctx, pool); err != nil {
						t.Fatalf("insert while Migrate waits: %v", err)
					}
					if wait := time.Since(t0); wait > 2*time.Second {
						t.Fatalf("an insert waited %v behind Migrate's lock request, want < 2s", wait)
					}
				}
			}
			if err := blocker.Commit(ctx); err != nil {
				t.Fatalf("commit blocker: %v", err)
			}
			if tc.giveUp {
				if err := Migrate(ctx, pool, MigrateConfig{}); err != nil {
					t.Fatalf("Migrate once the table is free: %v", err)
				}
			} else if err := <-migrated; err != nil {
				t.Fatalf("Migrate once the table is free: %v", err)
			}
			assertMigrated(t, pool)
			assertReadOrder(t, pool, 100)
		})
	}
}

func TestMigrateConcurrentlyOnExistingTable(t *testing.T) {
	t.Parallel()
	const rows = 20_000
	pool := newTestPool(t)
	createFraiseQLTable(t, pool, rows)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	logs := make([]*testsupport.Logs, len(errs))
	for i := range errs {
		logs[i] = &testsupport.Logs{}
		wg.Go(func() {
			errs[i] = Migrate(t.Context(), pool, MigrateConfig{Logger: slog.New(logs[i]), BatchSize: 1000})
		})
	}
	wg.Wait()
	builds := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate #%d: %v", i+1, err)
		}
		builds += len(logs[i].Find("txid index built"))
	}
	if builds != 1 {
		t.Fatalf("%d of the concurrent runs built the index, want exactly 1", builds)
	}
	assertMigrated(t, pool)
	assertReadOrder(t, pool, rows)
}

// TestMigrateWarnsAboutNullableContractColumns: an existing table that
// allows NULL in contract columns is accepted (rows with NULL there are
// dead-lettered) but Migrate says so, naming them; a table made by
// Migrate has none to warn about.
func TestMigrateWarnsAboutNullableContractColumns(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	ddl := strings.NewReplacer("id uuid NOT NULL", "id uuid", "object_type text NOT NULL", "object_type text").Replace(fraiseQLTableDDL)
	if _, err := pool.Exec(ctx, ddl); err != nil {
		t.Fatalf("create table: %v", err)
	}
	logs := &testsupport.Buffer{}
	if err := Migrate(ctx, pool, MigrateConfig{Logger: slog.New(slog.NewTextHandler(logs, nil))}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	// Given MigrateConfig.Warn, the caller gets the warning instead of the log.
	var warns []string
	if err := Migrate(ctx, pool, MigrateConfig{Warn: func(w string) { warns = append(warns, w) }}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if len(warns) != 1 {
		t.Fatalf("warnings = %q, want one", warns)
	}
	warn := warns[0]
	for _, w := range []string{"allows NULL in id, object_type:", "dead-lettered"} {
		if !strings.Contains(warn, w) {
			t.Errorf("warning %q does not say %q", warn, w)
		}
		if !strings.Contains(logs.String(), w) {
			t.Errorf("Migrate's log does not say %q:\n%s", w, logs)
		}
	}

	fresh := newTestPool(t)
	if err := Migrate(ctx, fresh, MigrateConfig{}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	warns = nil
	if err := Migrate(ctx, fresh, MigrateConfig{Warn: func(w string) { warns = append(warns, w) }}); err != nil || len(warns) != 0 {
		t.Fatalf("a table made by Migrate: warnings %q, %v; want none", warns, err)
	}
}

// schemaObjects names every table and index of the observer schema, so
// that a migrate finding them all runs nothing.
func TestSchemaObjects(t *testing.T) {
	t.Parallel()
	stmts := observerSchemaStatements("obs")
	got := schemaObjects("obs", stmts)
	creates := 0
	for _, s := range stmts {
		if strings.HasPrefix(s, "CREATE TABLE") || strings.HasPrefix(s, "CREATE INDEX") {
			creates++
		}
	}
	if len(got) != creates || creates < 13 {
		t.Fatalf("schemaObjects = %q (%d), want one per CREATE TABLE/INDEX (%d)", got, len(got), creates)
	}
	for _, want := range []string{`"obs".checkpoints`, `"obs"."retries_due_idx"`, `"obs".deliveries`} {
		if !slices.Contains(got, want) {
			t.Errorf("schemaObjects lacks %s: %q", want, got)
		}
	}
}

// TestMigrateUpToDateTakesNoLocks: a migrate of an up-to-date database
// returns at once while a running replica holds a write lock on the
// delivery log. Before, its CREATE INDEX IF NOT EXISTS waited for a SHARE
// lock on the table (the index existed), and every write behind it
// queued, at each start of a replica.
func TestMigrateUpToDateTakesNoLocks(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	if err := Migrate(ctx, pool, MigrateConfig{}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, tbl := range []string{"deliveries", "retries", "dead_letters"} {
		if _, err := tx.Exec(ctx, `LOCK TABLE observer.`+tbl+` IN ROW EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
	}
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second) // correctness bound: it should take milliseconds
	defer cancel()
	if err := Migrate(mctx, pool, MigrateConfig{LockTimeout: 3 * time.Second, LockAttempts: 1}); err != nil {
		t.Fatalf("Migrate of an up-to-date database beside a writer: %v", err)
	}
}
