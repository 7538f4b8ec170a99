package admin_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// The use cases run on the memory adapters: the memory topology's state.

type bundle struct {
	src   *memory.Source
	cps   *memory.Checkpoints
	lease *memory.Lease
	dl    *memory.DeadLetters
	store *admin.Store
	state *admin.State
}

func setup(t *testing.T) *bundle {
	t.Helper()
	src, err := memory.NewSource(nil, memory.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	lease := memory.NewLease(nil)
	b := &bundle{src: src, cps: memory.NewCheckpointsWithLease(lease), lease: lease, dl: memory.NewDeadLetters(nil)}
	b.store = &admin.Store{Name: "memory", Checkpoints: b.cps, Leases: b.lease, DeadLetters: b.dl, ChangeLog: src,
		Readers: []admin.Reader{admin.ReaderOf("default")}}
	b.state = &admin.State{Topology: "memory", Stores: admin.Stores{Primary: b.store}, Holder: "me",
		LeaseTTL: time.Minute, Logger: slog.New(slog.DiscardHandler)}
	return b
}

// appendAt appends an event created age ago and returns its position.
func (b *bundle) appendAt(t *testing.T, entityID string, age time.Duration) ports.Position {
	t.Helper()
	pos, err := b.src.Append(t.Context(), domain.Event{EventType: domain.EventInsert, EntityType: "Order", EntityID: entityID,
		Timestamp: time.Now().Add(-age)})
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func (b *bundle) hold(t *testing.T, lease, holder string) {
	t.Helper()
	if held, err := b.lease.Acquire(t.Context(), lease, holder, time.Minute); err != nil || !held {
		t.Fatalf("acquire %s for %s: %v %v", lease, holder, held, err)
	}
}

func (b *bundle) addDeadLetter(t *testing.T, d ports.DeadLetter) int64 {
	t.Helper()
	id, err := b.dl.Add(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	p1 := b.appendAt(t, "o1", time.Minute)
	b.appendAt(t, "o2", 0)
	b.appendAt(t, "o3", 0)
	if err := b.cps.Save(ctx, "default", p1); err != nil {
		t.Fatal(err)
	}
	if err := b.cps.Save(ctx, "old-reader", ports.Position{}); err != nil {
		t.Fatal(err)
	}
	b.hold(t, "reader:default", "replica-7")
	b.addDeadLetter(t, ports.DeadLetter{Observer: "hooks", Action: "a"})
	b.addDeadLetter(t, ports.DeadLetter{Observer: "hooks", Action: "b"})
	b.addDeadLetter(t, ports.DeadLetter{Raw: []byte("x")})

	rep, err := b.state.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Topology != "memory" || len(rep.Databases) != 1 {
		t.Fatalf("report = %+v", rep)
	}
	d := rep.Databases[0]
	if d.Name != "memory" || d.Now.IsZero() || d.OldestTxnSeconds != 0 {
		t.Errorf("store = %+v", d)
	}
	if d.DeadLetterTotal != 3 || d.DeadLetters["hooks"] != 2 || d.DeadLetters[""] != 1 {
		t.Errorf("dead letters = %d %v", d.DeadLetterTotal, d.DeadLetters)
	}
	if len(d.Checkpoints) != 2 {
		t.Fatalf("checkpoints = %+v", d.Checkpoints)
	}
	def, old := d.Checkpoints[0], d.Checkpoints[1]
	if def.Name != "default" || !def.Configured || !def.Stored || def.Position != p1 || def.Backlog != 2 || def.UpdatedAt == nil {
		t.Errorf("default checkpoint = %+v, want stored at %s with backlog 2", def, p1)
	}
	if !def.Lease.Active || def.Lease.Holder != "replica-7" || def.Lease.Name != "reader:default" || def.Lease.ExpiresAt == nil {
		t.Errorf("default lease = %+v, want held by replica-7", def.Lease)
	}
	if old.Name != "old-reader" || old.Configured || old.Backlog != 3 || old.Lease.Holder != "" {
		t.Errorf("other checkpoint = %+v, want unconfigured, backlog 3, free", old)
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	since := time.Now().Add(-2 * time.Hour)

	res, err := b.state.Replay(ctx, "", since)
	if err != nil || res.Moved || !strings.Contains(res.Reason, "no checkpoint yet") {
		t.Errorf("replay without a checkpoint = %+v, %v; want unchanged with a reason", res, err)
	}

	b.appendAt(t, "o1", 3*time.Hour)
	p2 := b.appendAt(t, "o2", time.Hour)
	p3 := b.appendAt(t, "o3", 30*time.Minute)
	if err := b.cps.Save(ctx, "default", p3); err != nil {
		t.Fatal(err)
	}

	// Refused while another process holds the reader's lease.
	b.hold(t, "reader:default", "replica-7")
	if _, err := b.state.Replay(ctx, "", since); !errors.Is(err, admin.ErrReaderRunning) || !strings.Contains(err.Error(), "replica-7") {
		t.Fatalf("replay under a held lease: %v, want ErrReaderRunning naming the holder", err)
	}
	if pos, _, _ := b.cps.Load(ctx, "default"); pos != p3 {
		t.Fatalf("checkpoint moved to %s while refused", pos)
	}
	if err := b.lease.Release(ctx, "reader:default", "replica-7"); err != nil {
		t.Fatal(err)
	}

	var re *admin.RequestError
	if _, err := b.state.Replay(ctx, "nope", since); !errors.As(err, &re) || !strings.Contains(err.Error(), `"nope" is not a reader`) {
		t.Errorf("replay of an unknown reader: %v, want a RequestError", err)
	}
	b.state.DedupNote = "dedup is on"
	res, err = b.state.Replay(ctx, "default", since)
	if err != nil {
		t.Fatal(err)
	}
	want := ports.Position{TxID: p2.TxID, Seq: p2.Seq - 1}
	if !res.Moved || res.Old != p3 || !res.OldStored || res.New != want || res.Reread != 2 || res.Backlog != 2 ||
		res.Reader != "default" || res.Database != "memory" || res.Dedup != "dedup is on" {
		t.Fatalf("replay = %+v, want moved from %s to %s, 2 rows", res, p3, want)
	}
	if pos, _, _ := b.cps.Load(ctx, "default"); pos != want {
		t.Fatalf("stored checkpoint %s, want %s", pos, want)
	}
	// The lease was released, and the checkpoint only moves backwards.
	if st, _ := b.lease.State(ctx, "reader:default"); st.Holder != "" {
		t.Errorf("lease after replay = %+v, want released", st)
	}
	res, err = b.state.Replay(ctx, "", time.Now().Add(-45*time.Minute))
	if err != nil || res.Moved || !strings.Contains(res.Reason, "not been processed yet") || res.Backlog != 2 {
		t.Errorf("replay forward = %+v, %v; want unchanged with a reason", res, err)
	}
	res, err = b.state.Replay(ctx, "", time.Now().Add(time.Hour))
	if err != nil || res.Moved || !strings.Contains(res.Reason, "no change-log row") {
		t.Errorf("replay of the future = %+v, %v; want unchanged with a reason", res, err)
	}
}

// A reader this process runs holds its lease; Pause ends its term so the
// replay can move the checkpoint, and the reader resumes afterwards.
func TestReplayPausesTheInProcessReader(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	b.appendAt(t, "o1", time.Hour)
	p2 := b.appendAt(t, "o2", 0)
	if err := b.cps.Save(ctx, "default", p2); err != nil {
		t.Fatal(err)
	}
	b.hold(t, "reader:default", "me")
	since := time.Now().Add(-2 * time.Hour)
	if _, err := b.state.Replay(ctx, "", since); !errors.Is(err, admin.ErrReaderRunning) {
		t.Fatalf("replay without Pause: %v, want ErrReaderRunning", err)
	}
	var paused, resumed []string
	b.state.Pause = func(ctx context.Context, checkpoint string) (func(), error) {
		paused = append(paused, checkpoint)
		if err := b.lease.Release(ctx, "reader:default", "me"); err != nil {
			return nil, err
		}
		return func() { resumed = append(resumed, checkpoint) }, nil
	}
	res, err := b.state.Replay(ctx, "", since)
	if err != nil || !res.Moved || res.New != (ports.Position{}) {
		t.Fatalf("replay with Pause = %+v, %v; want moved to the start", res, err)
	}
	if len(paused) != 1 || paused[0] != "default" || len(resumed) != 1 {
		t.Errorf("paused %v, resumed %v; want default once each", paused, resumed)
	}
}

func TestSetCheckpoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	if err := b.cps.Save(ctx, "other", ports.Position{TxID: 5, Seq: 9}); err != nil {
		t.Fatal(err)
	}
	source := &admin.Store{Name: "databases.eu", Where: "source database eu", Checkpoints: memory.NewCheckpoints(),
		Leases: memory.NewLease(nil), DeadLetters: memory.NewDeadLetters(nil), ChangeLog: b.src,
		Readers: []admin.Reader{admin.ReaderOf("bridge:eu")}}
	b.state.Stores.Sources = func(context.Context) ([]*admin.Store, error) { return []*admin.Store{source}, nil }
	b.hold(t, "reader:default", "me")

	cases := []struct {
		name string
		want error
	}{
		{"default", admin.ErrReaderRunning},
		{"unknown", ports.ErrNotFound},
		{"bridge:eu", admin.ErrCheckpointElsewhere},
	}
	for _, c := range cases {
		if _, err := b.state.SetCheckpoint(ctx, c.name, ports.Position{TxID: 1}); !errors.Is(err, c.want) {
			t.Errorf("SetCheckpoint(%s) = %v, want %v", c.name, err, c.want)
		}
	}
	res, err := b.state.SetCheckpoint(ctx, "other", ports.Position{TxID: 3, Seq: 4})
	if err != nil || !res.Moved || !res.OldStored || res.Old != (ports.Position{TxID: 5, Seq: 9}) {
		t.Fatalf("SetCheckpoint(other) = %+v, %v", res, err)
	}
	if pos, _, _ := b.cps.Load(ctx, "other"); pos != (ports.Position{TxID: 3, Seq: 4}) {
		t.Errorf("other at %s, want 3/4", pos)
	}
	if pos, ok, _ := b.cps.Load(ctx, "default"); ok {
		t.Errorf("default moved to %s while its lease was held", pos)
	}

	views, err := b.state.Checkpoints(ctx, map[string]application.ReaderStatus{
		"default":   {Running: true, ReadAt: ports.Position{Seq: 7}, Saved: ports.Position{Seq: 6}},
		"bridge:eu": {},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 3 || views[0].Name != "bridge:eu" || views[0].Store != "source database eu" ||
		views[1].Name != "default" || !views[1].Reading || views[1].Stored || views[1].ReadAt.Seq != 7 ||
		views[2].Name != "other" || !views[2].Stored || views[2].UpdatedAt == nil || views[2].Reading {
		t.Errorf("checkpoints = %+v", views)
	}
}

// TestMoveCheckpointRenewsTheLeaseWhileTargetRuns: a Target slower than
// the lease's TTL (a scan of a large change log) still moves the
// checkpoint; a lease taken by another process meanwhile ends Target and
// moves nothing.
func TestMoveCheckpointRenewsTheLeaseWhileTargetRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.state.LeaseTTL = 1500 * time.Millisecond
	counting := &countingLease{LeaseStore: b.store.Leases}
	b.store.Leases = counting
	ctx := t.Context()
	p1 := b.appendAt(t, "o1", time.Hour)
	if err := b.cps.Save(ctx, "default", p1); err != nil {
		t.Fatal(err)
	}
	reader := b.store.Readers[0]
	res, err := b.state.MoveCheckpoint(ctx, admin.MoveRequest{Store: b.store, Reader: reader, Holder: "slow",
		Target: func(tctx context.Context, _ ports.Position, _ bool) (ports.Position, bool, error) {
			// Until the lease was renewed 4 times (over a TTL): renewals,
			// not a sleep, pace the test.
			for counting.n.Load() < 5 {
				select {
				case <-tctx.Done():
					return ports.Position{}, false, tctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
			return ports.Position{}, true, nil
		}})
	if err != nil || !res.Moved {
		t.Fatalf("a Target that outlasted the lease's TTL: %+v, %v; want moved", res, err)
	}

	res, err = b.state.MoveCheckpoint(ctx, admin.MoveRequest{Store: b.store, Reader: reader, Holder: "robbed",
		Target: func(tctx context.Context, _ ports.Position, _ bool) (ports.Position, bool, error) {
			// The lease is lost (the store forgot it) and another process takes it.
			if err := b.lease.Release(ctx, reader.Lease, "robbed"); err != nil {
				return ports.Position{}, false, err
			}
			b.hold(t, reader.Lease, "replica-9")
			select {
			case <-tctx.Done():
				return ports.Position{}, false, tctx.Err()
			case <-time.After(10 * time.Second):
				return p1, true, nil
			}
		}})
	if !errors.Is(err, admin.ErrReaderRunning) || res.Moved {
		t.Fatalf("lease taken during Target: %+v, %v; want ErrReaderRunning and nothing moved", res, err)
	}
	if pos, _, _ := b.cps.Load(ctx, "default"); pos != (ports.Position{}) {
		t.Errorf("checkpoint %s, want the first move's", pos)
	}
}

// countingLease counts Acquire calls.
type countingLease struct {
	admin.LeaseStore
	n atomic.Int32
}

func (c *countingLease) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	c.n.Add(1)
	return c.LeaseStore.Acquire(ctx, name, holder, ttl)
}
