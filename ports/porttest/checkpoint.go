package porttest

import (
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// RunCheckpointStore checks the ports.CheckpointStore contract. newStore
// must return an empty, isolated store on every call.
func RunCheckpointStore(t *testing.T, newStore func(t *testing.T) ports.CheckpointStore) {
	t.Helper()

	t.Run("MissingNameIsNotOK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		pos, ok, err := s.Load(t.Context(), "reader")
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if ok || !pos.IsZero() {
			t.Fatalf("Load of a missing name = %+v, %v; want zero, false", pos, ok)
		}
	})

	t.Run("SaveThenLoadAndOverwrite", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		steps := []ports.Position{
			{TxID: 0, Seq: 7},
			{TxID: 1 << 40, Seq: 1 << 50},
			{TxID: math.MaxInt64, Seq: math.MaxInt64},
			{TxID: 3, Seq: 1}, // overwriting with an earlier position is allowed
			{},
		}
		for _, want := range steps {
			if err := s.Save(ctx, "reader", want); err != nil {
				t.Fatalf("Save(%+v): %v", want, err)
			}
			got, ok, err := s.Load(ctx, "reader")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !ok || got != want {
				t.Fatalf("Load after Save(%+v) = %+v, %v", want, got, ok)
			}
		}
	})

	t.Run("NamesAreIndependent", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		want := map[string]ports.Position{
			"a":              {TxID: 1, Seq: 10},
			"b":              {TxID: 2, Seq: 20},
			"bridge:db-1":    {TxID: 3, Seq: 30},
			"Ünïcode name ✓": {TxID: 4, Seq: 40},
		}
		for name, pos := range want {
			if err := s.Save(ctx, name, pos); err != nil {
				t.Fatalf("Save(%q): %v", name, err)
			}
		}
		if err := s.Save(ctx, "a", ports.Position{TxID: 5, Seq: 50}); err != nil {
			t.Fatalf("Save: %v", err)
		}
		want["a"] = ports.Position{TxID: 5, Seq: 50}
		for name, pos := range want {
			got, ok, err := s.Load(ctx, name)
			if err != nil || !ok || got != pos {
				t.Fatalf("Load(%q) = %+v, %v, %v; want %+v", name, got, ok, err, pos)
			}
		}
		if _, ok, err := s.Load(ctx, "c"); err != nil || ok {
			t.Fatalf("Load(unknown) = ok %v, err %v; want false, nil", ok, err)
		}
	})

	t.Run("ConcurrentSaves", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		const writers = 16
		var wg sync.WaitGroup
		errs := make(chan error, 2*writers)
		for i := range writers {
			wg.Go(func() {
				// One shared name, every writer storing a self-consistent pair.
				if err := s.Save(ctx, "shared", ports.Position{TxID: uint64(i + 1), Seq: int64(i+1) * 1000}); err != nil {
					errs <- fmt.Errorf("Save(shared): %w", err)
				}
				// And one name per writer.
				if err := s.Save(ctx, fmt.Sprintf("own-%d", i), ports.Position{TxID: uint64(i), Seq: int64(i)}); err != nil {
					errs <- fmt.Errorf("Save(own): %w", err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, ok, err := s.Load(ctx, "shared")
		if err != nil || !ok {
			t.Fatalf("Load(shared) = %v, %v", ok, err)
		}
		if got.TxID < 1 || got.TxID > writers || got.Seq != int64(got.TxID)*1000 {
			t.Fatalf("Load(shared) = %+v, not one of the saved positions", got)
		}
		for i := range writers {
			want := ports.Position{TxID: uint64(i), Seq: int64(i)}
			got, ok, err := s.Load(ctx, fmt.Sprintf("own-%d", i))
			if err != nil || !ok || got != want {
				t.Fatalf("Load(own-%d) = %+v, %v, %v; want %+v", i, got, ok, err, want)
			}
		}
	})
}
