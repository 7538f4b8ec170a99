package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// RetrySection is [retry]: the retry policy of every observer that does
// not set its own ([observers.retry] overrides it key by key). The
// defaults retry for at least 24 hours after the first failure,
// exponentially from about a second and at most an hour apart; the first
// in_memory_attempts attempts run in memory (quick retries for blips),
// later ones wait in the durable retry store so the reader moves on.
type RetrySection struct {
	// MaxAttempts counts the first attempt; 0 means no limit (max_age
	// bounds the retries).
	MaxAttempts  int           `koanf:"max_attempts"`
	InitialDelay time.Duration `koanf:"initial_delay"`
	MaxDelay     time.Duration `koanf:"max_delay"`
	// MaxAge is how long after an action's first failure it is still
	// retried; 0 means no limit (max_attempts bounds the retries).
	MaxAge           time.Duration `koanf:"max_age"`
	Backoff          string        `koanf:"backoff"`
	InMemoryAttempts int           `koanf:"in_memory_attempts"`

	// The retry runner, which runs parked actions when they are due.
	// RunnerConcurrency is how many parked items run at once;
	// PollInterval how often the store is asked for due items (parking
	// and recovered endpoints wake it at once); ClaimTTL how long a runner
	// keeps an item it took (longer than the item's actions may take).
	RunnerConcurrency int           `koanf:"runner_concurrency"`
	PollInterval      time.Duration `koanf:"poll_interval"`
	ClaimTTL          time.Duration `koanf:"claim_ttl"`
}

func defaultRetry() RetrySection {
	p := domain.DefaultRetryPolicy
	return RetrySection{
		MaxAttempts: p.MaxAttempts, InitialDelay: p.InitialDelay, MaxDelay: p.MaxDelay,
		MaxAge: p.MaxAge, Backoff: string(p.Backoff), InMemoryAttempts: p.InMemoryAttempts,
		RunnerConcurrency: 32, PollInterval: time.Second, ClaimTTL: 5 * time.Minute,
	}
}

// Policy is the section as a domain retry policy.
func (r RetrySection) Policy() domain.RetryPolicy {
	return domain.RetryPolicy{
		MaxAttempts: r.MaxAttempts, InitialDelay: r.InitialDelay, MaxDelay: r.MaxDelay,
		MaxAge: r.MaxAge, Backoff: domain.Backoff(r.Backoff), InMemoryAttempts: r.InMemoryAttempts,
	}
}

// validateRetry checks [retry].
func (c *Config) validateRetry() error {
	if c.Retry.InMemoryAttempts < 1 {
		return &ConfigError{Key: "retry.in_memory_attempts", Msg: "must be at least 1 (the first attempt)"}
	}
	if err := c.Retry.Policy().Validate(); err != nil {
		var pe *domain.RetryPolicyError
		if errors.As(err, &pe) {
			return &ConfigError{Key: "retry." + pe.Field, Msg: pe.Msg}
		}
		return &ConfigError{Key: "retry", Msg: err.Error()}
	}
	switch {
	case c.Retry.RunnerConcurrency < 1:
		return &ConfigError{Key: "retry.runner_concurrency", Msg: "must be at least 1"}
	case c.Retry.PollInterval < 10*time.Millisecond:
		return &ConfigError{Key: "retry.poll_interval", Msg: "must be at least 10ms"}
	case c.Retry.ClaimTTL < time.Second:
		return &ConfigError{Key: "retry.claim_ttl", Msg: "must be at least 1s"}
	}
	return nil
}

// applyRetry overrides the policy p with the keys an observer sets.
func applyRetry(p domain.RetryPolicy, r *RetryConfig) (domain.RetryPolicy, error) {
	if r == nil {
		return p, nil
	}
	if r.MaxAttempts != nil {
		if *r.MaxAttempts < 0 {
			return p, fmt.Errorf("max_attempts must not be negative (0 = no limit), got %d", *r.MaxAttempts)
		}
		p.MaxAttempts = *r.MaxAttempts
	}
	if r.InitialDelay != nil {
		p.InitialDelay = *r.InitialDelay
	}
	if r.MaxDelay != nil {
		p.MaxDelay = *r.MaxDelay
	}
	if r.MaxAge != nil {
		p.MaxAge = *r.MaxAge
	}
	if r.Backoff != nil {
		p.Backoff = domain.Backoff(*r.Backoff)
	}
	if r.InMemoryAttempts != nil {
		if *r.InMemoryAttempts < 1 {
			return p, fmt.Errorf("in_memory_attempts must be at least 1 (the first attempt), got %d", *r.InMemoryAttempts)
		}
		p.InMemoryAttempts = *r.InMemoryAttempts
	}
	return p, p.Validate()
}
