package memory

import (
	"fmt"
	"testing"
	"time"
)

// TestExpiredEntriesAreSwept proves memory stays bounded: after many
// short-lived entries expire, inserting more sweeps them.
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
					}, func() int {
						d.mu.Lock()
						defer d.mu.Unlock()
						return len(d.entries)
					}
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
					}, func() int {
						d.mu.Lock()
						defer d.mu.Unlock()
						return len(d.entries)
					}
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
					}, func() int {
						c.mu.Lock()
						defer c.mu.Unlock()
						return len(c.entries)
					}
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
			if limit := 2*minSweepSize + batch; peak > limit {
				t.Fatalf("table peaked at %d entries with %d live, want at most %d", peak, batch, limit)
			}
		})
	}
}
