package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

func TestDeliverySectionAndOverrides(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, `
[delivery]
breaker_failures = 4
probe_interval = "5s"
rate_limit = 20
max_concurrent = 8
log = "all"
log_retention = "48h"
[[delivery.endpoints]]
endpoint = "https://Hooks.Example.com/ignored/path"
breaker_failures = 2
rate_limit = 5
rate_burst = 1
[[delivery.endpoints]]
endpoint = "smtp://mail.example.com:587"
max_concurrent = 2
`)
	cfg, err := config.Load(p, []string{"FRAISEQL_DELIVERY_RATE_BURST=40", "FRAISEQL_DELIVERY_LOG=failures"})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Delivery
	if d.Log != "failures" || d.LogRetention != 48*time.Hour {
		t.Errorf("log %q retention %v, want the environment's failures and 48h", d.Log, d.LogRetention)
	}
	if got, want := d.Defaults(), (config.EndpointLimits{BreakerFailures: 4, ProbeInterval: 5 * time.Second, RateLimit: 20, RateBurst: 40, MaxConcurrent: 8}); got != want {
		t.Errorf("Defaults = %+v, want %+v", got, want)
	}
	over := d.Overrides()
	want := map[string]config.EndpointLimits{
		"https://hooks.example.com:443": {BreakerFailures: 2, ProbeInterval: 5 * time.Second, RateLimit: 5, RateBurst: 1, MaxConcurrent: 8},
		"smtp://mail.example.com:587":   {BreakerFailures: 4, ProbeInterval: 5 * time.Second, RateLimit: 20, RateBurst: 40, MaxConcurrent: 2},
	}
	if len(over) != len(want) {
		t.Fatalf("Overrides = %+v, want %+v", over, want)
	}
	for k, w := range want {
		if over[k] != w {
			t.Errorf("Overrides[%s] = %+v, want %+v", k, over[k], w)
		}
	}
}

func TestDeliveryDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Delivery
	if d.Log != "failures" || d.BreakerFailures < 1 || d.ProbeInterval <= 0 || d.RateLimit != 0 || d.MaxConcurrent != 0 || d.LogRetention < 24*time.Hour {
		t.Errorf("delivery defaults %+v: want failures logged, a breaker, no rate or concurrency limit, days of retention", d)
	}
	if l := d.Defaults(); l.RateBurst != 0 {
		t.Errorf("burst without a rate = %d", l.RateBurst)
	}
}

func TestDeliveryConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"bad log mode", "[delivery]\nlog = \"some\"", []string{"delivery.log", "failures, all, off"}},
		{"negative breaker", "[delivery]\nbreaker_failures = -1", []string{"delivery.breaker_failures"}},
		{"short probe", "[delivery]\nprobe_interval = \"1ms\"", []string{"delivery.probe_interval"}},
		{"negative rate", "[delivery]\nrate_limit = -5", []string{"delivery.rate_limit"}},
		{"short retention", "[delivery]\nlog_retention = \"1s\"", []string{"delivery.log_retention"}},
		{"endpoint missing", "[[delivery.endpoints]]\nrate_limit = 1", []string{"delivery.endpoints[0].endpoint", "required"}},
		{"endpoint not a url", "[[delivery.endpoints]]\nendpoint = \"https://\"", []string{"delivery.endpoints[0].endpoint"}},
		{"endpoint twice", "[[delivery.endpoints]]\nendpoint = \"https://a.example.com\"\n[[delivery.endpoints]]\nendpoint = \"https://a.example.com:443/x\"",
			[]string{"delivery.endpoints[1].endpoint", "delivery.endpoints[0]"}},
		{"endpoint negative", "[[delivery.endpoints]]\nendpoint = \"https://a.example.com\"\nmax_concurrent = -1", []string{"delivery.endpoints[0].max_concurrent"}},
		{"endpoint unknown key", "[[delivery.endpoints]]\nendpoint = \"https://a.example.com\"\nrate = 1", []string{"rate", "unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(writeConfig(t, tt.body), nil)
			var ce *config.ConfigError
			if err == nil || !errors.As(err, &ce) {
				t.Fatalf("error %v, want a ConfigError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
