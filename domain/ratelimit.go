package domain

import "time"

// TokenBucket limits a rate: Rate tokens per second flow into a bucket
// of Burst tokens (at least one); each admitted attempt takes one. It
// takes time as a value and never blocks. Not safe for concurrent use.
type TokenBucket struct {
	Rate  float64 // tokens per second; not positive means unlimited
	Burst int

	tokens float64
	last   time.Time
}

// Take admits one attempt at now and returns 0, or returns how long until
// a token is available (nothing is taken then).
func (b *TokenBucket) Take(now time.Time) time.Duration {
	if wait := b.Wait(now); wait > 0 {
		return wait
	}
	if b.Rate > 0 {
		b.tokens--
	}
	return 0
}

// Wait returns how long until a token is available at now (0: one is),
// taking nothing.
func (b *TokenBucket) Wait(now time.Time) time.Duration {
	if b.Rate <= 0 {
		return 0
	}
	burst := float64(max(b.Burst, 1))
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
	}
	if now.After(b.last) {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*b.Rate)
		b.last = now
	}
	if b.tokens >= 1 {
		return 0
	}
	return max(time.Duration((1-b.tokens)/b.Rate*float64(time.Second)), time.Nanosecond)
}
