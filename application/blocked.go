package application

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// BlockedKeys counts, per observer and entity key, the items this process
// knows to be parked in the retry store. While a key counts any, the
// processor parks that observer's later events of the entity behind them
// (without attempting them), so they run in change-log order; other
// observers and entities are not held back. The processor counts the items
// it parks, the retry runner those it completes, and Load takes the
// store's counts at the start of each reader term. Safe for concurrent use.
//
// Memory is bounded whatever the store holds (BlockedKeysLimits): up to
// MaxKeys keys and MaxBytes are counted exactly, one entry each; the keys
// past that are counted in a fixed table of counters (a counting Bloom
// filter, allocated at the first such key and freed once they are all
// done). That table never forgets a key it counts; it may take another
// key for one (a false positive), whose events then go through the store
// behind nothing (parked, due at once): slower, never out of order. How
// often grows with the keys in it: with the default 2^21 counters about
// one key in 1 000 at 100 000 keys, one in 7 at 500 000, one in 2 at
// 1 000 000.
//
// Every Done must match a count taken (an Add, or an item Load counted):
// one without frees a key early, and, in the table, possibly others. A
// count that is not matched (a park whose outcome is unknown) is safe: it
// only sends the key's events through the store until the next Load.
type BlockedKeys struct {
	lim  BlockedKeysLimits
	seed maphash.Seed

	mu    sync.Mutex
	keys  map[blockedKey]int64
	bytes int64 // estimated memory of keys
	// spill counts the keys that did not fit in keys (nil while none);
	// spilled is how many items it counts.
	spill   []uint16
	spilled int64
}

// BlockedKeysLimits bounds a BlockedKeys' memory.
type BlockedKeysLimits struct {
	// MaxKeys and MaxBytes bound the keys counted exactly (an entry's
	// bytes: its observer's and entity key's lengths plus
	// blockedEntryOverhead).
	MaxKeys  int
	MaxBytes int64
	// Counters is the size of the table that counts the rest (2 bytes
	// each); rounded up to a power of two, at most 2^30.
	Counters int
}

// DefaultBlockedKeysLimits are NewBlockedKeys' bounds: 65 536 keys and
// 16 MiB exactly, then a 4 MiB table (at 100 000 keys in it, about one
// other key in 1 000 taken for a blocked one).
var DefaultBlockedKeysLimits = BlockedKeysLimits{MaxKeys: 1 << 16, MaxBytes: 16 << 20, Counters: 1 << 21}

// blockedEntryOverhead is a map entry's size beyond its strings' bytes
// (two string headers, the count, the map's own slot and hash).
const blockedEntryOverhead = 64

// blockedHashes is how many counters count each key in the spill table.
const blockedHashes = 4

type blockedKey struct{ observer, entityKey string }

func (k blockedKey) size() int64 {
	return int64(len(k.observer)+len(k.entityKey)) + blockedEntryOverhead
}

// NewBlockedKeys returns an empty set bounded by DefaultBlockedKeysLimits.
func NewBlockedKeys() *BlockedKeys { return NewBlockedKeysWithLimits(DefaultBlockedKeysLimits) }

// NewBlockedKeysWithLimits returns an empty set bounded by lim (a zero
// field takes the default's).
func NewBlockedKeysWithLimits(lim BlockedKeysLimits) *BlockedKeys {
	d := DefaultBlockedKeysLimits
	if lim.MaxKeys <= 0 {
		lim.MaxKeys = d.MaxKeys
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = d.MaxBytes
	}
	if lim.Counters <= 0 {
		lim.Counters = d.Counters
	}
	lim.Counters = min(lim.Counters, 1<<30)
	n := 1
	for n < lim.Counters {
		n <<= 1
	}
	lim.Counters = n
	return &BlockedKeys{lim: lim, seed: maphash.MakeSeed(), keys: map[blockedKey]int64{}}
}

// Has reports whether observer has parked items for entityKey.
func (b *BlockedKeys) Has(observer, entityKey string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.has(blockedKey{observer, entityKey})
}

