package porttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// clockSlack bounds how far a store's clock (a database's now(), which is
// its transaction's start) may differ from the test's.
const clockSlack = 5 * time.Second

// ListingCheckpointStore is a checkpoint store that lists what it holds.
type ListingCheckpointStore interface {
	ports.CheckpointStore
	ports.CheckpointLister
}

// RunCheckpointLister checks the ports.CheckpointLister contract. newStore
// must return an empty, isolated store on every call.
func RunCheckpointLister(t *testing.T, newStore func(t *testing.T) ListingCheckpointStore) {
	t.Helper()

	t.Run("EmptyStoreListsNothing", func(t *testing.T) {
		t.Parallel()
		recs, err := newStore(t).List(t.Context())
		if err != nil || len(recs) != 0 {
			t.Fatalf("List of an empty store = %+v, %v; want none", recs, err)
		}
	})

	t.Run("ListsInNameOrderWithSaveTimes", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		before := time.Now()
		want := map[string]ports.Position{"b": {TxID: 2, Seq: 20}, "a": {TxID: 1, Seq: 10}, "bridge:eu": {Seq: 3}}
		for _, name := range []string{"b", "bridge:eu", "a"} {
			if err := s.Save(ctx, name, want[name]); err != nil {
				t.Fatalf("Save(%q): %v", name, err)
			}
		}
		after := time.Now()
		recs, err := s.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(recs) != 3 || recs[0].Name != "a" || recs[1].Name != "b" || recs[2].Name != "bridge:eu" {
			t.Fatalf("List = %+v, want a, b, bridge:eu", recs)
		}
		for _, r := range recs {
			if r.Position != want[r.Name] {
				t.Errorf("%s at %s, want %s", r.Name, r.Position, want[r.Name])
			}
			if r.UpdatedAt.Before(before.Add(-clockSlack)) || r.UpdatedAt.After(after.Add(clockSlack)) {
				t.Errorf("%s saved at %v, want between %v and %v", r.Name, r.UpdatedAt, before, after)
			}
		}
	})

	t.Run("OverwriteMovesPositionAndTime", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		if err := s.Save(ctx, "r", ports.Position{TxID: 9, Seq: 9}); err != nil {
			t.Fatal(err)
		}
		first, err := s.List(ctx)
		if err != nil || len(first) != 1 {
			t.Fatalf("List = %+v, %v", first, err)
		}
		if err := s.Save(ctx, "r", ports.Position{TxID: 1, Seq: 1}); err != nil {
			t.Fatal(err)
		}
		second, err := s.List(ctx)
		if err != nil || len(second) != 1 || second[0].Position != (ports.Position{TxID: 1, Seq: 1}) {
			t.Fatalf("List after overwrite = %+v, %v; want r at 1/1", second, err)
		}
		if second[0].UpdatedAt.Before(first[0].UpdatedAt) {
			t.Errorf("save time went back from %v to %v", first[0].UpdatedAt, second[0].UpdatedAt)
		}
	})
}

// InspectableLease is a lease that tells who holds it.
type InspectableLease interface {
	ports.Lease
	ports.LeaseInspector
}

