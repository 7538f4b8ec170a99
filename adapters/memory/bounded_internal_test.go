package memory

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// TestDeduplicatorBoundInvariants drives a small deduplicator with random
// claims, renewals, done marks and releases under mixed leases and
// windows, and checks after every call that the table keeps its accounts
// and bounds, that its queues stay proportional to it, and that no claim
// a holder still holds was dropped for room.
func TestDeduplicatorBoundInvariants(t *testing.T) {
	t.Parallel()
	const maxEntries, maxBytes = 40, 40*(entryOverhead+12) - 300
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := NewDeduplicator(func() time.Time { return now }, WithMaxEntries(maxEntries), WithMaxBytes(maxBytes))
	rng := rand.New(rand.NewPCG(1, 2))
	type held struct {
		token string
		until time.Time
	}
	holds := map[string]held{} // the claims the test was granted and still holds
	tokens := []string{"a", "bb", "cccc"}
	for step := range 50_000 {
		now = now.Add(time.Duration(rng.IntN(300)) * time.Millisecond)
		id := fmt.Sprint("ev-", rng.IntN(120))
		tok := tokens[rng.IntN(len(tokens))]
		switch op := rng.IntN(10); {
		case op < 5:
			lease := time.Duration(1+rng.IntN(20)) * time.Second
			res, err := d.Claim(t.Context(), id, tok, lease)
			if err != nil {
				t.Fatalf("step %d: Claim: %v", step, err)
			}
			if h, ok := holds[id]; ok && now.Before(h.until) && h.token != tok && res != ports.ClaimBusy && res != ports.ClaimDone {
				t.Fatalf("step %d: %s claimed %s held by %s until %v", step, tok, id, h.token, h.until)
			}
			if res == ports.ClaimAcquired {
				holds[id] = held{tok, now.Add(lease)}
			}
		case op < 8:
			if err := d.MarkDone(t.Context(), id, time.Duration(1+rng.IntN(60))*time.Second); err != nil {
				t.Fatalf("step %d: MarkDone: %v", step, err)
			}
			delete(holds, id)
		default:
			if err := d.Release(t.Context(), id, tok); err != nil {
				t.Fatalf("step %d: Release: %v", step, err)
			}
			if h, ok := holds[id]; ok && h.token == tok {
				delete(holds, id)
			}
		}
		checkTable(t, step, &d.table)
		for id, h := range holds {
			if !now.Before(h.until) {
				delete(holds, id)
				continue
			}
			if s, ok := d.table.get(id); !ok || s.val.done || s.val.token != h.token {
				t.Fatalf("step %d: %s's live claim on %s is gone: %+v", step, h.token, id, s)
			}
		}
	}
	if s := d.Stats(); s.Evicted == 0 || s.Refused == 0 {
		t.Fatalf("Stats = %+v: the run never filled the table", s)
	}
}

// checkTable fails the test when t's accounts disagree with its map, its
// bounds are exceeded, or an entry is not in its class's queue exactly
// once.
func checkTable[V any](t *testing.T, step int, tb *table[V]) {
	t.Helper()
	var counts [numClasses]int
	var bytes int64
	for key, s := range tb.entries {
		if s.seq == 0 {
			t.Fatalf("step %d: placeholder left for %q", step, key)
		}
		counts[s.class]++
		bytes += s.size
	}
	if counts != tb.counts || bytes != tb.bytes {
		t.Fatalf("step %d: accounts %v, %d bytes; map holds %v, %d bytes", step, tb.counts, tb.bytes, counts, bytes)
	}
	if tb.len() > tb.lim.maxEntries || tb.bytes > tb.lim.maxBytes {
		t.Fatalf("step %d: %d entries of %d bytes, bounds %d and %d", step, tb.len(), tb.bytes, tb.lim.maxEntries, tb.lim.maxBytes)
	}
	queued := map[string]int{}
	for c := range numClasses {
		q := &tb.queues[c]
		if q.len() > 2*counts[c]+minCompact+1 {
			t.Fatalf("step %d: queue %d holds %d items for %d entries", step, c, q.len(), counts[c])
		}
		for _, it := range q.items[q.head:] {
			if s, cur := tb.live(it); cur {
				if s.class != c {
					t.Fatalf("step %d: %q of class %d queued in %d", step, it.key, s.class, c)
				}
				queued[it.key]++
			}
		}
	}
	for key := range tb.entries {
		if queued[key] != 1 {
			t.Fatalf("step %d: %q queued %d times", step, key, queued[key])
		}
	}
}
