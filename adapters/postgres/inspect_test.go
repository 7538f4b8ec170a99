package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

func TestCheckpointListerConformance(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	porttest.RunCheckpointLister(t, func(t *testing.T) porttest.ListingCheckpointStore {
		c, err := NewCheckpoints(pool, newSchema(t))
		if err != nil {
			t.Fatalf("NewCheckpoints: %v", err)
		}
		return c
	})
}

func TestLeaseInspectorConformance(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	porttest.RunLeaseInspector(t, func(t *testing.T) porttest.InspectableLease {
		l, err := NewLease(pool, newSchema(t))
		if err != nil {
			t.Fatalf("NewLease: %v", err)
		}
		return l
	})
}

func TestChangeLogInspectorConformance(t *testing.T) {
	t.Parallel()
	porttest.RunChangeLogInspector(t, func(t *testing.T) porttest.InspectorHarness {
		b := setup(t, ChangeLogConfig{})
		stats, err := NewChangeLogStats(b.pool, "")
		if err != nil {
			t.Fatalf("NewChangeLogStats: %v", err)
		}
		return porttest.InspectorHarness{
			Inspector: stats,
			Source:    b.cl,
			Append: func(ctx context.Context, ev domain.Event) error {
				data, err := json.Marshal(ev.Data)
				if err != nil {
					return err
				}
				_, err = b.pool.Exec(ctx, `INSERT INTO core.tb_entity_change_log
					(id, created_at, object_type, modification_type, object_id, object_data)
					VALUES ($1::uuid, $2, $3, $4, $5::uuid, $6::jsonb)`,
					ev.ID, ev.Timestamp, ev.EntityType, string(ev.EventType), ev.EntityID, string(data))
				return err
			},
			OpenTransaction: func(ctx context.Context) (func(), error) {
				tx, err := b.pool.Begin(ctx)
				if err != nil {
					return nil, err
				}
				if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
					_ = tx.Rollback(context.WithoutCancel(ctx))
					return nil, err
				}
				return func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }, nil
			},
		}
	})
}

// A store on a database that was not migrated says so with
// ports.ErrNotMigrated, keeping the driver's message.
func TestNotMigratedIsReported(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	cps, err := NewCheckpoints(pool, "")
	if err != nil {
		t.Fatal(err)
	}
	dl, err := NewDeadLetters(pool, "")
	if err != nil {
		t.Fatal(err)
	}
	stats, err := NewChangeLogStats(pool, "")
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["List"] = cps.List(ctx)
	_, _, checks["Load"] = cps.Load(ctx, "default")
	_, checks["Stats"] = dl.Stats(ctx)
	_, checks["Backlog"] = stats.Backlog(ctx, ports.Position{})
	for op, err := range checks {
		if !errors.Is(err, ports.ErrNotMigrated) || !IsMissingRelation(err) {
			t.Errorf("%s on an unmigrated database = %v, want ports.ErrNotMigrated with the driver's error", op, err)
		}
	}
}
