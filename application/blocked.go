package application

import (
	"context"
	"fmt"
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
// store's counts at the start of each reader term. Memory: one entry per
// key with parked items. Safe for concurrent use.
type BlockedKeys struct {
	mu   sync.Mutex
	keys map[blockedKey]int64
}

type blockedKey struct{ observer, entityKey string }

// NewBlockedKeys returns an empty set.
func NewBlockedKeys() *BlockedKeys { return &BlockedKeys{keys: map[blockedKey]int64{}} }

// Has reports whether observer has parked items for entityKey.
func (b *BlockedKeys) Has(observer, entityKey string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keys[blockedKey{observer, entityKey}] > 0
}

// HasEvent is Has for ev's entity; it builds the entity key only while
// some key is blocked (the key is an allocation per event and observer).
func (b *BlockedKeys) HasEvent(observer string, ev *domain.Event) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.keys) > 0 && b.keys[blockedKey{observer, ev.EntityKey()}] > 0
}

// Add counts an item parked for the key.
func (b *BlockedKeys) Add(observer, entityKey string) {
	b.mu.Lock()
	b.keys[blockedKey{observer, entityKey}]++
	b.mu.Unlock()
}

// Done counts an item of the key completed. (It never trusts the store's
// "key empty" instead: an item parked meanwhile would then be passed by
// later events. A count that drifts high, e.g. after an operator removed
// rows, only sends the key's events through the store until the next
// Load.)
func (b *BlockedKeys) Done(observer, entityKey string) {
	k := blockedKey{observer, entityKey}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := b.keys[k] - 1; n > 0 {
		b.keys[k] = n
		return
	}
	delete(b.keys, k)
}

// Len is the number of blocked keys.
func (b *BlockedKeys) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.keys)
}

// Load replaces the counts with the store's.
func (b *BlockedKeys) Load(ctx context.Context, store ports.RetryStore) error {
	keys, err := store.Keys(ctx)
	if err != nil {
		return fmt.Errorf("load parked keys: %w", err)
	}
	m := make(map[blockedKey]int64, len(keys))
	for _, k := range keys {
		m[blockedKey{k.Observer, k.EntityKey}] = max(k.Items, 1)
	}
	b.mu.Lock()
	b.keys = m
	b.mu.Unlock()
	return nil
}
