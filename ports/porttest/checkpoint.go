package porttest

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// RunFencedCheckpointStore checks CheckpointStore.SaveFenced. newStores
// must return an isolated checkpoint store and the Lease it is fenced by
// (the same schema, the same memory lease table) on every call; the lease
// must judge expiry by a real clock (one case waits about a second).
func RunFencedCheckpointStore(t *testing.T, newStores func(t *testing.T) (ports.CheckpointStore, ports.Lease)) {
	t.Helper()
	const ttl = time.Minute
	fenceA := ports.Fence{Lease: "reader:default", Holder: "a"}
	fenceB := ports.Fence{Lease: "reader:default", Holder: "b"}
	acquire := func(t *testing.T, l ports.Lease, holder string, ttl time.Duration) {
		t.Helper()
		held, err := l.Acquire(t.Context(), "reader:default", holder, ttl)
		if err != nil || !held {
			t.Fatalf("Acquire(%s) = %v, %v", holder, held, err)
		}
	}
	saveOK := func(t *testing.T, s ports.CheckpointStore, f ports.Fence, pos ports.Position) {
		t.Helper()
		if err := s.SaveFenced(t.Context(), "default", pos, f); err != nil {
			t.Fatalf("SaveFenced by the holder %s: %v", f.Holder, err)
		}
	}
	refused := func(t *testing.T, s ports.CheckpointStore, f ports.Fence, pos, want ports.Position) {
		t.Helper()
		err := s.SaveFenced(t.Context(), "default", pos, f)
		if !errors.Is(err, ports.ErrLeaseLost) {
			t.Fatalf("SaveFenced by %s, who does not hold the lease = %v, want ErrLeaseLost", f.Holder, err)
		}
		got, _, err := s.Load(t.Context(), "default")
		if err != nil || got != want {
			t.Fatalf("after a refused save the checkpoint is %+v (%v), want %+v untouched", got, err, want)
		}
	}

	t.Run("HolderSaves", func(t *testing.T) {
		t.Parallel()
		s, l := newStores(t)
		acquire(t, l, "a", ttl)
		for _, pos := range []ports.Position{{TxID: 1, Seq: 1}, {TxID: 2, Seq: 7}} {
			saveOK(t, s, fenceA, pos)
			got, ok, err := s.Load(t.Context(), "default")
			if err != nil || !ok || got != pos {
				t.Fatalf("Load = %+v, %v, %v; want %+v", got, ok, err, pos)
			}
		}
	})

	t.Run("NeverAcquiredIsRefused", func(t *testing.T) {
		t.Parallel()
		s, _ := newStores(t)
		refused(t, s, fenceA, ports.Position{TxID: 1, Seq: 1}, ports.Position{})
	})

	t.Run("OtherLeaseNameIsRefused", func(t *testing.T) {
		t.Parallel()
		s, l := newStores(t)
		if held, err := l.Acquire(t.Context(), "bridge:default", "a", ttl); err != nil || !held {
			t.Fatalf("Acquire = %v, %v", held, err)
		}
		refused(t, s, fenceA, ports.Position{TxID: 1, Seq: 1}, ports.Position{})
	})

	t.Run("StaleHolderCannotOverwriteTheNewHolder", func(t *testing.T) {
		t.Parallel()
		s, l := newStores(t)
		acquire(t, l, "a", 300*time.Millisecond)
		saveOK(t, s, fenceA, ports.Position{TxID: 5, Seq: 5})
		time.Sleep(time.Second) // correctness wait: well past the 300ms ttl
		acquire(t, l, "b", ttl)
		saveOK(t, s, fenceB, ports.Position{TxID: 3, Seq: 3}) // an operator's move back, or b's own progress
		refused(t, s, fenceA, ports.Position{TxID: 9, Seq: 9}, ports.Position{TxID: 3, Seq: 3})
	})

	t.Run("ExpiredLeaseIsRefused", func(t *testing.T) {
		t.Parallel()
		s, l := newStores(t)
		acquire(t, l, "a", 300*time.Millisecond)
		time.Sleep(time.Second) // correctness wait: well past the 300ms ttl
		refused(t, s, fenceA, ports.Position{TxID: 1, Seq: 1}, ports.Position{})
	})

	t.Run("ReleasedLeaseIsRefused", func(t *testing.T) {
		t.Parallel()
		s, l := newStores(t)
		acquire(t, l, "a", ttl)
		saveOK(t, s, fenceA, ports.Position{TxID: 1, Seq: 1})
		if err := l.Release(t.Context(), "reader:default", "a"); err != nil {
			t.Fatal(err)
		}
		refused(t, s, fenceA, ports.Position{TxID: 2, Seq: 2}, ports.Position{TxID: 1, Seq: 1})
	})

	t.Run("NoSaveLandsAfterAnotherHolderAcquired", func(t *testing.T) {
		t.Parallel()
		s, l := newStores(t)
		acquire(t, l, "a", 300*time.Millisecond)
		// a keeps saving increasing positions while its lease runs out and
		// b takes it; once b's Acquire returned, none of a's saves may land.
		var (
			wg       sync.WaitGroup
			stop     = make(chan struct{})
			acquired atomic.Bool
			late     atomic.Int64
		)
		wg.Go(func() {
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				after := acquired.Load()
				if err := s.SaveFenced(t.Context(), "default", ports.Position{TxID: 1, Seq: i}, fenceA); err == nil && after {
					late.Store(i)
				}
				time.Sleep(time.Millisecond)
			}
		})
		deadline := time.Now().Add(waitTimeout)
		for {
			held, err := l.Acquire(t.Context(), "reader:default", "b", ttl)
			if err != nil {
				t.Fatalf("Acquire(b): %v", err)
			}
			if held {
				acquired.Store(true)
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("b never took the expired lease")
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // let a try a few more saves
		close(stop)
		wg.Wait()
		if n := late.Load(); n != 0 {
			t.Fatalf("a's save of seq %d landed after b acquired the lease", n)
		}
	})
}
