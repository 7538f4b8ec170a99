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
// MaxAttempts counts the first attempt.
type RetryPolicy struct {
	MaxAttempts  int
	InitialDelay time.Duration
	MaxDelay     time.Duration
	Backoff      Backoff
}

// DefaultRetryPolicy is used when an observer sets none.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:  5,
	InitialDelay: 100 * time.Millisecond,
	MaxDelay:     30 * time.Second,
	Backoff:      BackoffExponential,
}

// Validate reports the first invalid field.
func (p RetryPolicy) Validate() error {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("max_attempts must be at least 1, got %d", p.MaxAttempts)
	case p.InitialDelay < 0:
		return fmt.Errorf("initial_delay must not be negative, got %s", p.InitialDelay)
	case p.MaxDelay < p.InitialDelay:
		return fmt.Errorf("max_delay (%s) must not be less than initial_delay (%s)", p.MaxDelay, p.InitialDelay)
	}
	switch p.Backoff {
	case BackoffExponential, BackoffLinear, BackoffFixed:
		return nil
	default:
		return fmt.Errorf("backoff must be exponential, linear or fixed, got %q", p.Backoff)
	}
}

// ShouldRetry reports whether another attempt follows failed attempt number
// attempt (1-based).
func (p RetryPolicy) ShouldRetry(attempt int) bool { return attempt < p.MaxAttempts }

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
