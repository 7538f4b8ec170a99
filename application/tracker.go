package application

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// tracker follows read positions in order and yields the highest position
// up to which every entry is finished: the safe checkpoint. Entries that
// finish behind one that does not (an action retried in memory for hours
// while the stream goes on) are compacted: of each run of finished
// entries only the last is kept (its position is where the safe
// checkpoint moves once the run leads), when the entries have doubled
// since the last compaction: the tracker holds about four times as many
// entries as are unfinished at most (those are bounded by the reader's
// in-flight limits), not one per entry read since.
type tracker struct {
	mu        sync.Mutex
	now       func() time.Time
	next      uint64 // the sequence number of the next entry
	entries   []trackedEntry
	compactAt int // compact when entries grow to this many (see add)
	committed ports.Position
	pending   int
	bytes     int64 // Size of the unfinished entries
	// progressAt is when the safe position last moved, or when work became
	// pending after none was: how long the checkpoint has been held back.
	progressAt time.Time
	freed      chan struct{}
}

type trackedEntry struct {
	seq      uint64
	pos      ports.Position
	size     int64
	finished bool
}

// minCompact is the fewest entries compacted at once.
const minCompact = 1024

func newTracker(start ports.Position, now func() time.Time) *tracker {
	return &tracker{committed: start, now: now, progressAt: now(), compactAt: minCompact, freed: make(chan struct{}, 1)}
}

// add appends a position in read order, weighing size bytes, and returns
// its sequence number. A finished entry (a skipped stretch of the source)
// never counts as pending.
func (t *tracker) add(pos ports.Position, finished bool, size int64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	seq := t.next
	t.next++
	t.entries = append(t.entries, trackedEntry{seq: seq, pos: pos, size: size, finished: finished})
	if !finished {
		if t.pending == 0 {
			t.progressAt = t.now()
		}
		t.pending++
		t.bytes += size
	}
	t.advanceLocked()
	if len(t.entries) >= t.compactAt {
		t.compactLocked()
	}
	return seq
}

// finish marks the entry with sequence number seq finished.
func (t *tracker) finish(seq uint64) {
	t.mu.Lock()
	i, ok := t.findLocked(seq)
	if !ok || t.entries[i].finished {
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

// findLocked returns the index of the entry seq: at seq's offset from the
// first entry until a compaction removed some, else by binary search (the
// entries stay in sequence order).
func (t *tracker) findLocked(seq uint64) (int, bool) {
	if len(t.entries) == 0 || seq < t.entries[0].seq {
		return 0, false
	}
	if d := seq - t.entries[0].seq; d < uint64(len(t.entries)) && t.entries[d].seq == seq {
		return int(d), true
	}
	i, ok := slices.BinarySearchFunc(t.entries, seq, func(e trackedEntry, s uint64) int { return cmp.Compare(e.seq, s) })
	return i, ok
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
	if len(t.entries) == 0 {
		t.entries = nil // let the old backing array go
	}
}

// compactLocked drops every finished entry followed by another finished
// one, and sets the next compaction at twice what is left (at least
// minCompact): amortised, a constant cost per entry.
func (t *tracker) compactLocked() {
	kept := t.entries[:0]
	for i, e := range t.entries {
		if e.finished && i+1 < len(t.entries) && t.entries[i+1].finished {
			continue
		}
		kept = append(kept, e)
	}
	clear(t.entries[len(kept):])
	t.entries = kept
	t.compactAt = max(2*len(kept), minCompact)
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
