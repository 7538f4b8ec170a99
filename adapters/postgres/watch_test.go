package postgres

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// md5UUID is the object_id Watch derives for a key that is not a uuid.
func md5UUID(s string) string {
	sum := md5.Sum([]byte(s))
	h := hex.EncodeToString(sum[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func TestWatch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		ddl      string
		table    string // as given to Watch
		entity   string // WatchConfig.Entity
		want     string // expected entity type
		key      string // key value of the inserted row, as SQL literal
		entityID string // the event's entity id
		objectID string // expected object_id column
	}{
		{
			name:     "UUIDKey",
			ddl:      `CREATE SCHEMA shop; CREATE TABLE shop.orders (id uuid PRIMARY KEY, status text, total numeric)`,
			table:    "shop.orders",
			entity:   "Order",
			want:     "Order",
			key:      `'6f1c2a9e-0d4b-4e8a-9c1f-2b3d4e5f6a7b'`,
			entityID: "6f1c2a9e-0d4b-4e8a-9c1f-2b3d4e5f6a7b",
			objectID: "6f1c2a9e-0d4b-4e8a-9c1f-2b3d4e5f6a7b",
		},
		{
			name:     "BigintKeyInPublicWithDefaultEntity",
			ddl:      `CREATE TABLE "Line Items" (item_no bigint PRIMARY KEY, status text, total numeric)`,
			table:    "Line Items",
			want:     "Line Items",
			key:      `9007199254740993`,
			entityID: "9007199254740993",
			objectID: md5UUID("public.Line Items:9007199254740993"),
		},
		{
			name:     "TextKey",
			ddl:      `CREATE SCHEMA app; CREATE TABLE app.skus (code text PRIMARY KEY, status text, total numeric)`,
			table:    "app.skus",
			entity:   "Sku",
			want:     "Sku",
			key:      `'A-1 ''x'''`,
			entityID: "A-1 'x'",
			objectID: md5UUID("app.skus:A-1 'x'"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ChangeLogConfig{})
			ctx := t.Context()
			exec := func(sql string) {
				t.Helper()
				if _, err := b.pool.Exec(ctx, sql); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
			exec(tc.ddl)
			cfg := WatchConfig{Table: tc.table, Entity: tc.entity}
			if err := Watch(ctx, b.pool, cfg); err != nil {
				t.Fatalf("Watch: %v", err)
			}
			if err := Watch(ctx, b.pool, cfg); err != nil {
				t.Fatalf("Watch again: %v", err)
			}
			tbl, _ := parseTableName("table", tc.table)
			q := tbl.Sanitize()
			keyCol := map[string]string{"UUIDKey": "id", "BigintKeyInPublicWithDefaultEntity": "item_no", "TextKey": "code"}[tc.name]
			exec(fmt.Sprintf(`INSERT INTO %s VALUES (%s, 'new', 100.00)`, q, tc.key))
			exec(fmt.Sprintf(`UPDATE %s SET status = 'shipped', total = 100 WHERE %s = %s`, q, keyCol, tc.key))
			exec(fmt.Sprintf(`UPDATE %s SET total = 120.5 WHERE %s = %s`, q, keyCol, tc.key))
			exec(fmt.Sprintf(`DELETE FROM %s WHERE %s = %s`, q, keyCol, tc.key))

			got, end := readUntil(t, b.cl, ports.Position{}, 4)
			for i, r := range got {
				if r.Err != nil {
					t.Fatalf("record %d: %v", i, r.Err)
				}
				if r.Event.EntityType != tc.want || r.Event.EntityID != tc.entityID {
					t.Fatalf("record %d: entity %s %q, want %s %q", i, r.Event.EntityType, r.Event.EntityID, tc.want, tc.entityID)
				}
			}
			ins, upd, upd2, del := got[0].Event, got[1].Event, got[2].Event, got[3].Event
			kinds := []domain.EventType{ins.EventType, upd.EventType, upd2.EventType, del.EventType}
			if fmt.Sprint(kinds) != "[INSERT UPDATE UPDATE DELETE]" {
				t.Fatalf("event kinds = %v", kinds)
			}
			if ins.Data["status"] != "new" || ins.Before != nil || ins.Changes != nil {
				t.Fatalf("INSERT = data %v before %v changes %v", ins.Data, ins.Before, ins.Changes)
			}
			if upd.Data["status"] != "shipped" || upd.Before["status"] != "new" {
				t.Fatalf("UPDATE = data %v before %v", upd.Data, upd.Before)
			}
			// 100.00 -> 100 is no change; only status changed.
			if len(upd.Changes) != 1 || upd.Changes["status"].Old != "new" || upd.Changes["status"].New != "shipped" {
				t.Fatalf("UPDATE changes = %v, want only status", upd.Changes)
			}
			if c, ok := upd2.Changes["total"]; len(upd2.Changes) != 1 || !ok || c.New != json.Number("120.5") {
				t.Fatalf("second UPDATE changes = %v, want total -> 120.5", upd2.Changes)
			}
			if del.Before["status"] != "shipped" || del.Data["status"] != "shipped" || del.Changes != nil {
				t.Fatalf("DELETE = data %v before %v changes %v", del.Data, del.Before, del.Changes)
			}
			var objectIDs []string
			rows, err := b.pool.Query(ctx, `SELECT DISTINCT object_id::text FROM core.tb_entity_change_log`)
			if err == nil {
				for rows.Next() {
					var s string
					_ = rows.Scan(&s)
					objectIDs = append(objectIDs, s)
				}
				err = rows.Err()
			}
			if err != nil || len(objectIDs) != 1 || objectIDs[0] != tc.objectID {
				t.Fatalf("object_id = %v (%v), want %s", objectIDs, err, tc.objectID)
			}

			// Unwatch stops the capture: only the marker written directly
			// after it shows up.
			if err := Unwatch(ctx, b.pool, cfg); err != nil {
				t.Fatalf("Unwatch: %v", err)
			}
			exec(fmt.Sprintf(`INSERT INTO %s VALUES (%s, 'again', 1)`, q, tc.key))
			insertChange(t, b.pool, change{ObjectType: "Marker", ModificationType: "CUSTOM"})
			after, _ := readUntil(t, b.cl, end, 1)
			if after[0].Event.EntityType != "Marker" {
				t.Fatalf("captured after Unwatch: %+v", after[0].Event)
			}
			if err := Unwatch(ctx, b.pool, cfg); !errors.Is(err, ports.ErrNotFound) {
				t.Fatalf("second Unwatch = %v, want ports.ErrNotFound", err)
			}
		})
	}
}

func TestWatchAgainChangesEntity(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	ctx := t.Context()
	if _, err := b.pool.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY)`); err != nil {
		t.Fatalf("create: %v", err)
	}
	for i, entity := range []string{"", "Item"} {
		if err := Watch(ctx, b.pool, WatchConfig{Table: "public.items", Entity: entity}); err != nil {
			t.Fatalf("Watch(%q): %v", entity, err)
		}
		if _, err := b.pool.Exec(ctx, `INSERT INTO items VALUES ($1)`, i); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	got, _ := readUntil(t, b.cl, ports.Position{}, 2)
	if got[0].Event.EntityType != "items" || got[1].Event.EntityType != "Item" {
		t.Fatalf("entities = %q, %q; want items then Item", got[0].Event.EntityType, got[1].Event.EntityType)
	}
	if n := captureFunctions(t, b); n != 1 {
		t.Fatalf("capture functions = %d, want 1", n)
	}
}

func TestWatchRenamedTable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		action func(t *testing.T, b *testBundle)
	}{
		{"WatchAgainReplacesTheOldFunction", func(t *testing.T, b *testBundle) {
			if err := Watch(t.Context(), b.pool, WatchConfig{Table: "public.renamed", Entity: "Thing"}); err != nil {
				t.Fatalf("Watch after rename: %v", err)
			}
			if n := captureFunctions(t, b); n != 1 {
				t.Fatalf("capture functions = %d, want 1", n)
			}
		}},
		{"UnwatchFindsTheFunction", func(t *testing.T, b *testBundle) {
			if err := Unwatch(t.Context(), b.pool, WatchConfig{Table: "public.renamed"}); err != nil {
				t.Fatalf("Unwatch after rename: %v", err)
			}
			if n := captureFunctions(t, b); n != 0 {
				t.Fatalf("capture functions = %d, want 0", n)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ChangeLogConfig{})
			if _, err := b.pool.Exec(t.Context(), `CREATE TABLE original (id int PRIMARY KEY)`); err != nil {
				t.Fatalf("create: %v", err)
			}
			if err := Watch(t.Context(), b.pool, WatchConfig{Table: "original", Entity: "Thing"}); err != nil {
				t.Fatalf("Watch: %v", err)
			}
			if _, err := b.pool.Exec(t.Context(), `ALTER TABLE original RENAME TO renamed`); err != nil {
				t.Fatalf("rename: %v", err)
			}
			tc.action(t, b)
		})
	}
}

func captureFunctions(t *testing.T, b *testBundle) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_proc WHERE pronamespace = 'observer'::regnamespace AND proname LIKE 'capture%'`).Scan(&n); err != nil {
		t.Fatalf("count capture functions: %v", err)
	}
	return n
}