// HasEvent is Has for ev's entity; it builds the entity key only while
// some key is blocked (the key is an allocation per event and observer).
func (b *BlockedKeys) HasEvent(observer string, ev *domain.Event) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return (len(b.keys) > 0 || b.spilled > 0) && b.has(blockedKey{observer, ev.EntityKey()})
}

func (b *BlockedKeys) has(k blockedKey) bool {
	if b.keys[k] > 0 {
		return true
	}
	if b.spill == nil {
		return false
	}
	for _, i := range b.positions(k) {
		if b.spill[i] == 0 {
			return false
		}
	}
	return true
}

// Add counts an item parked for the key.
func (b *BlockedKeys) Add(observer, entityKey string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.add(blockedKey{observer, entityKey}, 1)
}

func (b *BlockedKeys) add(k blockedKey, n int64) {
	if c, ok := b.keys[k]; ok {
		b.keys[k] = c + n
		return
	}
	if len(b.keys) < b.lim.MaxKeys && b.bytes+k.size() <= b.lim.MaxBytes {
		b.keys[k] = n
		b.bytes += k.size()
		return
	}
	if b.spill == nil {
		b.spill = make([]uint16, b.lim.Counters)
	}
	for _, i := range b.positions(k) {
		// A full counter stays full (it no longer counts down) until the
		// table is freed.
		b.spill[i] = uint16(min(int64(b.spill[i])+n, 1<<16-1))
	}
	b.spilled += n
}

// Done counts an item of the key completed, one that was counted (see
// BlockedKeys). (It never trusts the store's
// "key empty" instead: an item parked meanwhile would then be passed by
// later events. A count that drifts high, e.g. after an operator removed
// rows, only sends the key's events through the store until the next
// Load.)
func (b *BlockedKeys) Done(observer, entityKey string) {
	k := blockedKey{observer, entityKey}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.keys[k]; ok {
		if c > 1 {
			b.keys[k] = c - 1
			return
		}
		delete(b.keys, k)
		b.bytes -= k.size()
		return
	}
	if b.spill == nil {
		return
	}
	pos := b.positions(k)
	for _, i := range pos {
		if b.spill[i] == 0 {
			return // not counted here
		}
	}
	for _, i := range pos {
		if b.spill[i] < 1<<16-1 {
			b.spill[i]--
		}
	}
	if b.spilled--; b.spilled <= 0 {
		b.spill, b.spilled = nil, 0
	}
}

// positions are the spill counters of k.
func (b *BlockedKeys) positions(k blockedKey) [blockedHashes]int {
	var h maphash.Hash
	h.SetSeed(b.seed)
	_, _ = h.WriteString(k.observer)
	_ = h.WriteByte(0)
	_, _ = h.WriteString(k.entityKey)
	sum := h.Sum64()
	h1, h2 := sum, (sum>>32|sum<<32)|1 // double hashing; odd step
	mask := uint64(b.lim.Counters - 1)
	var out [blockedHashes]int
	for i := range out {
		out[i] = int((h1 + uint64(i)*h2) & mask)
	}
	return out
}

// Len is the number of keys counted exactly plus the items counted in
// the spill table: zero exactly when nothing is blocked.
func (b *BlockedKeys) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.keys) + int(b.spilled)
}

// Spilled is the number of items counted past the exact bounds.
func (b *BlockedKeys) Spilled() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.spilled
}

// Load replaces the counts with the store's, reading them one key at a
// time (the store's keys are never all in memory).
func (b *BlockedKeys) Load(ctx context.Context, store ports.RetryStore) error {
	fresh := &BlockedKeys{lim: b.lim, seed: b.seed, keys: map[blockedKey]int64{}}
	err := store.Keys(ctx, func(k ports.RetryKey) error {
		fresh.add(blockedKey{k.Observer, k.EntityKey}, max(k.Items, 1))
		return nil
	})
	if err != nil {
		return fmt.Errorf("load parked keys: %w", err)
	}
	b.mu.Lock()
	b.keys, b.bytes, b.spill, b.spilled = fresh.keys, fresh.bytes, fresh.spill, fresh.spilled
	b.mu.Unlock()
	return nil
}
