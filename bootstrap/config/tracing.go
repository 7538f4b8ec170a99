package config

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// The OTLP protocols of [tracing].
const (
	TracingGRPC = "grpc"
	TracingHTTP = "http/protobuf"
)

// TracingConfig is [tracing]: OpenTelemetry spans (an event, its actions,
// the bridge's publication) exported over OTLP. Tracing is on when
// endpoint is set, or when the standard OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) variable is; off otherwise, at no
// cost.
type TracingConfig struct {
	// Endpoint is the collector: "host:port" or a URL
	// ("http://collector:4318"; for http/protobuf a URL without a path
	// gets /v1/traces).
	Endpoint string `koanf:"endpoint"`
	// Protocol is "grpc" or "http/protobuf". With the endpoint from the
	// environment, OTEL_EXPORTER_OTLP_PROTOCOL decides instead.
	Protocol string `koanf:"protocol"`
	// SampleRatio is the share of new traces recorded (0 to 1); a trace
	// whose parent was sampled follows its parent.
	SampleRatio float64 `koanf:"sample_ratio"`
	// Insecure sends without TLS to a host:port endpoint (a URL's scheme
	// decides for itself).
	Insecure bool `koanf:"insecure"`
	// HeadersEnv maps a header sent with every export to the environment
	// variable holding its value (the collector's credentials).
	HeadersEnv map[string]string `koanf:"headers_env"`
}

// tracingEndpointVars are the standard variables that turn tracing on
// without tracing.endpoint (the exporter reads them itself).
var tracingEndpointVars = []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"}

// TracingOff says why tracing is off, in warnings about keys that then
// have no effect.
const TracingOff = "tracing is off (no tracing.endpoint, no OTEL_EXPORTER_OTLP_ENDPOINT)"

// TracingOn reports whether tracing is on: tracing.endpoint is set, or
// lookupEnv finds one of the standard endpoint variables (not empty).
func (c Config) TracingOn(lookupEnv func(string) (string, bool)) bool {
	if strings.TrimSpace(c.Tracing.Endpoint) != "" {
		return true
	}
	for _, k := range tracingEndpointVars {
		if v, ok := lookupEnv(k); ok && strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

// TracingKeysSet lists the [tracing] keys other than endpoint that the
// file or the environment set: with tracing off they have no effect,
// which run and validate-config say in a warning.
func (c Config) TracingKeysSet() []string {
	var keys []string
	for _, k := range []string{"tracing.protocol", "tracing.sample_ratio", "tracing.insecure"} {
		if c.IsSet(k) {
			keys = append(keys, k)
		}
	}
	if len(c.Tracing.HeadersEnv) > 0 {
		keys = append(keys, "tracing.headers_env")
	}
	return keys
}

func (t TracingConfig) validate() error {
	switch t.Protocol {
	case TracingGRPC, TracingHTTP:
	default:
		return &ConfigError{Key: "tracing.protocol", Msg: fmt.Sprintf("%q is not one of grpc, http/protobuf", t.Protocol)}
	}
	if t.SampleRatio < 0 || t.SampleRatio > 1 {
		return &ConfigError{Key: "tracing.sample_ratio", Msg: fmt.Sprintf("%v is not between 0 and 1", t.SampleRatio)}
	}
	if e := strings.TrimSpace(t.Endpoint); strings.Contains(e, "://") {
		u, err := url.Parse(e)
		switch {
		case err != nil:
			return &ConfigError{Key: "tracing.endpoint", Msg: err.Error()}
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			return &ConfigError{Key: "tracing.endpoint", Msg: "want host:port or an http(s)://host:port URL"}
		case t.Insecure && u.Scheme == "https":
			return &ConfigError{Key: "tracing.insecure", Msg: "the endpoint is an https URL"}
		}
	} else if e != "" && !strings.Contains(e, ":") {
		return &ConfigError{Key: "tracing.endpoint", Msg: "want host:port or an http(s)://host:port URL"}
	}
	for _, h := range slices.Sorted(maps.Keys(t.HeadersEnv)) {
		switch {
		case strings.TrimSpace(h) == "" || strings.TrimSpace(t.HeadersEnv[h]) == "":
			return &ConfigError{Key: "tracing.headers_env", Msg: "header names and variable names must not be empty"}
		case !domain.IsHTTPToken(h):
			return &ConfigError{Key: "tracing.headers_env." + h, Msg: fmt.Sprintf("%q is not a header name", h)}
		}
	}
	return nil
}
