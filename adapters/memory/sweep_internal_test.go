package memory

import (
	"fmt"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// TestExpiredEntriesAreSwept proves memory stays proportional to the live
// entries, far below the bounds: after many short-lived entries expire,
// inserting more drops them, from the map and from the queues.
func TestExpiredEntriesAreSwept(t *testing.T) {
	t.Parallel()
	const n = 50_000
	tests := []struct {
		name string
		fill func(t *testing.T, now func() time.Time) (insert func(i int), size func() int)
	}{
		{
			name: "deduplicator claims",
			fill: func(t *testing.T, now func() time.Time) (func(int), func() int) {
				d := NewDeduplicator(now)
				return func(i int) {
					if _, err := d.Claim(t.Context(), fmt.Sprint("ev-", i), "a", time.Second); err != nil {
						t.Fatalf("Claim: %v", err)
					}
				}, d.footprint
			},
		},
		{
			name: "deduplicator done marks",
			fill: func(t *testing.T, now func() time.Time) (func(int), func() int) {
				d := NewDeduplicator(now)
				return func(i int) {
					if err := d.MarkDone(t.Context(), fmt.Sprint("ev-", i), time.Second); err != nil {
						t.Fatalf("MarkDone: %v", err)
					}
				}, d.footprint
			},
		},
		{
			name: "result cache",
			fill: func(t *testing.T, now func() time.Time) (func(int), func() int) {
				c := NewResultCache(now)
				return func(i int) {
					if err := c.Put(t.Context(), fmt.Sprint("k-", i), time.Second); err != nil {
						t.Fatalf("Put: %v", err)
					}
				}, c.footprint
			},
		},
		{
			// The long-lived mark stays at the head of its queue: the
			// expired marks behind it go by the sweep.
			name: "deduplicator done marks behind a long-lived one",
			fill: func(t *testing.T, now func() time.Time) (func(int), func() int) {
				d := NewDeduplicator(now)
				if err := d.MarkDone(t.Context(), "long", 24*time.Hour); err != nil {
					t.Fatalf("MarkDone: %v", err)
				}
				return func(i int) {
					if err := d.MarkDone(t.Context(), fmt.Sprint("ev-", i), time.Second); err != nil {
						t.Fatalf("MarkDone: %v", err)
					}
				}, d.footprint
			},
		},
		{
			// Each renewal leaves a stale item behind the long-lived claim
			// at the head: they go by compaction.
			name: "deduplicator claim renewed behind a long-lived one",
			fill: func(t *testing.T, now func() time.Time) (func(int), func() int) {
				d := NewDeduplicator(now)
				if _, err := d.Claim(t.Context(), "long", "a", 24*time.Hour); err != nil {
					t.Fatalf("Claim: %v", err)
				}
				return func(int) {
					if res, err := d.Claim(t.Context(), "renewed", "a", time.Hour); err != nil || res != ports.ClaimAcquired {
						t.Fatalf("Claim = %v, %v; want acquired", res, err)
					}
				}, d.footprint
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			insert, size := tt.fill(t, func() time.Time { return now })
			// Each batch expires before the next one is inserted: the live set
			// is one batch, so the table must stay within a small multiple of it.
			const batch = 1000
			peak := 0
			for i := range n {
				if i%batch == 0 {
					now = now.Add(2 * time.Second)
				}
				insert(i)
				peak = max(peak, size())
			}
			if limit := 2*minCompact + batch; peak > limit {
				t.Fatalf("table peaked at %d entries with %d live, want at most %d", peak, batch, limit)
			}
		})
	}
}

// footprint is the most of the map's entries and of each queue's items.
func (t *table[V]) footprint() int {
	n := len(t.entries)
	for _, q := range t.queues {
		n = max(n, q.len())
	}
	return n
}

// footprint is the table's footprint, under the deduplicator's lock.
func (d *Deduplicator) footprint() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.table.footprint()
}

// footprint is the table's footprint, under the cache's lock.
func (c *ResultCache) footprint() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.table.footprint()
}
