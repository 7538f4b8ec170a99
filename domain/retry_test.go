package domain

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestRetryPolicyValidate(t *testing.T) {
	t.Parallel()
	valid := RetryPolicy{MaxAttempts: 3, InitialDelay: time.Second, MaxDelay: time.Minute, Backoff: BackoffLinear}
	tests := []struct {
		name        string
		mutate      func(p *RetryPolicy)
		errMentions string
	}{
		{name: "valid", mutate: func(*RetryPolicy) {}},
		{name: "single attempt", mutate: func(p *RetryPolicy) { p.MaxAttempts = 1 }},
		{name: "zero delays", mutate: func(p *RetryPolicy) { p.InitialDelay, p.MaxDelay = 0, 0 }},
		{name: "equal delays", mutate: func(p *RetryPolicy) { p.MaxDelay = p.InitialDelay }},
		{name: "exponential", mutate: func(p *RetryPolicy) { p.Backoff = BackoffExponential }},
		{name: "fixed", mutate: func(p *RetryPolicy) { p.Backoff = BackoffFixed }},
		{name: "zero attempts and no max age", mutate: func(p *RetryPolicy) { p.MaxAttempts = 0 }, errMentions: "max_attempts or max_age"},
		{name: "unlimited attempts within a max age", mutate: func(p *RetryPolicy) { p.MaxAttempts, p.MaxAge = 0, time.Hour }},
		{name: "both bounds", mutate: func(p *RetryPolicy) { p.MaxAge = time.Hour }},
		{name: "negative max age", mutate: func(p *RetryPolicy) { p.MaxAge = -time.Second }, errMentions: "max_age"},
		{name: "in-memory attempts", mutate: func(p *RetryPolicy) { p.InMemoryAttempts = 3 }},
		{name: "negative in-memory attempts", mutate: func(p *RetryPolicy) { p.InMemoryAttempts = -1 }, errMentions: "in_memory_attempts"},
		{name: "negative attempts", mutate: func(p *RetryPolicy) { p.MaxAttempts = -2 }, errMentions: "max_attempts"},
		{name: "negative initial delay", mutate: func(p *RetryPolicy) { p.InitialDelay = -time.Second }, errMentions: "initial_delay"},
		{name: "max below initial", mutate: func(p *RetryPolicy) { p.MaxDelay = time.Millisecond }, errMentions: "max_delay"},
		{name: "empty backoff", mutate: func(p *RetryPolicy) { p.Backoff = "" }, errMentions: "backoff"},
		{name: "unknown backoff", mutate: func(p *RetryPolicy) { p.Backoff = "fibonacci" }, errMentions: "fibonacci"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := valid
			tt.mutate(&p)
			err := p.Validate()
			if tt.errMentions == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", p, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want an error naming %q", p, tt.errMentions)
			}
			if !strings.Contains(err.Error(), tt.errMentions) {
				t.Errorf("error %q does not name %q", err, tt.errMentions)
			}
		})
	}
	if err := DefaultRetryPolicy.Validate(); err != nil {
		t.Errorf("DefaultRetryPolicy is invalid: %v", err)
	}
}

