package postgres

import (
	"math"
	"testing"

	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

func TestCheckpointsConformance(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	porttest.RunCheckpointStore(t, func(t *testing.T) ports.CheckpointStore {
		c, err := NewCheckpoints(pool, newSchema(t))
		if err != nil {
			t.Fatalf("NewCheckpoints: %v", err)
		}
		return c
	})
}

func TestCheckpointsFencedConformance(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	porttest.RunFencedCheckpointStore(t, func(t *testing.T) (ports.CheckpointStore, ports.Lease) {
		schema := newSchema(t)
		c, err := NewCheckpoints(pool, schema)
		if err != nil {
			t.Fatalf("NewCheckpoints: %v", err)
		}
		l, err := NewLease(pool, schema)
		if err != nil {
			t.Fatalf("NewLease: %v", err)
		}
		return c, l
	})
}

func TestCheckpointsDurableAndTxIDRange(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	schema := newSchema(t)
	ctx := t.Context()
	first, err := NewCheckpoints(pool, schema)
	if err != nil {
		t.Fatalf("NewCheckpoints: %v", err)
	}
	want := ports.Position{TxID: math.MaxInt64, Seq: 42}
	if err := first.Save(ctx, "reader", want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	// A txid beyond bigint is refused and leaves the stored one alone.
	if err := first.Save(ctx, "reader", ports.Position{TxID: math.MaxInt64 + 1, Seq: 1}); err == nil {
		t.Fatal("Save of a txid beyond bigint succeeded")
	}
	// Another instance (another process) sees what the first saved.
	second, err := NewCheckpoints(pool, schema)
	if err != nil {
		t.Fatalf("NewCheckpoints: %v", err)
	}
	got, ok, err := second.Load(ctx, "reader")
	if err != nil || !ok || got != want {
		t.Fatalf("Load = %+v, %v, %v; want %+v", got, ok, err, want)
	}
}
