package memory_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/ports"
)

const (
	testWindow = time.Hour
	testLease  = 30 * time.Second
)

// withinBounds fails the test when stats exceed either bound.
func withinBounds(t *testing.T, s memory.TableStats, maxEntries int, maxBytes int64) {
	t.Helper()
	if s.Entries > maxEntries || s.Bytes > maxBytes {
		t.Fatalf("table holds %d entries of %d bytes, bounds %d and %d", s.Entries, s.Bytes, maxEntries, maxBytes)
	}
}

// TestDeduplicatorBoundEvictsOldestDoneMarks fills past the count bound
// and past the byte bound (long ids): the table stays within both, the
// oldest done marks go first, and an evicted event can be claimed again.
func TestDeduplicatorBoundEvictsOldestDoneMarks(t *testing.T) {
	t.Parallel()
	// weight is what one done mark of an id of n bytes weighs.
	weight := func(n int) int64 {
		d := memory.NewDeduplicator(nil)
		if err := d.MarkDone(t.Context(), strings.Repeat("x", n), testWindow); err != nil {
			t.Fatalf("MarkDone: %v", err)
		}
		return d.Stats().Bytes
	}
	w := weight(1000)
	if w <= 1000 {
		t.Fatalf("a mark of a 1000-byte id weighs %d bytes, want its id counted", w)
	}
	tests := []struct {
		name       string
		idLen      int
		maxEntries int
		maxBytes   int64
		keep       int // done marks the bounds leave room for
	}{
		{"count", 8, 5, memory.DefaultMaxBytes, 5},
		// Five marks fit, and a claim (its token a few bytes more) evicts one.
		{"bytes", 1000, memory.DefaultMaxEntries, 5*w + w/2, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			d := memory.NewDeduplicator(clock.Now, memory.WithMaxEntries(tt.maxEntries), memory.WithMaxBytes(tt.maxBytes))
			id := func(i int) string { return fmt.Sprintf("%0*d", tt.idLen, i) }
			const n = 20
			for i := range n {
				clock.Advance(time.Second)
				if err := d.MarkDone(t.Context(), id(i), testWindow); err != nil {
					t.Fatalf("MarkDone: %v", err)
				}
				withinBounds(t, d.Stats(), tt.maxEntries, tt.maxBytes)
			}
			if s := d.Stats(); s.Entries != tt.keep || s.Evicted != n-uint64(tt.keep) || s.Refused != 0 {
				t.Fatalf("Stats = %+v, want %d entries, %d evicted, none refused", s, tt.keep, n-tt.keep)
			}
			// The newest marks are kept (a done answer writes nothing)...
			for i := n - tt.keep; i < n; i++ {
				mustClaim(t, d, id(i), "b", ports.ClaimDone)
			}
			// ...the oldest were forgotten: a duplicate runs again.
			mustClaim(t, d, id(n-tt.keep-1), "b", ports.ClaimAcquired)
			withinBounds(t, d.Stats(), tt.maxEntries, tt.maxBytes)
			// That claim evicted the oldest mark left, and only it.
			mustClaim(t, d, id(n-tt.keep), "c", ports.ClaimAcquired)
			mustClaim(t, d, id(n-tt.keep+1), "c", ports.ClaimAcquired)
			mustClaim(t, d, id(n-1), "c", ports.ClaimDone)
		})
	}
}

// TestDeduplicatorBoundKeepsLiveClaims: a full table evicts done marks
// and expired claims, never a live claim; with only live claims left a new
// claim is answered busy (delayed, not run twice) and a new done mark is
// dropped, both counted refused.
func TestDeduplicatorBoundKeepsLiveClaims(t *testing.T) {
	t.Parallel()
	clock := newClock()
	d := memory.NewDeduplicator(clock.Now, memory.WithMaxEntries(3))
	mustClaim(t, d, "e0", "a", ports.ClaimAcquired)
	mustClaim(t, d, "e1", "a", ports.ClaimAcquired)
	if err := d.MarkDone(t.Context(), "d0", testWindow); err != nil {
		t.Fatalf("MarkDone: %v", err)
	}
	clock.Advance(time.Second)
	mustClaim(t, d, "e2", "b", ports.ClaimAcquired) // evicts d0, the only done mark
	if s := d.Stats(); s.Entries != 3 || s.Evicted != 1 || s.Refused != 0 {
		t.Fatalf("Stats = %+v, want 3 entries, 1 evicted, none refused", s)
	}

	// Only live claims: nothing may go.
	mustClaim(t, d, "e3", "c", ports.ClaimBusy)
	if err := d.MarkDone(t.Context(), "d1", testWindow); err != nil {
		t.Fatalf("MarkDone: %v", err)
	}
	if s := d.Stats(); s.Entries != 3 || s.Refused != 2 {
		t.Fatalf("Stats = %+v, want 3 entries, 2 refused", s)
	}
	for _, id := range []string{"e0", "e1"} {
		mustClaim(t, d, id, "c", ports.ClaimBusy)     // still held by a
		mustClaim(t, d, id, "a", ports.ClaimAcquired) // a renewal needs no room
	}
	mustClaim(t, d, "d1", "c", ports.ClaimBusy) // the mark was dropped, and no room to claim

	// Marking a claimed event done replaces its claim: no room needed.
	if err := d.MarkDone(t.Context(), "e0", testWindow); err != nil {
		t.Fatalf("MarkDone: %v", err)
	}
	mustClaim(t, d, "e0", "c", ports.ClaimDone)
	// A released claim makes room at once; e0's mark, now the oldest done
	// mark, goes for the next.
	if err := d.Release(t.Context(), "e1", "a"); err != nil {
		t.Fatalf("Release: %v", err)
	}
	mustClaim(t, d, "e3", "c", ports.ClaimAcquired)
	mustClaim(t, d, "e4", "c", ports.ClaimAcquired)
	mustClaim(t, d, "e0", "d", ports.ClaimBusy) // e0 forgotten, but no room left
	// Expired claims make room without counting as evictions.
	clock.Advance(testLease)
	before := d.Stats().Evicted
	mustClaim(t, d, "e5", "d", ports.ClaimAcquired)
	if s := d.Stats(); s.Evicted != before || s.Entries > 3 {
		t.Fatalf("Stats = %+v, want %d evicted and at most 3 entries", s, before)
	}
}