func TestRetryPolicyDelay(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	fixed := RetryPolicy{MaxAttempts: 10, InitialDelay: 250 * ms, MaxDelay: time.Second, Backoff: BackoffFixed}
	linear := RetryPolicy{MaxAttempts: 10, InitialDelay: 100 * ms, MaxDelay: 350 * ms, Backoff: BackoffLinear}
	expo := RetryPolicy{MaxAttempts: 10, InitialDelay: 100 * ms, MaxDelay: time.Second, Backoff: BackoffExponential}
	tests := []struct {
		name    string
		policy  RetryPolicy
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{name: "fixed first", policy: fixed, attempt: 1, want: 250 * ms},
		{name: "fixed later", policy: fixed, attempt: 7, want: 250 * ms},
		{name: "fixed ignores jitter", policy: fixed, attempt: 2, jitter: 0.9, want: 250 * ms},
		{name: "linear 1", policy: linear, attempt: 1, want: 100 * ms},
		{name: "linear 2", policy: linear, attempt: 2, want: 200 * ms},
		{name: "linear 3", policy: linear, attempt: 3, jitter: 0.7, want: 300 * ms},
		{name: "linear capped", policy: linear, attempt: 4, want: 350 * ms},
		{name: "linear attempt 1000 capped", policy: linear, attempt: 1000, want: 350 * ms},
		{name: "linear huge attempt does not overflow", policy: linear, attempt: math.MaxInt, want: 350 * ms},
		{name: "attempt below 1 counts as 1", policy: linear, attempt: 0, want: 100 * ms},
		{name: "exponential 1 no jitter", policy: expo, attempt: 1, want: 50 * ms},
		{name: "exponential 2 no jitter", policy: expo, attempt: 2, want: 100 * ms},
		{name: "exponential 3 no jitter", policy: expo, attempt: 3, want: 200 * ms},
		{name: "exponential 4 half jitter", policy: expo, attempt: 4, jitter: 0.5, want: 600 * ms},
		{name: "exponential capped", policy: expo, attempt: 5, want: 500 * ms},
		{name: "exponential attempt 1000 capped", policy: expo, attempt: 1000, want: 500 * ms},
		{name: "exponential huge max delay does not overflow", policy: RetryPolicy{MaxAttempts: 2, InitialDelay: time.Second, MaxDelay: math.MaxInt64, Backoff: BackoffExponential}, attempt: 1000, want: math.MaxInt64 / 2},
		{name: "exponential negative jitter treated as 0", policy: expo, attempt: 2, jitter: -3, want: 100 * ms},
		{name: "exponential zero delay stays zero", policy: RetryPolicy{MaxAttempts: 2, MaxDelay: time.Second, Backoff: BackoffExponential}, attempt: math.MaxInt, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.policy.Delay(tt.attempt, tt.jitter); got != tt.want {
				t.Errorf("Delay(%d, %v) = %v, want %v", tt.attempt, tt.jitter, got, tt.want)
			}
		})
	}
}

func TestRetryPolicyDelayExponentialGrowthAndJitterRange(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{MaxAttempts: 20, InitialDelay: 10 * time.Millisecond, MaxDelay: 2 * time.Second, Backoff: BackoffExponential}
	tests := []struct {
		attempt int
		base    time.Duration // the delay before jitter
	}{
		{attempt: 1, base: 10 * time.Millisecond},
		{attempt: 2, base: 20 * time.Millisecond},
		{attempt: 3, base: 40 * time.Millisecond},
		{attempt: 5, base: 160 * time.Millisecond},
		{attempt: 8, base: 1280 * time.Millisecond},
		{attempt: 9, base: 2 * time.Second},
		{attempt: 64, base: 2 * time.Second},
		{attempt: 1000, base: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempt), func(t *testing.T) {
			t.Parallel()
			for _, j := range []float64{0, 0.001, 0.25, 0.5, 0.999, 0.9999999999, 1, 5} {
				got := p.Delay(tt.attempt, j)
				if got < tt.base/2 || got >= tt.base {
					t.Errorf("Delay(%d, %v) = %v, want within [%v, %v)", tt.attempt, j, got, tt.base/2, tt.base)
				}
				if got > p.MaxDelay {
					t.Errorf("Delay(%d, %v) = %v exceeds MaxDelay %v", tt.attempt, j, got, p.MaxDelay)
				}
			}
			if lo, hi := p.Delay(tt.attempt, 0), p.Delay(tt.attempt, 0.99); lo >= hi {
				t.Errorf("jitter does not spread the delay: %v (0) vs %v (0.99)", lo, hi)
			}
		})
	}
}

