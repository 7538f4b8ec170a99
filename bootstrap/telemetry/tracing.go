package telemetry

import (
	"context"
	"log/slog"

	oteladapter "github.com/fraiseql/fraiseql-observer/adapters/otel"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// OpenTracer builds the tracer of [tracing]: OTLP when an endpoint is
// configured (or named by the standard OTEL_EXPORTER_OTLP_* variables),
// or nil when tracing is off.
func OpenTracer(ctx context.Context, cfg config.Config, env func(string) (string, bool), version string, logger *slog.Logger) (*oteladapter.Tracer, error) {
	t := cfg.Tracing
	if !cfg.TracingOn(env) {
		if keys := cfg.TracingKeysSet(); len(keys) > 0 {
			logger.Warn(config.TracingOff+": these keys have no effect",
				slog.Any("keys", keys))
		}
		return nil, nil
	}
	protocol := t.Protocol
	if t.Endpoint == "" {
		protocol = oteladapter.EnvProtocol(env)
		var idle []string
		for _, k := range []string{"tracing.protocol", "tracing.insecure"} {
			if cfg.IsSet(k) {
				idle = append(idle, k)
			}
		}
		if len(idle) > 0 {
			logger.Warn("the tracing endpoint comes from OTEL_EXPORTER_OTLP_*: these keys have no effect (OTEL_EXPORTER_OTLP_PROTOCOL picks the protocol, the URL's scheme TLS); set tracing.endpoint to use them",
				slog.Any("keys", idle))
		}
	} else if err := CheckTracing(cfg); err != nil {
		return nil, err
	}
	headers := map[string]string{}
	for h, name := range t.HeadersEnv {
		v, ok := env(name)
		if !ok || v == "" {
			return nil, &config.ConfigError{File: cfg.File, Key: "tracing.headers_env", Msg: "environment variable " + name + " (header " + h + ") is not set"}
		}
		headers[h] = v
	}
	tracer, err := oteladapter.New(ctx, oteladapter.Config{
		Endpoint: t.Endpoint, Protocol: protocol, Insecure: t.Insecure, Headers: headers, SampleRatio: t.SampleRatio,
		ServiceName: "fraiseql-observer", ServiceVersion: version,
	})
	if err != nil {
		return nil, &config.ConfigError{File: cfg.File, Key: "tracing", Msg: err.Error()}
	}
	where := t.Endpoint
	if where == "" {
		where = "from OTEL_EXPORTER_OTLP_* variables"
	}
	logger.Info("tracing on", slog.String("endpoint", where), slog.String("protocol", protocol), slog.Float64("sample_ratio", t.SampleRatio))
	return tracer, nil
}

// CheckTracing reports what OpenTracer would refuse in tracing.endpoint
// (with tracing.insecure), without connecting; validate-config runs it.
func CheckTracing(cfg config.Config) error {
	t := cfg.Tracing
	if err := oteladapter.CheckEndpoint(oteladapter.Config{Endpoint: t.Endpoint, Insecure: t.Insecure}); err != nil {
		return &config.ConfigError{File: cfg.File, Key: "tracing.endpoint", Msg: err.Error()}
	}
	return nil
}