// TestResultCacheBoundEvictsOldest fills the cache past the count bound
// and past the byte bound (long keys): it stays within both and the
// entries put longest ago go first, a put again counting as new.
func TestResultCacheBoundEvictsOldest(t *testing.T) {
	t.Parallel()
	// weight is what one entry of a key of n bytes weighs.
	weight := func(n int) int64 {
		c := memory.NewResultCache(nil)
		if err := c.Put(t.Context(), strings.Repeat("x", n), testWindow); err != nil {
			t.Fatalf("Put: %v", err)
		}
		return c.Stats().Bytes
	}
	w := weight(2000)
	if w <= 2000 {
		t.Fatalf("an entry of a 2000-byte key weighs %d bytes, want its key counted", w)
	}
	tests := []struct {
		name       string
		keyLen     int
		maxEntries int
		maxBytes   int64
	}{
		{"count", 8, 4, memory.DefaultMaxBytes},
		{"bytes", 2000, memory.DefaultMaxEntries, 4*w + w/2}, // four fit
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			c := memory.NewResultCache(clock.Now, memory.WithMaxEntries(tt.maxEntries), memory.WithMaxBytes(tt.maxBytes))
			key := func(i int) string { return fmt.Sprintf("%0*d", tt.keyLen, i) }
			put := func(i int) {
				t.Helper()
				clock.Advance(time.Second)
				if err := c.Put(t.Context(), key(i), testWindow); err != nil {
					t.Fatalf("Put: %v", err)
				}
				withinBounds(t, c.Stats(), tt.maxEntries, tt.maxBytes)
			}
			for i := range 4 {
				put(i)
			}
			put(0) // now the newest
			for i := 4; i < 7; i++ {
				put(i)
			}
			// 1, 2 and 3 went, oldest first.
			want := map[int]bool{0: true, 1: false, 2: false, 3: false, 4: true, 5: true, 6: true}
			for i, w := range want {
				got, err := c.Get(t.Context(), key(i))
				if err != nil || got != w {
					t.Errorf("Get(%d) = %v, %v; want %v", i, got, err, w)
				}
			}
			if s := c.Stats(); s.Entries != 4 || s.Evicted != 3 || s.Refused != 0 {
				t.Fatalf("Stats = %+v, want 4 entries, 3 evicted, none refused", s)
			}
			// Expired entries make room without counting as evictions.
			clock.Advance(testWindow)
			put(7)
			if s := c.Stats(); s.Evicted != 3 {
				t.Fatalf("Stats = %+v, want still 3 evicted", s)
			}
		})
	}
}

// TestBoundRefusesEntryHeavierThanTheByteBound: an entry that could never
// fit is an error, not an eviction of everything.
func TestBoundRefusesEntryHeavierThanTheByteBound(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1000)
	d := memory.NewDeduplicator(nil, memory.WithMaxBytes(1000))
	c := memory.NewResultCache(nil, memory.WithMaxBytes(1000))
	if _, err := d.Claim(t.Context(), long, "a", testLease); err == nil {
		t.Error("Claim of an oversized id: no error")
	}
	if _, err := d.ClaimMany(t.Context(), []string{"short", long}, "a", testLease); err == nil {
		t.Error("ClaimMany with an oversized id: no error")
	}
	if err := d.MarkDone(t.Context(), long, testWindow); err == nil {
		t.Error("MarkDone of an oversized id: no error")
	}
	if err := c.Put(t.Context(), long, testWindow); err == nil {
		t.Error("Put of an oversized key: no error")
	}
	mustClaim(t, d, "short", "a", ports.ClaimAcquired) // the refused batch took nothing
	if s := d.Stats(); s.Entries != 1 {
		t.Fatalf("Stats = %+v, want 1 entry", s)
	}
}

// TestDeduplicatorWeighsTheClaimToken: a claim's token is stored with it
// and counted; marking the event done drops it.
func TestDeduplicatorWeighsTheClaimToken(t *testing.T) {
	t.Parallel()
	d := memory.NewDeduplicator(nil)
	token := strings.Repeat("t", 500)
	mustClaim(t, d, "ev", token, ports.ClaimAcquired)
	claimed := d.Stats().Bytes
	if err := d.MarkDone(t.Context(), "ev", testWindow); err != nil {
		t.Fatalf("MarkDone: %v", err)
	}
	if done := d.Stats().Bytes; claimed-done != int64(len(token)) {
		t.Fatalf("claim weighs %d bytes, done mark %d: want the token's %d between", claimed, done, len(token))
	}
}

func mustClaim(t *testing.T, d *memory.Deduplicator, id, token string, want ports.ClaimResult) {
	t.Helper()
	got, err := d.Claim(t.Context(), id, token, testLease)
	if err != nil {
		t.Fatalf("Claim(%.20s, %s): %v", id, token, err)
	}
	if got != want {
		t.Fatalf("Claim(%.20s, %s) = %v, want %v", id, token, got, want)
	}
}
