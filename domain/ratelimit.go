package domain

import "time"

// TokenBucket limits a rate: Rate tokens per second flow into a bucket
// of Burst tokens (at least one); each admitted attempt takes one. An
// attempt that finds no token reserves the next one and is told how long
// until it exists, so that attempts sent away together come back one
// after the other at the rate instead of all at once. The first attempt at
// or after a reserved time (the one that reserved it, or any other) uses
// that reservation. A gate of its own (never reserved) still admits every
// attempt, reserved or not, so attempts that come back late together
// never exceed Rate and Burst at the endpoint: late ones are spaced, not
// let through at once. Bounded: at most MaxReservations are outstanding
// (further attempts are told the wait without reserving).
//
// It is the generic cell rate algorithm on integer times (no rounding
// drift): a token is due every 1/Rate, Burst of them may be taken early.
// It takes time as a value and never blocks. Not safe for concurrent use.
type TokenBucket struct {
	Rate  float64 // tokens per second; not positive means unlimited
	Burst int

	next     time.Time   // when the next unreserved token is due
	gate     time.Time   // when the gate's next token is due
	reserved []time.Time // when each reserved token is due, ascending
}

// MaxReservations bounds the reservations a bucket keeps.
const MaxReservations = 10000

// Take admits one attempt at now and returns 0, or reserves the next
// token and returns how long until it is due (come back then).
func (b *TokenBucket) Take(now time.Time) time.Duration {
	if b.Rate <= 0 {
		return 0
	}
	interval, early := b.interval(), b.early()
	matured := len(b.reserved) > 0 && !now.Before(b.reserved[0])
	free := !now.Before(b.next.Add(-early))
	if matured || free {
		if wait := b.gate.Add(-early).Sub(now); wait > 0 {
			return wait // the endpoint had its share just now
		}
		b.gate = later(b.gate, now).Add(interval)
		if matured {
			b.reserved[0] = time.Time{}
			b.reserved = b.reserved[1:]
			if len(b.reserved) == 0 {
				b.reserved = nil // let the backing array go
			}
		} else {
			b.next = later(b.next, now).Add(interval)
		}
		return 0
	}
	due := b.next.Add(-early)
	if len(b.reserved) >= MaxReservations {
		return due.Sub(now) // the wait, without reserving
	}
	b.reserved = append(b.reserved, due)
	b.next = b.next.Add(interval)
	return due.Sub(now)
}

// Wait returns how long until an attempt at now would be admitted (0: at
// once), taking and reserving nothing.
func (b *TokenBucket) Wait(now time.Time) time.Duration {
	if b.Rate <= 0 {
		return 0
	}
	early := b.early()
	due := b.next.Add(-early)
	if len(b.reserved) > 0 {
		due = b.reserved[0]
	}
	return max(due.Sub(now), b.gate.Add(-early).Sub(now), 0)
}

// interval is the time between two tokens.
func (b *TokenBucket) interval() time.Duration {
	return max(time.Duration(float64(time.Second)/b.Rate), time.Nanosecond)
}

// early is how far ahead of its time a token may be taken: the burst.
func (b *TokenBucket) early() time.Duration {
	return time.Duration(max(b.Burst, 1)-1) * b.interval()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