func TestWatchLongNames(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	ctx := t.Context()
	schema, table := strings.Repeat("s", 63), strings.Repeat("T", 63)
	if _, err := b.pool.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA %[1]s; CREATE TABLE %[1]s."%[2]s" (id int PRIMARY KEY)`, schema, table)); err != nil {
		t.Fatalf("create: %v", err)
	}
	cfg := WatchConfig{Table: schema + "." + table}
	if err := Watch(ctx, b.pool, cfg); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if _, err := b.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s."%s" VALUES (7)`, schema, table)); err != nil {
		t.Fatalf("insert: %v", err)
	}
	got, _ := readUntil(t, b.cl, ports.Position{}, 1)
	if got[0].Event.EntityID != "7" || got[0].Event.EntityType != table {
		t.Fatalf("event = %+v", got[0].Event)
	}
	if err := Unwatch(ctx, b.pool, cfg); err != nil {
		t.Fatalf("Unwatch: %v", err)
	}
	if n := captureFunctions(t, b); n != 0 {
		t.Fatalf("capture functions after Unwatch = %d, want 0", n)
	}
}

func TestWatchErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	ctx := t.Context()
	if _, err := b.pool.Exec(ctx, `
		CREATE SCHEMA s;
		CREATE TABLE s.no_key (id int);
		CREATE TABLE s.composite (a int, b int, PRIMARY KEY (a, b));
		CREATE TABLE s.fine (id int PRIMARY KEY)`); err != nil {
		t.Fatalf("create: %v", err)
	}
	cases := []struct {
		name     string
		cfg      WatchConfig
		wantText []string
		wantIs   error
	}{
		{"NoPrimaryKey", WatchConfig{Table: "s.no_key"}, []string{"s.no_key", "no primary key"}, nil},
		{"CompositeKey", WatchConfig{Table: "s.composite"}, []string{"s.composite", "composite"}, nil},
		{"MissingTable", WatchConfig{Table: "s.missing"}, []string{"s.missing", "does not exist"}, ports.ErrNotFound},
		// Created without quotes, the table is s.fine: the error says so.
		{"CapitalsOfAnUnquotedName", WatchConfig{Table: "S.Fine"}, []string{"S.Fine", "does not exist", "created without quotes is s.fine"}, ports.ErrNotFound},
		{"ThreeParts", WatchConfig{Table: "a.b.c"}, []string{"table", "a.b.c"}, nil},
		{"EmptyTable", WatchConfig{}, []string{"table"}, nil},
		{"MissingChangeLog", WatchConfig{Table: "s.fine", ChangeLogTable: "nowhere.log"}, []string{"nowhere.log", "migrate"}, nil},
		// Watching the change log made its every write recurse until the
		// stack depth ran out: no event could be written at all.
		{"TheChangeLog", WatchConfig{Table: DefaultChangeLogTable}, []string{"the change log itself"}, nil},
		{"ObserverSchema", WatchConfig{Table: DefaultObserverSchema + ".retries"}, []string{"observer schema"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Watch(ctx, b.pool, tc.cfg)
			if err == nil {
				t.Fatalf("Watch(%+v) = nil, want an error", tc.cfg)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("Watch(%+v) = %v, want it to mention %q", tc.cfg, err, s)
				}
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("Watch(%+v) = %v, want errors.Is %v", tc.cfg, err, tc.wantIs)
			}
		})
	}
	t.Run("UnwatchUnwatched", func(t *testing.T) {
		t.Parallel()
		err := Unwatch(ctx, b.pool, WatchConfig{Table: "s.fine"})
		if !errors.Is(err, ports.ErrNotFound) || !strings.Contains(err.Error(), "s.fine") {
			t.Fatalf("Unwatch of an unwatched table = %v, want ports.ErrNotFound naming it", err)
		}
	})
}

