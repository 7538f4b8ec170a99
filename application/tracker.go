package application

import (
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// tracker follows read positions in order and yields the highest position
// up to which every entry is finished: the safe checkpoint.
type tracker struct {
	mu        sync.Mutex
	now       func() time.Time
	base      uint64 // sequence number of entries[0]
	entries   []trackedEntry
	committed ports.Position
	pending   int
	bytes     int64 // Size of the unfinished entries
	// progressAt is when the safe position last moved, or when work became
	// pending after none was: how long the checkpoint has been held back.
	progressAt time.Time
	freed      chan struct{}
}

type trackedEntry struct {
	pos      ports.Position
	size     int64
	finished bool
}

func newTracker(start ports.Position, now func() time.Time) *tracker {
	return &tracker{committed: start, now: now, progressAt: now(), freed: make(chan struct{}, 1)}
}

// add appends a position in read order, weighing size bytes, and returns
// its sequence number. A finished entry (a skipped stretch of the source)
// never counts as pending.
func (t *tracker) add(pos ports.Position, finished bool, size int64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	seq := t.base + uint64(len(t.entries))
	t.entries = append(t.entries, trackedEntry{pos: pos, size: size, finished: finished})
	if !finished {
		if t.pending == 0 {
			t.progressAt = t.now()
		}
		t.pending++
		t.bytes += size
	}
	t.advanceLocked()
	return seq
}

// finish marks the entry with sequence number seq finished.
func (t *tracker) finish(seq uint64) {
	t.mu.Lock()
	i := seq - t.base
	if seq < t.base || i >= uint64(len(t.entries)) || t.entries[i].finished {
		t.mu.Unlock()
		return
	}
	t.entries[i].finished = true
	t.pending--
	t.bytes -= t.entries[i].size
	t.advanceLocked()
	t.mu.Unlock()
	select {
	case t.freed <- struct{}{}:
	default:
	}
}

func (t *tracker) advanceLocked() {
	n := 0
	for n < len(t.entries) && t.entries[n].finished {
		t.committed = t.entries[n].pos
		n++
	}
	if n == 0 {
		return
	}
	t.progressAt = t.now()
	clear(t.entries[:n])
	t.entries = t.entries[n:]
	t.base += uint64(n)
	if len(t.entries) == 0 {
		t.entries = nil // let the old backing array go
	}
}

// state returns the safe checkpoint and the number of unfinished entries.
func (t *tracker) state() (ports.Position, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.committed, t.pending
}

// progress returns the number of unfinished entries and since when the
// safe position has not moved while work was pending.
func (t *tracker) progress() (pending int, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending, t.progressAt
}

// load returns the number and the weight in bytes of the unfinished
// entries.
func (t *tracker) load() (pending int, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending, t.bytes
}
