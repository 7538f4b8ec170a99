package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

func TestTracingSection(t *testing.T) {
	t.Parallel()
	def, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if def.Tracing.Endpoint != "" || def.Tracing.Protocol != config.TracingHTTP || def.Tracing.SampleRatio != 1 {
		t.Errorf("defaults = %+v, want off, http/protobuf, every trace", def.Tracing)
	}
	cfg, err := config.Load(writeConfig(t, `
[tracing]
endpoint     = "collector:4317"
protocol     = "grpc"
sample_ratio = 0.25
insecure     = true
headers_env  = { authorization = "OTLP_AUTH" }
`), []string{"FRAISEQL_TRACING_SAMPLE_RATIO=0.5"})
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Tracing
	if tr.Endpoint != "collector:4317" || tr.Protocol != "grpc" || tr.SampleRatio != 0.5 || !tr.Insecure || tr.HeadersEnv["authorization"] != "OTLP_AUTH" {
		t.Errorf("tracing = %+v", tr)
	}
	cases := []struct{ body, key, msg string }{
		{"[tracing]\nprotocol = \"thrift\"\n", "tracing.protocol", "not one of"},
		{"[tracing]\nsample_ratio = 1.5\n", "tracing.sample_ratio", "between 0 and 1"},
		{"[tracing]\nendpoint = \"collector\"\n", "tracing.endpoint", "host:port"},
		{"[tracing]\nendpoint = \"ftp://collector:21\"\n", "tracing.endpoint", "host:port"},
		{"[tracing]\nendpoint = \"https://collector:4318\"\ninsecure = true\n", "tracing.insecure", "https"},
		{"[tracing]\nheaders_env = { authorization = \"\" }\n", "tracing.headers_env", "must not be empty"},
		{"[tracing]\nheaders_env = { \"Bad Header\" = \"X\" }\n", "tracing.headers_env.Bad Header", "not a header name"},
	}
	for _, c := range cases {
		_, err := config.Load(writeConfig(t, c.body), nil)
		var ce *config.ConfigError
		if !errors.As(err, &ce) || ce.Key != c.key || !strings.Contains(ce.Msg, c.msg) {
			t.Errorf("%q: %v, want a ConfigError on %s saying %q", c.body, err, c.key, c.msg)
		}
	}
}

// A table key is settable from the environment as NAME=VALUE pairs; a
// pair without '=' is refused naming the variable and the key.
func TestTracingHeadersFromTheEnvironment(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("", []string{"FRAISEQL_TRACING_HEADERS_ENV=authorization=OTLP_AUTH, x-tenant = OTLP_TENANT"})
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Tracing.HeadersEnv; len(h) != 2 || h["authorization"] != "OTLP_AUTH" || h["x-tenant"] != "OTLP_TENANT" {
		t.Errorf("headers_env = %v, want authorization=OTLP_AUTH, x-tenant=OTLP_TENANT", h)
	}
	_, err = config.Load("", []string{"FRAISEQL_TRACING_HEADERS_ENV=authorization"})
	var ce *config.ConfigError
	if !errors.As(err, &ce) || ce.Key != "tracing.headers_env" || !strings.Contains(err.Error(), "FRAISEQL_TRACING_HEADERS_ENV") || !strings.Contains(err.Error(), "NAME=VALUE") {
		t.Errorf("error %v, want a ConfigError naming tracing.headers_env and the variable", err)
	}
}