func TestDerivedName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b []string
	}{
		{[]string{"a_b", "c"}, []string{"a", "b_c"}},
		{[]string{"Orders", "x"}, []string{"orders", "x"}},
		{[]string{strings.Repeat("s", 63), strings.Repeat("t", 63) + "1"}, []string{strings.Repeat("s", 63), strings.Repeat("t", 63) + "2"}},
	}
	for _, tc := range cases {
		na, nb := derivedName("capture_", tc.a...), derivedName("capture_", tc.b...)
		if na == nb {
			t.Fatalf("%v and %v share the name %q", tc.a, tc.b, na)
		}
		for _, n := range []string{na, nb} {
			if len(n) > 63 || strings.Trim(n, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
				t.Fatalf("name %q is not a plain identifier of at most 63 bytes", n)
			}
		}
		if na != derivedName("capture_", tc.a...) {
			t.Fatalf("derivedName is not stable for %v", tc.a)
		}
	}
}

// TestWatchBehindALongTransaction: replacing or dropping the capture
// trigger needs the table's exclusive lock. Behind a transaction that
// holds the table, Watch and Unwatch wait at most LockTimeout per attempt
// (the application's queries queued behind them wait no longer), log
// each retry, give up after LockAttempts with the lock timeout, and
// succeed once the table is free.
func TestWatchBehindALongTransaction(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("watch=%v", on), func(t *testing.T) {
			t.Parallel()
			b := setup(t, ChangeLogConfig{})
			ctx := t.Context()
			if _, err := b.pool.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY)`); err != nil {
				t.Fatalf("create: %v", err)
			}
			if !on {
				if err := Watch(ctx, b.pool, WatchConfig{Table: "items"}); err != nil {
					t.Fatalf("Watch: %v", err)
				}
			}
			run := func(cfg WatchConfig) error {
				cfg.Table = "items"
				if on {
					return Watch(ctx, b.pool, cfg)
				}
				return Unwatch(ctx, b.pool, cfg)
			}
			blocker, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = blocker.Rollback(context.Background()) }()
			if _, err := blocker.Exec(ctx, `INSERT INTO items VALUES (100)`); err != nil { // an application transaction, open
				t.Fatal(err)
			}

			logs := &testsupport.Logs{}
			err = run(WatchConfig{LockTimeout: 100 * time.Millisecond, LockAttempts: 2, Logger: slog.New(logs)})
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "55P03" || !strings.Contains(err.Error(), "2 attempts") {
				t.Fatalf("behind a long transaction: %v; want a lock timeout after 2 attempts", err)
			}
			if n := len(logs.Find("table lock not available, retrying")); n != 1 {
				t.Errorf("%d retries logged, want 1", n)
			}

			waiting := make(chan error, 1)
			go func() { waiting <- run(WatchConfig{LockTimeout: 100 * time.Millisecond, LockAttempts: 1000}) }()
			for i := range 3 { // writers get through while it keeps asking
				t0 := time.Now()
				if _, err := b.pool.Exec(ctx, `INSERT INTO items VALUES ($1)`, i); err != nil {
					t.Fatal(err)
				}
				if wait := time.Since(t0); wait > 2*time.Second {
					t.Fatalf("an insert waited %v behind the trigger's lock request, want < 2s", wait)
				}
			}
			if err := blocker.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-waiting; err != nil {
				t.Fatalf("once the table is free: %v", err)
			}
			var watched bool
			if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'items'::regclass AND tgname = $1)`,
				captureTriggerName).Scan(&watched); err != nil || watched != on {
				t.Errorf("watched = %v (%v), want %v", watched, err, on)
			}
		})
	}
}