func TestRetryPolicyShouldRetry(t *testing.T) {
	t.Parallel()
	h := time.Hour
	tests := []struct {
		name       string
		max        int
		maxAge     time.Duration
		attempt    int
		sinceFirst time.Duration
		want       bool
	}{
		{name: "single attempt", max: 1, attempt: 1, want: false},
		{name: "first of three", max: 3, attempt: 1, want: true},
		{name: "second of three", max: 3, attempt: 2, want: true},
		{name: "third of three", max: 3, attempt: 3, want: false},
		{name: "past the limit", max: 3, attempt: 4, want: false},
		{name: "age only, young", maxAge: 24 * h, attempt: 500, sinceFirst: 23 * h, want: true},
		{name: "age only, just below", maxAge: 24 * h, attempt: 30, sinceFirst: 24*h - time.Nanosecond, want: true},
		{name: "age only, reached", maxAge: 24 * h, attempt: 30, sinceFirst: 24 * h, want: false},
		{name: "both, attempts first", max: 5, maxAge: 24 * h, attempt: 5, sinceFirst: time.Minute, want: false},
		{name: "both, age first", max: 50, maxAge: h, attempt: 5, sinceFirst: 2 * h, want: false},
		{name: "both, neither", max: 50, maxAge: h, attempt: 5, sinceFirst: time.Minute, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := RetryPolicy{MaxAttempts: tt.max, MaxAge: tt.maxAge}
			if got := p.ShouldRetry(tt.attempt, tt.sinceFirst); got != tt.want {
				t.Errorf("ShouldRetry(%d, %v) with max %d, max age %v = %v, want %v", tt.attempt, tt.sinceFirst, tt.max, tt.maxAge, got, tt.want)
			}
		})
	}
}

func TestRetryPolicyParks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		inMemory, attempt int
		want              bool
	}{
		{inMemory: 0, attempt: 1, want: false},
		{inMemory: 0, attempt: 100, want: false},
		{inMemory: 1, attempt: 1, want: true},
		{inMemory: 3, attempt: 1, want: false},
		{inMemory: 3, attempt: 2, want: false},
		{inMemory: 3, attempt: 3, want: true},
		{inMemory: 3, attempt: 9, want: true},
	}
	for _, tt := range tests {
		p := RetryPolicy{InMemoryAttempts: tt.inMemory}
		if got := p.Parks(tt.attempt); got != tt.want {
			t.Errorf("Parks(%d) with in_memory_attempts %d = %v, want %v", tt.attempt, tt.inMemory, got, tt.want)
		}
	}
}

