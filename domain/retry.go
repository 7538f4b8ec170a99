package domain

import (
	"fmt"
	"time"
)

// Backoff names how retry delays grow.
type Backoff string

// The backoff strategies.
const (
	BackoffExponential Backoff = "exponential"
	BackoffLinear      Backoff = "linear"
	BackoffFixed       Backoff = "fixed"
)

// RetryPolicy decides how often and when a failed action is tried again.
// An action is retried while both bounds allow it: MaxAttempts (counting
// the first attempt; 0 means no limit) and MaxAge (the time since the
// action's first failure; 0 means no limit). At least one bound is set.
type RetryPolicy struct {
	MaxAttempts  int
	InitialDelay time.Duration
	MaxDelay     time.Duration
	// MaxAge bounds the retries in time: a failure later than MaxAge after
	// the first failure is final, so the last attempt happens at or after
	// MaxAge (retries last at least MaxAge, give or take one gap).
	MaxAge  time.Duration
	Backoff Backoff
	// InMemoryAttempts is how many attempts run in memory (quick retries
	// for blips) before an unfinished action is parked in the durable
	// retry store with its next due time. 0 keeps every attempt in memory
	// (no durable parking).
	InMemoryAttempts int
}

// DefaultRetryPolicy is used when an observer sets none: retries for at
// least 24 hours after the first failure, exponentially from about one
// second and at most an hour apart, the first three in memory.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:      0,
	InitialDelay:     time.Second,
	MaxDelay:         time.Hour,
	MaxAge:           24 * time.Hour,
	Backoff:          BackoffExponential,
	InMemoryAttempts: 3,
}

// Validate reports the first invalid field as a *RetryPolicyError.
func (p RetryPolicy) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &RetryPolicyError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case p.MaxAttempts < 0:
		return bad("max_attempts", "must not be negative, got %d", p.MaxAttempts)
	case p.MaxAge < 0:
		return bad("max_age", "must not be negative, got %s", p.MaxAge)
	case p.MaxAttempts == 0 && p.MaxAge == 0:
		return bad("max_attempts", "or max_age must bound the retries (both are unlimited)")
	case p.InMemoryAttempts < 0:
		return bad("in_memory_attempts", "must not be negative, got %d", p.InMemoryAttempts)
	case p.InitialDelay < 0:
		return bad("initial_delay", "must not be negative, got %s", p.InitialDelay)
	case p.MaxDelay < p.InitialDelay:
		return bad("max_delay", "(%s) must not be less than initial_delay (%s)", p.MaxDelay, p.InitialDelay)
	}
	switch p.Backoff {
	case BackoffExponential, BackoffLinear, BackoffFixed:
		return nil
	default:
		return bad("backoff", "must be exponential, linear or fixed, got %q", p.Backoff)
	}
}

// RetryPolicyError is an invalid field of a RetryPolicy, named as its
// configuration key (max_attempts, max_age, backoff, ...).
type RetryPolicyError struct {
	Field string
	Msg   string
}

func (e *RetryPolicyError) Error() string { return e.Field + " " + e.Msg }

// ShouldRetry reports whether another attempt follows failed attempt number
// attempt (1-based), which failed sinceFirst after the action's first
// failure (0 for the first failure).
func (p RetryPolicy) ShouldRetry(attempt int, sinceFirst time.Duration) bool {
	if p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
		return false
	}
	return p.MaxAge == 0 || sinceFirst < p.MaxAge
}

// Parks reports whether an action that failed attempt number attempt and
// will be retried waits in the durable retry store (true) or in memory.
func (p RetryPolicy) Parks(attempt int) bool {
	return p.InMemoryAttempts > 0 && attempt >= p.InMemoryAttempts
}

// Limits describes the bounds for logs: "5 attempts", "24h0m0s",
// "5 attempts or 24h0m0s".
func (p RetryPolicy) Limits() string {
	switch {
	case p.MaxAttempts > 0 && p.MaxAge > 0:
		return fmt.Sprintf("%d attempts or %s", p.MaxAttempts, p.MaxAge)
	case p.MaxAttempts > 0:
		return fmt.Sprintf("%d attempts", p.MaxAttempts)
	}
	return p.MaxAge.String()
}

// Delay is the wait before the attempt that follows failed attempt number
// attempt (1-based). jitter in [0,1) spreads exponential delays over
// [d/2, d) ("equal jitter"); linear and fixed delays ignore it. The result
// never exceeds MaxDelay.
func (p RetryPolicy) Delay(attempt int, jitter float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	var d time.Duration
	switch p.Backoff {
	case BackoffFixed:
		d = p.InitialDelay
	case BackoffLinear:
		d = p.InitialDelay * time.Duration(attempt)
		if attempt > 0 && d/time.Duration(attempt) != p.InitialDelay { // overflow
			d = p.MaxDelay
		}
	default:
		d = p.InitialDelay
		for i := 1; i < attempt && d > 0 && d < p.MaxDelay; i++ {
			d *= 2
		}
		if d > p.MaxDelay || d < 0 {
			d = p.MaxDelay
		}
		if jitter < 0 {
			jitter = 0
		} else if jitter >= 1 {
			jitter = 0.999999
		}
		d = d/2 + time.Duration(float64(d/2)*jitter)
	}
	if d > p.MaxDelay {
		d = p.MaxDelay
	}
	return d
}
