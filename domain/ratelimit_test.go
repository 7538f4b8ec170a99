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
	// The refused take reserved the token due at 100ms: the next one is
	// the one after it.
	if w := b.Take(start.Add(50 * time.Millisecond)); w != 150*time.Millisecond {
		t.Fatalf("take half-way waits %v, want 150ms (behind the reservation at 100ms)", w)
	}
	if w := b.Take(start.Add(100 * time.Millisecond)); w != 0 {
		t.Fatalf("take at the first reservation waits %v", w)
	}
	if w := b.Take(start.Add(200 * time.Millisecond)); w != 0 {
		t.Fatalf("take at the second reservation waits %v", w)
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

// Many attempts refused together come back one after the other at the
// rate, even when each comes back a little late: the rate is kept, not
// lost to a stampede of retries.
func TestTokenBucketSpacesRefusedAttempts(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const rate, n = 50, 400
	b := TokenBucket{Rate: rate, Burst: 1}
	type pending struct{ at time.Time }
	var queue []pending
	for range n {
		queue = append(queue, pending{start})
	}
	var admitted []time.Time
	takes := 0
	for len(queue) > 0 {
		// The earliest comes back first, 3ms late (a busy scheduler).
		i := 0
		for j := range queue {
			if queue[j].at.Before(queue[i].at) {
				i = j
			}
		}
		p := queue[i]
		queue = append(queue[:i], queue[i+1:]...)
		takes++
		if w := b.Take(p.at); w == 0 {
			admitted = append(admitted, p.at)
		} else {
			queue = append(queue, pending{p.at.Add(w + 3*time.Millisecond)})
		}
	}
	got := float64(n-1) / admitted[n-1].Sub(admitted[0]).Seconds()
	if got < rate*0.97 || got > rate*1.03 {
		t.Errorf("admitted at %.1f/s, want %d/s", got, rate)
	}
	if takes > 2*n+1 {
		t.Errorf("%d takes for %d attempts: refused attempts came back more than once", takes, n)
	}
	for i := 1; i < len(admitted); i++ {
		if d := admitted[i].Sub(admitted[i-1]); d < 0 {
			t.Fatalf("admitted out of time order at %d", i)
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
	if w := b.Wait(start.Add(400 * time.Millisecond)); w != 600*time.Millisecond {
		t.Fatalf("a second Wait = %v, want 600ms: Wait reserved", w)
	}
}

func TestTokenBucketReservationsAreBounded(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := TokenBucket{Rate: 1, Burst: 1}
	for range MaxReservations + 100 {
		b.Take(start)
	}
	if len(b.reserved) != MaxReservations {
		t.Errorf("%d reservations kept, want at most %d", len(b.reserved), MaxReservations)
	}
}

// Attempts whose reservations matured while they were held up (a pause)
// and that come back together are spaced by the gate: at most the burst
// at once, then one per interval; the endpoint never sees more than the
// rate plus the burst in any second.
func TestTokenBucketLateReturnsAreSpaced(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const rate = 50
	b := TokenBucket{Rate: rate, Burst: 1}
	if w := b.Take(start); w != 0 {
		t.Fatalf("first take waits %v", w)
	}
	var waits []time.Duration
	for range 10 {
		waits = append(waits, b.Take(start))
	}
	// Everyone was held up by a 500ms pause and comes back at once; each
	// retries at the wait it is given.
	type pending struct{ at time.Time }
	queue := make([]pending, len(waits))
	for i := range queue {
		queue[i] = pending{start.Add(500 * time.Millisecond)}
	}
	var admitted []time.Time
	for steps := 0; len(queue) > 0; steps++ {
		if steps > 1000 {
			t.Fatal("attempts never admitted")
		}
		i := 0
		for j := range queue {
			if queue[j].at.Before(queue[i].at) {
				i = j
			}
		}
		p := queue[i]
		queue = append(queue[:i], queue[i+1:]...)
		if w := b.Take(p.at); w == 0 {
			admitted = append(admitted, p.at)
		} else {
			queue = append(queue, pending{p.at.Add(w)})
		}
	}
	for i := 1; i < len(admitted); i++ {
		if d := admitted[i].Sub(admitted[i-1]); d < time.Second/rate-time.Microsecond {
			t.Fatalf("admissions %d and %d only %v apart, want at least %v (burst 1)", i-1, i, d, time.Second/rate)
		}
	}
}