// RunLeaseInspector checks the ports.LeaseInspector contract. newLease
// must return an isolated lease table on every call. The expiry case
// waits about a second; the store must judge expiry by a real clock.
func RunLeaseInspector(t *testing.T, newLease func(t *testing.T) InspectableLease) {
	t.Helper()
	const ttl = time.Minute

	state := func(t *testing.T, l InspectableLease, name string) ports.LeaseState {
		t.Helper()
		st, err := l.State(t.Context(), name)
		if err != nil {
			t.Fatalf("State(%q): %v", name, err)
		}
		if st.Name != name {
			t.Fatalf("State(%q).Name = %q", name, st.Name)
		}
		if d := time.Since(st.Now); d < -clockSlack || d > clockSlack {
			t.Fatalf("State(%q).Now = %v, %v away from this clock", name, st.Now, d)
		}
		return st
	}
	acquire := func(t *testing.T, l InspectableLease, name, holder string, ttl time.Duration) {
		t.Helper()
		if held, err := l.Acquire(t.Context(), name, holder, ttl); err != nil || !held {
			t.Fatalf("Acquire(%q, %q) = %v, %v", name, holder, held, err)
		}
	}

	t.Run("UnknownNameIsFree", func(t *testing.T) {
		t.Parallel()
		st := state(t, newLease(t), "nobody")
		if st.Holder != "" || st.Active || !st.ExpiresAt.IsZero() {
			t.Fatalf("State of an unknown lease = %+v, want free", st)
		}
	})

	t.Run("HeldThenReleased", func(t *testing.T) {
		t.Parallel()
		l := newLease(t)
		acquire(t, l, "reader:default", "replica-1", ttl)
		st := state(t, l, "reader:default")
		if st.Holder != "replica-1" || !st.Active {
			t.Fatalf("State after Acquire = %+v, want held by replica-1", st)
		}
		if left := st.ExpiresAt.Sub(st.Now); left > ttl+time.Millisecond || left < ttl-clockSlack {
			t.Fatalf("lease expires %v after the store's now, want about %v", left, ttl)
		}
		if other := state(t, l, "reader:other"); other.Holder != "" {
			t.Fatalf("another name = %+v, want free", other)
		}
		if err := l.Release(t.Context(), "reader:default", "replica-1"); err != nil {
			t.Fatal(err)
		}
		if st := state(t, l, "reader:default"); st.Holder != "" || st.Active {
			t.Fatalf("State after Release = %+v, want free", st)
		}
	})

	t.Run("ExpiredLeaseNamesItsLastHolder", func(t *testing.T) {
		t.Parallel()
		l := newLease(t)
		acquire(t, l, "reader", "replica-1", 300*time.Millisecond)
		deadline := time.Now().Add(waitTimeout)
		for {
			st := state(t, l, "reader")
			if !st.Active {
				if st.Holder != "replica-1" || st.Now.Before(st.ExpiresAt) {
					t.Fatalf("expired lease = %+v, want replica-1 with ExpiresAt before Now", st)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lease still active after %v: %+v", waitTimeout, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
		acquire(t, l, "reader", "replica-2", ttl)
		if st := state(t, l, "reader"); st.Holder != "replica-2" || !st.Active {
			t.Fatalf("State after takeover = %+v, want held by replica-2", st)
		}
	})
}

// InspectorHarness is a change-log inspector with the source it inspects.
//
// Append commits one event (see SourceHarness; the inspector counts it
// once Source can read it, and takes its Timestamp as its creation
// time). OpenTransaction starts a writing transaction and returns the
// function that ends it; nil for a source without transactions, whose
// OldestTransactionAge must then be 0.
type InspectorHarness struct {
	Inspector       ports.ChangeLogInspector
	Source          ports.EventSource
	Append          func(ctx context.Context, ev domain.Event) error
	OpenTransaction func(ctx context.Context) (end func(), err error)
}

// RunChangeLogInspector checks the ports.ChangeLogInspector contract.
// newHarness must return an empty, isolated source on every call.
func RunChangeLogInspector(t *testing.T, newHarness func(t *testing.T) InspectorHarness) {
	t.Helper()

	count := func(t *testing.T, what string, f func(context.Context) (int64, error), want int64) {
		t.Helper()
		got, err := f(t.Context())
		if err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", what, got, err, want)
		}
	}

	t.Run("EmptySource", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		in := h.Inspector
		count(t, "Backlog(start)", func(ctx context.Context) (int64, error) { return in.Backlog(ctx, ports.Position{}) }, 0)
		count(t, "CountBetween(start, far)", func(ctx context.Context) (int64, error) {
			return in.CountBetween(ctx, ports.Position{}, ports.Position{TxID: 1 << 60, Seq: 1 << 60})
		}, 0)
		if pos, ok, err := in.FirstSince(t.Context(), time.Time{}); err != nil || ok {
			t.Errorf("FirstSince on an empty source = %s, %v, %v; want none", pos, ok, err)
		}
		age, err := in.OldestTransactionAge(t.Context())
		if err != nil || age < 0 || h.OpenTransaction == nil && age != 0 {
			t.Errorf("OldestTransactionAge = %v, %v; want 0 without transactions, never negative", age, err)
		}
	})

	t.Run("CountsAndFirstSince", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		in := h.Inspector
		base := time.Now().UTC().Truncate(time.Microsecond).Add(-3 * time.Hour)
		for i := range 3 {
			ev := sampleEvent(i, domain.EventInsert)
			ev.Timestamp = base.Add(time.Duration(i) * time.Hour)
			mustAppend(t, SourceHarness{Append: h.Append}, ev)
		}
		recs, _ := readUntil(t, h.Source, ports.Position{}, 10, 3)
		p1, p2, p3 := recs[0].Position, recs[1].Position, recs[2].Position
		for _, c := range []struct {
			after ports.Position
			want  int64
		}{{ports.Position{}, 3}, {p1, 2}, {p2, 1}, {p3, 0}} {
			count(t, fmt.Sprintf("Backlog(%s)", c.after), func(ctx context.Context) (int64, error) { return in.Backlog(ctx, c.after) }, c.want)
		}
		for _, c := range []struct {
			after, upTo ports.Position
			want        int64
		}{{ports.Position{}, p3, 3}, {p1, p3, 2}, {p1, p2, 1}, {p2, p2, 0}, {p3, p1, 0}} {
			count(t, fmt.Sprintf("CountBetween(%s, %s)", c.after, c.upTo), func(ctx context.Context) (int64, error) {
				return in.CountBetween(ctx, c.after, c.upTo)
			}, c.want)
		}
		for _, c := range []struct {
			since time.Time
			want  ports.Position
			ok    bool
		}{
			{base.Add(-time.Minute), p1, true},
			{base, p1, true},
			{base.Add(30 * time.Minute), p2, true},
			{base.Add(2 * time.Hour), p3, true}, // at or after: inclusive
			{base.Add(3 * time.Hour), ports.Position{}, false},
		} {
			pos, ok, err := in.FirstSince(t.Context(), c.since)
			if err != nil || ok != c.ok || ok && pos != c.want {
				t.Errorf("FirstSince(base%+v) = %s, %v, %v; want %s, %v", c.since.Sub(base), pos, ok, err, c.want, c.ok)
			}
		}
	})

	t.Run("OldestTransactionAge", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		if h.OpenTransaction == nil {
			if age, err := h.Inspector.OldestTransactionAge(t.Context()); err != nil || age != 0 {
				t.Fatalf("OldestTransactionAge of a source without transactions = %v, %v; want 0", age, err)
			}
			return
		}
		end, err := h.OpenTransaction(t.Context())
		if err != nil {
			t.Fatalf("OpenTransaction: %v", err)
		}
		defer end()
		deadline := time.Now().Add(waitTimeout)
		for {
			age, err := h.Inspector.OldestTransactionAge(t.Context())
			if err != nil {
				t.Fatalf("OldestTransactionAge: %v", err)
			}
			if age > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("OldestTransactionAge with an open transaction stayed %v", age)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	runEventLookup(t, newHarness)
}
