package telemetry_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/telemetry"
)

func loadConfig(t *testing.T, body string) config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte("topology = \"memory\"\n"+body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// With tracing off, the [tracing] keys set have no effect: OpenTracer
// says so, and does not ask for the headers' variables.
func TestOpenTracerWarnsOfKeysWhileOff(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, "[tracing]\nprotocol = \"grpc\"\ninsecure = true\n[tracing.headers_env]\nauthorization = \"NOPE_UNSET\"\n")
	var logs bytes.Buffer
	noEnv := func(string) (string, bool) { return "", false }
	tracer, err := telemetry.OpenTracer(t.Context(), cfg, noEnv, "test", slog.New(slog.NewTextHandler(&logs, nil)))
	if tracer != nil || err != nil {
		t.Fatalf("OpenTracer = %v, %v; want off", tracer, err)
	}
	for _, want := range []string{"tracing is off", "tracing.protocol", "tracing.insecure", "tracing.headers_env"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q does not mention %q", logs.String(), want)
		}
	}
	logs.Reset()
	if _, err := telemetry.OpenTracer(t.Context(), loadConfig(t, ""), noEnv, "test", slog.New(slog.NewTextHandler(&logs, nil))); err != nil || logs.Len() != 0 {
		t.Errorf("no [tracing]: err %v, log %q; want neither", err, logs.String())
	}
}

// With the endpoint from the environment, tracing.protocol and
// tracing.insecure have no effect: OpenTracer says so.
func TestOpenTracerWarnsOfKeysTheEnvironmentOverrides(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t, "[tracing]\nprotocol = \"grpc\"\ninsecure = true\nsample_ratio = 0.5\n")
	var logs bytes.Buffer
	env := func(k string) (string, bool) {
		return "http://127.0.0.1:4318", k == "OTEL_EXPORTER_OTLP_ENDPOINT"
	}
	tracer, err := telemetry.OpenTracer(t.Context(), cfg, env, "test", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || tracer == nil {
		t.Fatalf("OpenTracer = %v, %v; want on", tracer, err)
	}
	t.Cleanup(func() { _ = tracer.Close(context.Background()) })
	for _, want := range []string{"OTEL_EXPORTER_OTLP_", "tracing.protocol", "tracing.insecure"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q does not mention %q", logs.String(), want)
		}
	}
	if strings.Contains(logs.String(), "tracing.sample_ratio") {
		t.Errorf("log %q names tracing.sample_ratio, which still applies", logs.String())
	}
}

// An endpoint the exporter cannot use is refused before connecting,
// naming tracing.endpoint (validate-config runs the same check).
func TestCheckTracingNamesTheEndpoint(t *testing.T) {
	t.Parallel()
	for _, e := range []string{"collector:", ":4317", "ftp://collector:21"} {
		cfg := withEndpoint(t, e)
		err := telemetry.CheckTracing(cfg)
		var ce *config.ConfigError
		if !errors.As(err, &ce) || ce.Key != "tracing.endpoint" {
			t.Errorf("CheckTracing(%q) = %v, want a ConfigError on tracing.endpoint", e, err)
		}
		if _, err := telemetry.OpenTracer(t.Context(), cfg, func(string) (string, bool) { return "", false }, "test", slog.New(slog.DiscardHandler)); !errors.As(err, &ce) || ce.Key != "tracing.endpoint" {
			t.Errorf("OpenTracer(%q) = %v, want a ConfigError on tracing.endpoint", e, err)
		}
	}
	if err := telemetry.CheckTracing(loadConfig(t, "[tracing]\nendpoint = \"127.0.0.1:4317\"\n")); err != nil {
		t.Errorf("CheckTracing(127.0.0.1:4317) = %v", err)
	}
}

// withEndpoint is a configuration with tracing.endpoint e, set after
// loading (config.Load's own check is coarser and would refuse some).
func withEndpoint(t *testing.T, e string) config.Config {
	t.Helper()
	cfg := loadConfig(t, "")
	cfg.Tracing.Endpoint = e
	return cfg
}
