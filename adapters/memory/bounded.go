package memory

import (
	"fmt"
	"strings"
	"time"
)

// Default bounds of a Deduplicator's or ResultCache's table, each. With
// UUID event ids an entry weighs about 240 bytes, so the count binds first
// (about 60 MiB) and the byte bound keeps longer keys (result keys name
// the observer and action too) within 64 MiB. At the default one-hour
// dedup window and cache TTL that covers about 70 events (the cache:
// action results) a second before the oldest entries are evicted; a
// faster service wanting the whole window raises them or uses Redis. The
// count is far above the reader's default in-flight bound (10 000
// events), so live claims never fill it.
const (
	DefaultMaxEntries = 1 << 18 // 262 144
	DefaultMaxBytes   = 64 << 20
)

// entryOverhead is what an entry weighs besides its key and value bytes:
// its map slot (at the map's varying load), its queue items and the
// rounding of its key's allocation. Measured on amd64 with Go 1.26 at
// 150 to 220 bytes; the estimate takes the upper end.
const entryOverhead = 200

// minSweepSize is the number of entries below which expired ones are not
// swept: small tables are cheaper to keep than to scan.
const minSweepSize = 1024

// minCompact is the number of stale queue items a queue may hold beyond
// twice its live entries before it is compacted.
const minCompact = 1024

// TableOption bounds a Deduplicator's or ResultCache's table
// (NewDeduplicator, NewResultCache).
type TableOption func(*tableLimits)

type tableLimits struct {
	maxEntries int
	maxBytes   int64
}

// WithMaxEntries bounds the entries the table holds, expired ones included
// until they are dropped (default DefaultMaxEntries; n < 1 means the
// default).
func WithMaxEntries(n int) TableOption {
	return func(l *tableLimits) {
		if n > 0 {
			l.maxEntries = n
		}
	}
}

// WithMaxBytes bounds the weight of the table's entries: their key and
// value bytes plus a fixed estimate of the map and queue slots each takes
// (default DefaultMaxBytes; n < 1 means the default).
func WithMaxBytes(n int64) TableOption {
	return func(l *tableLimits) {
		if n > 0 {
			l.maxBytes = n
		}
	}
}

func newLimits(opts []TableOption) tableLimits {
	l := tableLimits{maxEntries: DefaultMaxEntries, maxBytes: DefaultMaxBytes}
	for _, o := range opts {
		o(&l)
	}
	return l
}

// TableStats describes a bounded in-process table.
type TableStats struct {
	// Entries and Bytes are what the table holds now (expired entries not
	// dropped yet included), within its bounds.
	Entries int
	Bytes   int64
	// Evicted counts unexpired entries dropped, oldest first, to make room
	// for newer ones.
	Evicted uint64
	// Refused counts writes not stored: the table was full of entries it
	// may not evict (the Deduplicator's live claims), or the entry alone
	// weighs more than the byte bound.
	Refused uint64
}

// entryClass says whether an entry may be evicted before it expires.
type entryClass uint8

const (
	evictable entryClass = iota // done marks, cached results
	pinned                      // claims: dropped only once expired
	numClasses
)

// table is the map under Deduplicator and ResultCache: expiring entries
// bounded in count and bytes. Each class keeps a FIFO of its keys in the
// order they were last written; with one duration per class (the
// application's lease, window or TTL) that is also expiry order, so
// expired entries are dropped from the queues' heads as writes come, and
// when the table is full the oldest evictable entry goes. A rewritten or
// removed entry leaves a stale item behind (its seq no longer matches),
// skipped when met and compacted away when stale items outnumber live
// ones. Every operation is O(1) amortised. Not safe for concurrent use:
// the owner locks.
type table[V any] struct {
	lim     tableLimits
	entries map[string]slot[V]
	queues  [numClasses]fifo
	counts  [numClasses]int
	bytes   int64
	seq     uint64 // last seq given; 0 marks an entry no queue item refers to
	sweepAt int

	evicted, refused uint64
}

type slot[V any] struct {
	val   V
	until time.Time
	size  int64
	seq   uint64
	class entryClass
}

func newTable[V any](opts []TableOption) table[V] {
	return table[V]{lim: newLimits(opts), entries: map[string]slot[V]{}, sweepAt: minSweepSize}
}

func (t *table[V]) len() int { return t.counts[evictable] + t.counts[pinned] }

func (t *table[V]) stats() TableStats {
	return TableStats{Entries: t.len(), Bytes: t.bytes, Evicted: t.evicted, Refused: t.refused}
}

// fits reports whether an entry of size bytes can ever be stored.
func (t *table[V]) fits(size int64) bool { return size <= t.lim.maxBytes }

// checkFits is the error of op on key when its entry of size bytes can
// never be stored, or nil.
func (t *table[V]) checkFits(op, key string, size int64) error {
	if t.fits(size) {
		return nil
	}
	return fmt.Errorf("memory: %s %.64q: entry of %d bytes exceeds the table's %d-byte bound", op, key, size, t.lim.maxBytes)
}

func (t *table[V]) get(key string) (slot[V], bool) {
	s, ok := t.entries[key]
	return s, ok
}