// TestWatchKeepsTheApplicationWriting: the capture trigger must never be
// why an application's write fails. An application role that may write
// its table, but not the change log (nor use its schema), keeps writing
// (the trigger writes with the rights of the role that ran watch: before,
// "permission denied for schema core"); and after the key column is
// renamed, rows still commit, captured without a key (dead-lettered by
// the reader as invalid) until watch runs again (before, "record "new"
// has no field "id"" failed every write).
func TestWatchKeepsTheApplicationWriting(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	ctx := t.Context()
	role := testenv.Name("app_role")
	exec := func(sql string) {
		t.Helper()
		if _, err := b.pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE TABLE public.orders (id bigint PRIMARY KEY, status text)`)
	exec(`CREATE ROLE ` + role + ` NOLOGIN`)
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = b.pool.Exec(c, `DROP OWNED BY `+role)
		_, _ = b.pool.Exec(c, `DROP ROLE IF EXISTS `+role)
	})
	exec(`GRANT USAGE ON SCHEMA public TO ` + role)
	exec(`GRANT INSERT, UPDATE ON public.orders TO ` + role)
	if err := Watch(ctx, b.pool, WatchConfig{Table: "public.orders", Entity: "Order"}); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	asApp := func(sql string) error {
		conn, err := b.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+role); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, sql); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if err := asApp(`INSERT INTO public.orders VALUES (1, 'new')`); err != nil {
		t.Fatalf("the application role's insert into the watched table: %v", err)
	}
	exec(`ALTER TABLE public.orders RENAME COLUMN id TO order_id`)
	if err := asApp(`INSERT INTO public.orders VALUES (2, 'new')`); err != nil {
		t.Fatalf("an insert after the key column was renamed: %v", err)
	}
	var keys []*string
	rows, err := b.pool.Query(ctx, `SELECT object_key FROM core.tb_entity_change_log WHERE object_type = 'Order' ORDER BY pk_entity_change_log`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k *string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(keys) != 2 || keys[0] == nil || *keys[0] != "1" || keys[1] != nil {
		t.Errorf("captured keys = %v, want 1 then none (the renamed key)", keys)
	}
}
