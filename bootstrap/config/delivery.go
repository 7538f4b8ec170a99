package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// DeliverySection is [delivery]: endpoint health (a circuit breaker, a
// rate limit and a concurrency cap per endpoint; [[delivery.endpoints]]
// override them for one endpoint) and the delivery log.
type DeliverySection struct {
	// BreakerFailures is how many consecutive transient failures open an
	// endpoint's circuit (0: never).
	BreakerFailures int `koanf:"breaker_failures"`
	// ProbeInterval is, while a circuit is open, the time between probes.
	ProbeInterval time.Duration `koanf:"probe_interval"`
	// RateLimit bounds attempts per second per endpoint (0: unlimited);
	// RateBurst is the burst (0: one second's worth).
	RateLimit int `koanf:"rate_limit"`
	RateBurst int `koanf:"rate_burst"`
	// MaxConcurrent bounds attempts in flight per endpoint (0: unlimited).
	MaxConcurrent int `koanf:"max_concurrent"`
	// Log is what the delivery log records: "failures" (default), "all"
	// or "off"; LogRetention is how long records are kept.
	Log          string        `koanf:"log"`
	LogRetention time.Duration `koanf:"log_retention"`
	// Endpoints override the limits above for single endpoints.
	Endpoints []EndpointConfig `koanf:"endpoints"`
}

// EndpointConfig is one [[delivery.endpoints]] entry; unset keys take the
// [delivery] values.
type EndpointConfig struct {
	// Endpoint is "scheme://host[:port]" for webhook and Slack targets
	// (a path is ignored; default ports are filled in), "smtp://host:port"
	// for email, or "<type>:<observer>/<action>" for other actions.
	Endpoint        string         `koanf:"endpoint"`
	BreakerFailures *int           `koanf:"breaker_failures"`
	ProbeInterval   *time.Duration `koanf:"probe_interval"`
	RateLimit       *int           `koanf:"rate_limit"`
	RateBurst       *int           `koanf:"rate_burst"`
	MaxConcurrent   *int           `koanf:"max_concurrent"`
}

// The delivery log modes.
const (
	DeliveryLogFailures = "failures"
	DeliveryLogAll      = "all"
	DeliveryLogOff      = "off"
)

func defaultDelivery() DeliverySection {
	return DeliverySection{BreakerFailures: 5, ProbeInterval: 10 * time.Second, Log: DeliveryLogFailures, LogRetention: 7 * 24 * time.Hour}
}

// EndpointLimits is the protection of one endpoint.
type EndpointLimits struct {
	BreakerFailures int
	ProbeInterval   time.Duration
	RateLimit       int
	RateBurst       int
	MaxConcurrent   int
}

// Defaults are the limits of endpoints without an override.
func (d DeliverySection) Defaults() EndpointLimits {
	return EndpointLimits{BreakerFailures: d.BreakerFailures, ProbeInterval: d.ProbeInterval,
		RateLimit: d.RateLimit, RateBurst: burst(d.RateLimit, d.RateBurst), MaxConcurrent: d.MaxConcurrent}
}

// Overrides are the limits per endpoint, keyed as the service names
// endpoints (NormalizeEndpoint).
func (d DeliverySection) Overrides() map[string]EndpointLimits {
	out := map[string]EndpointLimits{}
	for _, e := range d.Endpoints {
		l := d.Defaults()
		set(&l.BreakerFailures, e.BreakerFailures)
		set(&l.ProbeInterval, e.ProbeInterval)
		set(&l.RateLimit, e.RateLimit)
		set(&l.MaxConcurrent, e.MaxConcurrent)
		l.RateBurst = burst(l.RateLimit, d.RateBurst)
		if e.RateBurst != nil {
			l.RateBurst = burst(l.RateLimit, *e.RateBurst)
		}
		out[NormalizeEndpoint(e.Endpoint)] = l
	}
	return out
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func burst(rate, b int) int {
	if b == 0 {
		return rate
	}
	return b
}

// NormalizeEndpoint names an endpoint as the service does: an http or
// https URL becomes scheme://host:port; anything else stays as written.
func NormalizeEndpoint(s string) string {
	if ep, ok := domain.URLEndpoint(s); ok {
		return ep
	}
	return s
}

// validateDelivery checks [delivery].
func (c *Config) validateDelivery() error {
	d := c.Delivery
	checks := []struct {
		key string
		ok  bool
		msg string
	}{
		{"delivery.breaker_failures", d.BreakerFailures >= 0, "must not be negative (0 = the circuit never opens)"},
		{"delivery.probe_interval", d.ProbeInterval >= 100*time.Millisecond, "must be at least 100ms"},
		{"delivery.rate_limit", d.RateLimit >= 0, "must not be negative (0 = unlimited)"},
		{"delivery.rate_burst", d.RateBurst >= 0, "must not be negative (0 = one second's worth)"},
		{"delivery.max_concurrent", d.MaxConcurrent >= 0, "must not be negative (0 = unlimited)"},
		{"delivery.log", d.Log == DeliveryLogFailures || d.Log == DeliveryLogAll || d.Log == DeliveryLogOff,
			fmt.Sprintf("%q is not one of failures, all, off", d.Log)},
		{"delivery.log_retention", d.LogRetention >= time.Minute, "must be at least 1m"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return &ConfigError{Key: ch.key, Msg: ch.msg}
		}
	}
	seen := map[string]int{}
	for i, e := range d.Endpoints {
		key := fmt.Sprintf("delivery.endpoints[%d]", i)
		if strings.TrimSpace(e.Endpoint) == "" {
			return &ConfigError{Key: key + ".endpoint", Msg: "required (e.g. \"https://hooks.example.com\")"}
		}
		if strings.HasPrefix(e.Endpoint, "http://") || strings.HasPrefix(e.Endpoint, "https://") {
			if _, ok := domain.URLEndpoint(e.Endpoint); !ok {
				return &ConfigError{Key: key + ".endpoint", Msg: fmt.Sprintf("%q is not a URL (scheme://host[:port])", e.Endpoint)}
			}
		}
		name := NormalizeEndpoint(e.Endpoint)
		if j, dup := seen[name]; dup {
			return &ConfigError{Key: key + ".endpoint", Msg: fmt.Sprintf("%s is configured in delivery.endpoints[%d] too", name, j)}
		}
		seen[name] = i
		for _, ch := range []struct {
			sub string
			v   *int
		}{{"breaker_failures", e.BreakerFailures}, {"rate_limit", e.RateLimit}, {"rate_burst", e.RateBurst}, {"max_concurrent", e.MaxConcurrent}} {
			if ch.v != nil && *ch.v < 0 {
				return &ConfigError{Key: key + "." + ch.sub, Msg: "must not be negative (0 = no limit)"}
			}
		}
		if e.ProbeInterval != nil && *e.ProbeInterval < 100*time.Millisecond {
			return &ConfigError{Key: key + ".probe_interval", Msg: "must be at least 100ms"}
		}
	}
	return nil
}