// set stores val for key until the given time, replacing any entry, and
// makes room for it first. It reports false, storing nothing and dropping
// the entry key had, when no room can be made.
func (t *table[V]) set(now time.Time, key string, val V, until time.Time, class entryClass, size int64) bool {
	old, existed := t.entries[key]
	if existed {
		// Out of the accounting while room is made; seq 0 keeps its queue
		// item from evicting it meanwhile.
		t.counts[old.class]--
		t.bytes -= old.size
		t.entries[key] = slot[V]{}
	} else {
		key = strings.Clone(key) // hold only the key's own bytes
	}
	if !t.makeRoom(now, size) {
		delete(t.entries, key)
		t.refused++
		return false
	}
	t.seq++
	t.entries[key] = slot[V]{val: val, until: until, size: size, seq: t.seq, class: class}
	t.counts[class]++
	t.bytes += size
	t.queues[class].push(queueItem{key: key, seq: t.seq})
	t.compact(class)
	if !existed {
		t.sweep(now)
	}
	return true
}

// remove drops key's entry; its queue item turns stale.
func (t *table[V]) remove(key string) {
	if s, ok := t.entries[key]; ok {
		delete(t.entries, key)
		if s.seq != 0 {
			t.counts[s.class]--
			t.bytes -= s.size
		}
	}
}

// live reports whether it is key's current entry that item refers to.
func (t *table[V]) live(it queueItem) (slot[V], bool) {
	s, ok := t.entries[it.key]
	return s, ok && s.seq == it.seq
}

// makeRoom drops expired entries from the queues' heads, then evicts the
// oldest evictable entries until one more entry of size bytes fits. Live
// pinned entries are never evicted: it reports false when only they are
// left.
func (t *table[V]) makeRoom(now time.Time, size int64) bool {
	if !t.fits(size) {
		return false
	}
	for c := range numClasses {
		t.dropExpired(now, c)
	}
	for t.len()+1 > t.lim.maxEntries || t.bytes+size > t.lim.maxBytes {
		if !t.evictOldest(now) {
			return false
		}
	}
	return true
}

// dropExpired drops stale items and expired entries from the head of
// class's queue.
func (t *table[V]) dropExpired(now time.Time, c entryClass) {
	q := &t.queues[c]
	for it, ok := q.peek(); ok; it, ok = q.peek() {
		s, cur := t.live(it)
		if cur && now.Before(s.until) {
			return
		}
		q.pop()
		if cur {
			t.remove(it.key)
		}
	}
}

// evictOldest drops the oldest evictable entry, counting it evicted when
// it had not expired. It reports false when there is none.
func (t *table[V]) evictOldest(now time.Time) bool {
	q := &t.queues[evictable]
	for it, ok := q.peek(); ok; it, ok = q.peek() {
		q.pop()
		if s, cur := t.live(it); cur {
			t.remove(it.key)
			if now.Before(s.until) {
				t.evicted++
			}
			return true
		}
	}
	return false
}

// sweep drops every expired entry once the table has grown to sweepAt,
// then sets the next threshold to twice the live entries: entries expiring
// out of queue order (mixed durations) are dropped too.
func (t *table[V]) sweep(now time.Time) {
	if len(t.entries) < t.sweepAt {
		return
	}
	for key, s := range t.entries {
		if s.seq != 0 && !now.Before(s.until) {
			t.remove(key)
		}
	}
	for c := range numClasses {
		t.compact(c)
	}
	t.sweepAt = max(minSweepSize, 2*len(t.entries))
}

// compact drops class's stale queue items once they outnumber its live
// entries by minCompact: each pass removes at least as many items as were
// pushed since the last, so it is O(1) amortised.
func (t *table[V]) compact(c entryClass) {
	q := &t.queues[c]
	if q.len() <= 2*t.counts[c]+minCompact {
		return
	}
	q.filter(func(it queueItem) bool {
		_, cur := t.live(it)
		return cur
	})
}

// queueItem is a key in a table queue, as written at seq.
type queueItem struct {
	key string
	seq uint64
}

// fifo is a queue of items over a slice, its head moving forward and the
// rest copied down once the head passes half the slice.
type fifo struct {
	items []queueItem
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(it queueItem) { q.items = append(q.items, it) }

func (q *fifo) peek() (queueItem, bool) {
	if q.head == len(q.items) {
		return queueItem{}, false
	}
	return q.items[q.head], true
}

func (q *fifo) pop() {
	q.items[q.head] = queueItem{} // release the key
	q.head++
	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head >= minCompact && 2*q.head >= len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
}

// filter keeps the items keep accepts, in order, reallocating when the
// slice has grown four times past them.
func (q *fifo) filter(keep func(queueItem) bool) {
	kept := q.items[:0]
	for _, it := range q.items[q.head:] {
		if keep(it) {
			kept = append(kept, it)
		}
	}
	clear(q.items[len(kept):])
	if cap(kept) > 4*(len(kept)+minCompact) {
		kept = append([]queueItem(nil), kept...)
	}
	q.items, q.head = kept, 0
}
