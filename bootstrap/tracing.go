package bootstrap

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	oteladapter "github.com/fraiseql/fraiseql-observer/adapters/otel"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// This file wires tracing ([tracing]): the OTLP tracer when an endpoint is
// configured (or named by the standard OTEL_EXPORTER_OTLP_* variables);
// the decorators of application are installed only then, so tracing that
// is off costs nothing.

// openTracer builds the tracer, or returns nil when tracing is off.
func openTracer(ctx context.Context, cfg config.Config, env func(string) (string, bool), version string, logger *slog.Logger) (*oteladapter.Tracer, error) {
	t := cfg.Tracing
	protocol := t.Protocol
	if t.Endpoint == "" {
		on, envProtocol := oteladapter.EnvEndpoint(env)
		if !on {
			return nil, nil
		}
		protocol = envProtocol
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

// startTracing opens the tracer of the App (nil when off) and flushes it on
// Close.
func (a *App) startTracing(ctx context.Context, version string) error {
	tracer, err := openTracer(ctx, a.cfg, a.env, version, a.logger)
	if err != nil || tracer == nil {
		return err
	}
	a.tracer = tracer
	a.onClose(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracer.Close(cctx); err != nil {
			a.logger.Warn("tracing: spans not exported at shutdown", slog.String("error", err.Error()))
		}
	})
	return nil
}

// propagate is the webhook executor's trace propagation (nil when
// tracing is off).
func (a *App) propagate() func(context.Context, http.Header) {
	if a.tracer == nil {
		return nil
	}
	return a.tracer.InjectHTTP
}
