package domain

import (
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := TokenBucket{Rate: 10, Burst: 3}
	for i := range 3 {
		if w := b.Take(start); w != 0 {
			t.Fatalf("burst take %d waits %v", i, w)
		}
	}
	if w := b.Take(start); w != 100*time.Millisecond {
		t.Fatalf("take past the burst waits %v, want 100ms", w)
	}
	if w := b.Take(start.Add(50 * time.Millisecond)); w != 50*time.Millisecond {
		t.Fatalf("take half-way waits %v, want 50ms (nothing taken by the refused take)", w)
	}
	if w := b.Take(start.Add(100 * time.Millisecond)); w != 0 {
		t.Fatalf("take after 100ms waits %v", w)
	}
	// Over a simulated minute, one taker retrying at each answer gets the
	// rate, within one token.
	now, n := start.Add(time.Second), 0
	end := now.Add(time.Minute)
	for now.Before(end) {
		if w := b.Take(now); w == 0 {
			n++
		} else {
			now = now.Add(w)
		}
	}
	if n < 600 || n > 604 {
		t.Errorf("%d takes in a minute at 10/s with burst 3, want 600 (+ the burst)", n)
	}
	unlimited := TokenBucket{}
	for range 1000 {
		if w := unlimited.Take(start); w != 0 {
			t.Fatalf("an unlimited bucket waits %v", w)
		}
	}
}

func TestTokenBucketWaitTakesNothing(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := TokenBucket{Rate: 1, Burst: 1}
	for range 3 {
		if w := b.Wait(start); w != 0 {
			t.Fatalf("Wait on a full bucket = %v", w)
		}
	}
	if w := b.Take(start); w != 0 {
		t.Fatalf("Take after Waits = %v: Wait took a token", w)
	}
	if w := b.Wait(start.Add(400 * time.Millisecond)); w != 600*time.Millisecond {
		t.Fatalf("Wait on an empty bucket = %v, want 600ms", w)
	}
}