// TestDefaultRetryScheduleOver24Hours walks the default policy's schedule
// on a simulated clock, with the jitter at both extremes and at random:
// the action is retried for at least 24 hours after its first failure,
// no gap exceeds the one-hour cap, gaps grow exponentially from about a
// second until the cap, and the first three attempts run in memory.
func TestDefaultRetryScheduleOver24Hours(t *testing.T) {
	t.Parallel()
	p := DefaultRetryPolicy
	if err := p.Validate(); err != nil {
		t.Fatalf("DefaultRetryPolicy is invalid: %v", err)
	}
	rng := uint64(42)
	random := func() float64 { // xorshift: deterministic, no math/rand in the pure core's tests
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return float64(rng%1_000_000) / 1_000_000
	}
	for _, tc := range []struct {
		name         string
		jitter       func() float64
		minN, maxN   int
		lastGapAtMin time.Duration
	}{
		{name: "no jitter", jitter: func() float64 { return 0 }, minN: 30, maxN: 60},
		{name: "full jitter", jitter: func() float64 { return 0.999 }, minN: 30, maxN: 40},
		{name: "random jitter", jitter: random, minN: 30, maxN: 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
			at := start // attempt 1 fails here: the first failure
			attempts := []time.Time{at}
			var gaps []time.Duration
			for attempt := 1; p.ShouldRetry(attempt, at.Sub(start)); attempt++ {
				gap := p.Delay(attempt, tc.jitter())
				if gap <= 0 || gap > p.MaxDelay {
					t.Fatalf("gap after attempt %d = %v, want within (0, %v]", attempt, gap, p.MaxDelay)
				}
				if parks := p.Parks(attempt); parks != (attempt >= 3) {
					t.Fatalf("Parks(%d) = %v: the first three attempts run in memory", attempt, parks)
				}
				at = at.Add(gap)
				attempts = append(attempts, at)
				gaps = append(gaps, gap)
				if len(attempts) > 10_000 {
					t.Fatal("the schedule does not end")
				}
			}
			last := attempts[len(attempts)-1].Sub(start)
			if last < 24*time.Hour || last >= 24*time.Hour+p.MaxDelay {
				t.Errorf("last attempt %v after the first failure, want within [24h, 25h)", last)
			}
			if n := len(attempts); n < tc.minN || n > tc.maxN {
				t.Errorf("%d attempts over %v, want %d to %d", n, last, tc.minN, tc.maxN)
			}
			if gaps[0] < 500*time.Millisecond || gaps[0] >= time.Second {
				t.Errorf("first gap %v, want about a second ([0.5s, 1s))", gaps[0])
			}
			// Nominal (pre-jitter) gaps double from 1s until the one-hour
			// cap; equal jitter puts each gap within [nominal/2, nominal].
			nominal := time.Second
			for i := 1; i < len(gaps); i++ {
				nominal = min(2*nominal, p.MaxDelay)
				if gaps[i] < nominal/2 || gaps[i] > nominal {
					t.Errorf("gap %d = %v, want within [%v, %v]", i+1, gaps[i], nominal/2, nominal)
				}
			}
		})
	}
}

func TestActionError(t *testing.T) {
	t.Parallel()
	cause := errors.New("boom")
	tests := []struct {
		name           string
		err            error
		wantPermanent  bool
		wantRetryAfter time.Duration
		wantMsg        string
	}{
		{name: "plain error is transient", err: cause, wantMsg: "boom"},
		{name: "nil", err: nil},
		{name: "permanent", err: Permanent(cause), wantPermanent: true, wantMsg: "permanent: boom"},
		{name: "transient", err: Transient(cause, 0), wantMsg: "transient: boom"},
		{name: "transient with retry after", err: Transient(cause, 3*time.Second), wantRetryAfter: 3 * time.Second, wantMsg: "transient: boom"},
		{name: "wrapped permanent", err: fmt.Errorf("webhook: post: %w", Permanent(cause)), wantPermanent: true, wantMsg: "webhook: post: permanent: boom"},
		{name: "wrapped twice transient", err: fmt.Errorf("a: %w", fmt.Errorf("b: %w", Transient(cause, time.Minute))), wantRetryAfter: time.Minute, wantMsg: "a: b: transient: boom"},
		{name: "joined", err: errors.Join(errors.New("other"), Permanent(cause)), wantPermanent: true},
		{name: "sentinel directly", err: ErrPermanent, wantPermanent: true},
		{name: "struct literal", err: &ActionError{Err: cause, Permanent: true, RetryAfter: time.Second}, wantPermanent: true, wantRetryAfter: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := IsPermanent(tt.err); got != tt.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.wantPermanent)
			}
			if got := RetryAfter(tt.err); got != tt.wantRetryAfter {
				t.Errorf("RetryAfter(%v) = %v, want %v", tt.err, got, tt.wantRetryAfter)
			}
			if tt.wantMsg != "" && tt.err.Error() != tt.wantMsg {
				t.Errorf("Error() = %q, want %q", tt.err.Error(), tt.wantMsg)
			}
			if tt.err != nil && tt.err != ErrPermanent && !errors.Is(tt.err, cause) {
				t.Errorf("%v does not unwrap to its cause", tt.err)
			}
		})
	}
}
