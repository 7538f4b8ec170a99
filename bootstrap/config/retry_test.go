package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestRetryDefaultsRetryForADay(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Retry.Policy()
	if p != domain.DefaultRetryPolicy {
		t.Fatalf("[retry] defaults = %+v, want domain.DefaultRetryPolicy %+v", p, domain.DefaultRetryPolicy)
	}
	if p.MaxAge < 24*time.Hour || p.MaxAttempts != 0 || p.MaxDelay != time.Hour || p.InitialDelay != time.Second || p.InMemoryAttempts != 3 {
		t.Errorf("default policy %+v does not retry for a day from 1s, capped at 1h, 3 in memory", p)
	}
}

// TestRetrySectionAndObserverOverrides checks that [retry] sets every
// observer's policy, that [observers.retry] overrides it key by key
// (max_age and in_memory_attempts included), and that FRAISEQL_RETRY_*
// variables override the file.
func TestRetrySectionAndObserverOverrides(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, `
topology = "memory"
[retry]
max_age = "2h"
initial_delay = "2s"
max_delay = "10m"
backoff = "linear"
[[observers]]
name = "inherits"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "log"
[[observers]]
name = "overrides"
entity = "Order"
events = ["INSERT"]
[observers.retry]
max_attempts = 5
max_age = "30m"
in_memory_attempts = 1
backoff = "fixed"
[[observers.actions]]
type = "log"
`)
	cfg, err := config.Load(p, []string{"FRAISEQL_RETRY_IN_MEMORY_ATTEMPTS=4", "FRAISEQL_RETRY_MAX_DELAY=20m"})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := config.LoadObservers(cfg, nil, config.Checks{})
	if err != nil {
		t.Fatal(err)
	}
	want := []domain.RetryPolicy{
		{MaxAttempts: 0, InitialDelay: 2 * time.Second, MaxDelay: 20 * time.Minute, MaxAge: 2 * time.Hour, Backoff: domain.BackoffLinear, InMemoryAttempts: 4},
		{MaxAttempts: 5, InitialDelay: 2 * time.Second, MaxDelay: 20 * time.Minute, MaxAge: 30 * time.Minute, Backoff: domain.BackoffFixed, InMemoryAttempts: 1},
	}
	for i, o := range obs {
		if o.Retry != want[i] {
			t.Errorf("observer %s retry = %+v, want %+v", o.Name, o.Retry, want[i])
		}
	}
}

func TestRetryConfigErrors(t *testing.T) {
	t.Parallel()
	observer := func(retry string) string {
		return "topology = \"memory\"\n[[observers]]\nname = \"o\"\nentity = \"Order\"\nevents = [\"INSERT\"]\n[observers.retry]\n" +
			retry + "\n[[observers.actions]]\ntype = \"log\"\n"
	}
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"global unbounded", "[retry]\nmax_age = \"0s\"\nmax_attempts = 0", []string{"retry.max_attempts: or max_age must bound"}},
		{"global max delay below initial", "[retry]\ninitial_delay = \"10s\"\nmax_delay = \"1s\"", []string{"retry.max_delay: (1s) must not be less than initial_delay (10s)"}},
		{"global in-memory zero", "[retry]\nin_memory_attempts = 0", []string{"retry.in_memory_attempts", "at least 1"}},
		{"global negative max age", "[retry]\nmax_age = \"-1h\"", []string{"retry.max_age: must not be negative"}},
		{"global bad backoff", "[retry]\nbackoff = \"random\"", []string{"retry.backoff: must be", "random"}},
		{"observer unbounded", observer("max_age = \"0s\""), []string{"observers[0]", "max_attempts or max_age"}},
		{"observer in-memory zero", observer("in_memory_attempts = 0"), []string{"observers[0]", "in_memory_attempts"}},
		{"observer negative attempts", observer("max_attempts = -1"), []string{"observers[0]", "max_attempts"}},
		{"observer unknown key", observer("max_ages = \"1h\""), []string{"max_ages", "unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load(writeConfig(t, tt.body), nil)
			if err == nil {
				_, err = config.LoadObservers(cfg, nil, config.Checks{})
			}
			if err == nil {
				t.Fatal("no error")
			}
			var ce *config.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a ConfigError: %v", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
