package domain

import "time"

// TokenBucket limits a rate: Rate tokens per second flow into a bucket
// of Burst tokens (at least one); each admitted attempt takes one. An
// attempt that finds no token reserves the next one: Take deducts it (the
// bucket may run below zero) and says how long until it exists, so that
// attempts sent away together come back one after the other at the rate
// instead of all at once. The first attempt at or after a reserved time
// (the one that reserved it, or any other) uses that reservation. Bounded:
// at most MaxReservations are outstanding (further attempts are told the
// wait without reserving). It takes time as a value and never blocks. Not
// safe for concurrent use.
type TokenBucket struct {
	Rate  float64 // tokens per second; not positive means unlimited
	Burst int

	tokens   float64
	last     time.Time
	reserved []time.Time // when each reserved token exists, ascending
}

// MaxReservations bounds the reservations a bucket keeps.
const MaxReservations = 10000

// Take admits one attempt at now and returns 0, or reserves the next
// token and returns how long until it exists (come back then).
func (b *TokenBucket) Take(now time.Time) time.Duration {
	if b.Rate <= 0 {
		return 0
	}
	b.refill(now)
	if len(b.reserved) > 0 && !now.Before(b.reserved[0]) {
		b.popReservation()
		return 0
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	if len(b.reserved) >= MaxReservations {
		return b.until(now, b.tokens-1) // the wait, without reserving
	}
	b.tokens--
	wait := b.until(now, b.tokens)
	b.reserved = append(b.reserved, now.Add(wait))
	return wait
}

// Wait returns how long until an attempt at now would be admitted (0: at
// once), taking and reserving nothing.
func (b *TokenBucket) Wait(now time.Time) time.Duration {
	if b.Rate <= 0 {
		return 0
	}
	b.refill(now)
	if len(b.reserved) > 0 && !now.Before(b.reserved[0]) || b.tokens >= 1 {
		return 0
	}
	if len(b.reserved) > 0 {
		return b.reserved[0].Sub(now)
	}
	return b.until(now, b.tokens-1)
}

// until is how long until a bucket holding tokens at now holds zero: the
// moment a token taken at that level exists.
func (b *TokenBucket) until(_ time.Time, tokens float64) time.Duration {
	if tokens >= 0 {
		return 0
	}
	return max(time.Duration(-tokens/b.Rate*float64(time.Second)), time.Nanosecond)
}

func (b *TokenBucket) refill(now time.Time) {
	burst := float64(max(b.Burst, 1))
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
	}
	if now.After(b.last) {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*b.Rate)
		b.last = now
	}
}

func (b *TokenBucket) popReservation() {
	b.reserved[0] = time.Time{}
	b.reserved = b.reserved[1:]
	if len(b.reserved) == 0 {
		b.reserved = nil // let the backing array go
	}
}
