package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// ResultCache remembers action successes within one process, judging
// expiry by the injected clock. Safe for concurrent use.
//
// Its table is bounded in entries and bytes (WithMaxEntries, WithMaxBytes;
// an entry weighs its key and a fixed overhead). Expired entries are
// dropped as writes come. When the table is full, a write evicts the
// oldest entries (by when they were last put), counted in
// Stats().Evicted. An evicted success is forgotten before its TTL ends:
// a redelivered event runs that action again, as after a restart (nothing
// here survives one). A key too heavy for the byte bound on its own is
// refused with an error.
type ResultCache struct {
	now func() time.Time

	mu    sync.Mutex
	table table[struct{}]
}

// cacheSize is what the entry of key weighs in the table.
func cacheSize(key string) int64 { return int64(len(key)) + entryOverhead }

var _ ports.ResultCache = (*ResultCache)(nil)

// NewResultCache returns an empty cache; now is its clock (nil means
// time.Now). Its table holds at most DefaultMaxEntries entries of
// DefaultMaxBytes bytes in all unless opts say otherwise.
func NewResultCache(now func() time.Time, opts ...TableOption) *ResultCache {
	if now == nil {
		now = time.Now
	}
	return &ResultCache{now: now, table: newTable[struct{}](opts)}
}

// Stats reports the table's size and the entries evicted or refused for
// room so far.
func (c *ResultCache) Stats() TableStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.table.stats()
}

// Get reports whether key holds an unexpired success.
func (c *ResultCache) Get(ctx context.Context, key string) (bool, error) {
	hits, err := c.GetMany(ctx, []string{key})
	if err != nil {
		return false, err
	}
	return hits[0], nil
}

// GetMany answers Get for every key under one lock.
func (c *ResultCache) GetMany(ctx context.Context, keys []string) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: get %d results: %w", len(keys), err)
	}
	hits := make([]bool, len(keys))
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for i, key := range keys {
		s, ok := c.table.get(key)
		hits[i] = ok && now.Before(s.until)
	}
	return hits, nil
}

// Put stores a success for key until now+ttl, replacing an earlier one.
func (c *ResultCache) Put(ctx context.Context, key string, ttl time.Duration) error {
	return c.PutMany(ctx, []string{key}, ttl)
}

// PutMany stores every key as Put would, under one lock.
func (c *ResultCache) PutMany(ctx context.Context, keys []string, ttl time.Duration) error {
	if len(keys) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: put result %q: %w", keys[0], err)
	}
	if ttl <= 0 {
		return fmt.Errorf("memory: put result %q: ttl %v is not positive", keys[0], ttl)
	}
	for _, key := range keys {
		if err := c.table.checkFits("put result", key, cacheSize(key)); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, key := range keys {
		c.table.set(now, key, struct{}{}, now.Add(ttl), evictable, cacheSize(key))
	}
	return nil
}
