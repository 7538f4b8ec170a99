package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
			cl, _ := newTestChangeLog(t, pool, ChangeLogConfig{PollInterval: time.Minute})
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- cl.Wait(ctx) }()
			insertChange(t, pool, change{ObjectType: "Order", ModificationType: "INSERT", ObjectKey: "1", Data: `{"a": 1}`})
			if err := <-done; err != nil {
				t.Fatalf("Wait after insert = %v", err)
			}
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
	cl, _ := newTestChangeLog(t, pool, ChangeLogConfig{Table: cfg.ChangeLogTable, Channel: cfg.Channel, PollInterval: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cl.Wait(ctx) }()
	if _, err := pool.Exec(t.Context(), `INSERT INTO public."Events Log" (object_type, modification_type, object_key) VALUES ('Order', 'INSERT', 'x')`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait on the custom channel = %v", err)
	}
	got, _ := readUntil(t, cl, ports.Position{}, 1)
	if got[0].Event.EntityID != "x" {
		t.Fatalf("read %+v", got[0].Event)
	}

	// Migrating again with another channel moves the trigger.
	cfg.Channel = "other"
	if err := Migrate(t.Context(), pool, cfg); err != nil {
		t.Fatalf("Migrate with a new channel: %v", err)
	}
	moved, _ := newTestChangeLog(t, pool, ChangeLogConfig{Table: cfg.ChangeLogTable, Channel: "other", PollInterval: time.Minute})
	done = make(chan error, 1)
	go func() { done <- moved.Wait(ctx) }()
	if _, err := pool.Exec(t.Context(), `INSERT INTO public."Events Log" (object_type, modification_type, object_key) VALUES ('Order', 'INSERT', 'y')`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait on the new channel = %v", err)
	}
}

func TestMigrateExistingFraiseQLTable(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	// FraiseQL's own table, without txid and object_key, already in use.
	_, err := pool.Exec(ctx, `
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
		);
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
