package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// ResultCache remembers action successes within one process, judging
// expiry by the injected clock. Expired entries are swept lazily when the
// table has doubled since the last sweep, so memory stays proportional to
// the live entries. Safe for concurrent use.
type ResultCache struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[string]time.Time // key -> expiry
	sweepAt int
}

var _ ports.ResultCache = (*ResultCache)(nil)

// NewResultCache returns an empty cache; now is its clock (nil means
// time.Now).
func NewResultCache(now func() time.Time) *ResultCache {
	if now == nil {
		now = time.Now
	}
	return &ResultCache{now: now, entries: map[string]time.Time{}, sweepAt: minSweepSize}
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
		until, ok := c.entries[key]
		hits[i] = ok && now.Before(until)
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
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, key := range keys {
		_, existed := c.entries[key]
		c.entries[key] = now.Add(ttl)
		if !existed && len(c.entries) >= c.sweepAt {
			for k, until := range c.entries {
				if !now.Before(until) {
					delete(c.entries, k)
				}
			}
			c.sweepAt = max(minSweepSize, 2*len(c.entries))
		}
	}
	return nil
}
