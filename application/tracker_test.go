package application

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestTracker(t *testing.T) {
	t.Parallel()
	type op struct {
		kind string // "add", "skip" (a finished sentinel) or "finish"
		seq  int64  // add/skip: the position's Seq; finish: index of the add
	}
	add := func(seq int64) op { return op{"add", seq} }
	skip := func(seq int64) op { return op{"skip", seq} }
	finish := func(i int64) op { return op{"finish", i} }
	tests := []struct {
		name        string
		start       int64
		ops         []op
		wantPos     int64
		wantPending int
	}{
		{name: "empty", start: 7, wantPos: 7},
		{name: "in order", ops: []op{add(1), add(2), finish(0), finish(1)}, wantPos: 2},
		{name: "unfinished entries hold the start", start: 10, ops: []op{add(11), add(12)}, wantPos: 10, wantPending: 2},
		{name: "later finish waits for an earlier entry", ops: []op{add(1), add(2), add(3), finish(2), finish(1)}, wantPos: 0, wantPending: 1},
		{name: "out of order finish, then the gap closes", ops: []op{add(1), add(2), add(3), finish(2), finish(1), finish(0)}, wantPos: 3},
		{name: "advance stops at the first unfinished", ops: []op{add(1), add(2), add(3), add(4), finish(0), finish(1), finish(3)}, wantPos: 2, wantPending: 1},
		{name: "skipped sentinel alone advances", start: 2, ops: []op{skip(6)}, wantPos: 6},
		{name: "skipped sentinel after a finished record", ops: []op{add(1), skip(5), finish(0)}, wantPos: 5},
		{name: "skipped sentinel waits for an earlier record", ops: []op{add(1), skip(5)}, wantPos: 0, wantPending: 1},
		{name: "record after a sentinel", ops: []op{add(1), skip(4), add(5), finish(0)}, wantPos: 4, wantPending: 1},
		{name: "double finish counts once", ops: []op{add(1), add(2), finish(0), finish(0)}, wantPos: 1, wantPending: 1},
		{name: "finish of an entry already passed", ops: []op{add(1), finish(0), add(2), finish(0)}, wantPos: 1, wantPending: 1},
		{name: "finish of an unknown sequence number", ops: []op{add(1), finish(9)}, wantPos: 0, wantPending: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := newTracker(ports.Position{Seq: tt.start}, time.Now)
			var seqs []uint64
			for _, o := range tt.ops {
				switch o.kind {
				case "add":
					seqs = append(seqs, tr.add(ports.Position{Seq: o.seq}, false, 0))
				case "skip":
					seqs = append(seqs, tr.add(ports.Position{Seq: o.seq}, true, 0))
				case "finish":
					s := uint64(1000 + o.seq) // unknown unless it names an add
					if int(o.seq) < len(seqs) {
						s = seqs[o.seq]
					}
					tr.finish(s)
				}
			}
			pos, pending := tr.state()
			if pos != (ports.Position{Seq: tt.wantPos}) || pending != tt.wantPending {
				t.Errorf("state() = %v, %d; want %d, %d", pos, pending, tt.wantPos, tt.wantPending)
			}
			if pending == 0 && tr.entries != nil {
				t.Errorf("%d entries kept after every entry finished", len(tr.entries))
			}
		})
	}
}

func TestTrackerSignalsFreedRoom(t *testing.T) {
	t.Parallel()
	tr := newTracker(ports.Position{}, time.Now)
	a := tr.add(ports.Position{Seq: 1}, false, 0)
	b := tr.add(ports.Position{Seq: 2}, false, 0)
	select {
	case <-tr.freed:
		t.Fatalf("freed signalled before any finish")
	default:
	}
	tr.finish(b) // out of order: room is freed although the position stays
	select {
	case <-tr.freed:
	default:
		t.Fatalf("finish did not signal freed room")
	}
	tr.finish(a)
	tr.finish(a) // no second signal for a double finish
	<-tr.freed
	select {
	case <-tr.freed:
		t.Fatalf("a double finish signalled again")
	default:
	}
	if pos, pending := tr.state(); pos != (ports.Position{Seq: 2}) || pending != 0 {
		t.Errorf("state() = %v, %d; want 2, 0", pos, pending)
	}
}

// Entries that finish behind one that does not cost nothing: the tracker
// holds the unfinished one alone, and the safe position jumps to the last
// entry once it finishes.
func TestTrackerHoldsOnlyUnfinishedEntries(t *testing.T) {
	t.Parallel()
	tr := newTracker(ports.Position{Seq: 0}, time.Now)
	stuck := tr.add(ports.Position{Seq: 1}, false, 10)
	for i := int64(2); i <= 100_000; i++ {
		if i%3 == 0 {
			tr.add(ports.Position{Seq: i}, true, 0) // a skipped stretch
			continue
		}
		tr.finish(tr.add(ports.Position{Seq: i}, false, 100))
	}
	if len(tr.entries) > 2*minCompact {
		t.Fatalf("%d entries kept behind one unfinished entry; want at most %d", len(tr.entries), 2*minCompact)
	}
	if pos, pending := tr.state(); pos.Seq != 0 || pending != 1 {
		t.Errorf("state() = %v, %d; want the start, 1 pending", pos, pending)
	}
	if pending, bytes := tr.load(); pending != 1 || bytes != 10 {
		t.Errorf("load() = %d, %d; want 1, 10", pending, bytes)
	}
	tr.finish(stuck)
	if pos, pending := tr.state(); pos.Seq != 100_000 || pending != 0 {
		t.Errorf("state() = %v, %d after the stuck entry finished; want 100000, 0", pos, pending)
	}
}

// BenchmarkTracker adds and finishes entries with 500 in flight, finished
// in a shuffled order within each window (as concurrent actions end).
func BenchmarkTracker(b *testing.B) {
	tr := newTracker(ports.Position{}, time.Now)
	const window = 500
	seqs := make([]uint64, 0, window)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		seqs = append(seqs, tr.add(ports.Position{Seq: int64(i)}, false, 100))
		if len(seqs) == window {
			for j := range window {
				tr.finish(seqs[(j*7)%window])
			}
			seqs = seqs[:0]
		}
	}
}
