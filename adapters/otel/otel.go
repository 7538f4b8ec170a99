// Package otel implements ports.Tracer with the OpenTelemetry SDK: spans
// are batched (a bounded queue; spans beyond it are dropped, never
// waited for) and exported over OTLP, gRPC or HTTP/protobuf, with the
// W3C trace context (traceparent, tracestate) as the propagation format.
// It is the only package importing OpenTelemetry.
package otel

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// The OTLP protocols.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Config says where spans go.
type Config struct {
	// Endpoint is the collector: "host:port", or a URL ("http://host:4318";
	// for HTTP a URL without a path gets /v1/traces). "" takes the
	// standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT (and the other OTEL_EXPORTER_OTLP_*
	// variables), which the exporter reads itself.
	Endpoint string
	// Protocol is ProtocolGRPC or ProtocolHTTP.
	Protocol string
	// Insecure sends without TLS to a host:port endpoint (a URL's scheme
	// decides for itself).
	Insecure bool
	// Headers are sent with every export (credentials).
	Headers map[string]string
	// SampleRatio is the share of new traces recorded, from 0 to 1; a
	// trace that came with a sampled parent follows the parent.
	SampleRatio float64
	// ServiceName and ServiceVersion describe this process (the
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES variables win).
	ServiceName    string
	ServiceVersion string
	// Timeout bounds each export (default 10s).
	Timeout time.Duration
}

// Tracer is a ports.Tracer exporting over OTLP. Close flushes it.
type Tracer struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

var _ ports.Tracer = (*Tracer)(nil)

// New builds the exporter and the tracer. Nothing is dialled before the
// first export: a collector that is down loses spans, never work.
func New(ctx context.Context, cfg Config) (*Tracer, error) {
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, fmt.Errorf("otel: sample ratio %v is not between 0 and 1", cfg.SampleRatio)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	exp, err := newExporter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(
		resource.NewSchemaless(attribute.String("service.name", cfg.ServiceName), attribute.String("service.version", cfg.ServiceVersion)),
		resource.Environment())
	if err != nil {
		return nil, fmt.Errorf("otel: resource: %w", err)
	}
	// The SDK's queue of spans to export is bounded by count; their
	// attributes (an entity id, a table name) by MaxAttributeLength, so
	// that it is bounded in bytes too. OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT
	// (and the other OTEL_SPAN_* variables) still set their own.
	limits := sdktrace.NewSpanLimits()
	if limits.AttributeValueLengthLimit < 0 {
		limits.AttributeValueLengthLimit = MaxAttributeLength
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithRawSpanLimits(limits),
		sdktrace.WithBatcher(exp, sdktrace.WithExportTimeout(cfg.Timeout)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(res),
	)
	return &Tracer{
		tp:     tp,
		tracer: tp.Tracer("github.com/fraiseql/fraiseql-observer"),
		prop:   propagation.TraceContext{},
	}, nil
}

// MaxAttributeLength is the length, in characters, a span's string
// attribute is cut to (unless OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT says
// otherwise).
const MaxAttributeLength = 1024

func newExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	host, path, insecure, err := endpoint(cfg)
	if err != nil {
		return nil, err
	}
	switch cfg.Protocol {
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithTimeout(cfg.Timeout)}
		if host != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(host))
			if insecure {
				opts = append(opts, otlptracegrpc.WithInsecure())
			}
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(cfg.Headers))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otel: grpc exporter: %w", err)
		}
		return exp, nil
	case ProtocolHTTP:
		opts := []otlptracehttp.Option{otlptracehttp.WithTimeout(cfg.Timeout)}
		if host != "" {
			opts = append(opts, otlptracehttp.WithEndpoint(host), otlptracehttp.WithURLPath(path))
			if insecure {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otel: http exporter: %w", err)
		}
		return exp, nil
	}
	return nil, fmt.Errorf("otel: protocol %q is not %s or %s", cfg.Protocol, ProtocolGRPC, ProtocolHTTP)
}

// CheckEndpoint reports what New would refuse in cfg.Endpoint (with
// cfg.Insecure), without connecting: nil for "" (the environment's).
func CheckEndpoint(cfg Config) error {
	_, _, _, err := endpoint(cfg)
	return err
}

// endpoint splits cfg.Endpoint into the exporter's host:port, URL path
// (HTTP) and whether TLS is off; host is "" when the environment names
// the endpoint.
func endpoint(cfg Config) (host, path string, insecure bool, err error) {
	e := strings.TrimSpace(cfg.Endpoint)
	if e == "" {
		return "", "", false, nil
	}
	if !strings.Contains(e, "://") {
		if _, _, err := splitHostPort(e); err != nil {
			return "", "", false, err
		}
		return e, "/v1/traces", cfg.Insecure, nil
	}
	u, err := url.Parse(e)
	switch {
	case err != nil:
		return "", "", false, fmt.Errorf("otel: endpoint %q: %w", e, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", "", false, fmt.Errorf("otel: endpoint %q: scheme must be http or https", e)
	case u.Host == "":
		return "", "", false, fmt.Errorf("otel: endpoint %q: no host", e)
	case cfg.Insecure && u.Scheme == "https":
		return "", "", false, fmt.Errorf("otel: endpoint %q: insecure with an https URL", e)
	}
	path = u.Path
	if path == "" || path == "/" {
		path = "/v1/traces"
	}
	return u.Host, path, u.Scheme == "http", nil
}

func splitHostPort(e string) (string, string, error) {
	i := strings.LastIndex(e, ":")
	if i <= 0 || i == len(e)-1 {
		return "", "", fmt.Errorf("otel: endpoint %q: want host:port or a URL", e)
	}
	return e[:i], e[i+1:], nil
}

// Close exports the spans still queued (bounded by ctx) and stops.
func (t *Tracer) Close(ctx context.Context) error {
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("otel: shutdown: %w", err)
	}
	return nil
}

// Flush exports the spans queued so far (bounded by ctx).
func (t *Tracer) Flush(ctx context.Context) error { return t.tp.ForceFlush(ctx) }

var kinds = map[ports.SpanKind]trace.SpanKind{
	ports.SpanInternal: trace.SpanKindInternal,
	ports.SpanProducer: trace.SpanKindProducer,
	ports.SpanConsumer: trace.SpanKindConsumer,
	ports.SpanClient:   trace.SpanKindClient,
}

// Start starts a span; see ports.Tracer.
func (t *Tracer) Start(ctx context.Context, name string, kind ports.SpanKind) (context.Context, ports.Span) {
	ctx, s := t.tracer.Start(ctx, name, trace.WithSpanKind(kinds[kind]))
	return ctx, span{s}
}

// With returns ctx carrying s.
func (t *Tracer) With(ctx context.Context, s ports.Span) context.Context {
	sp, ok := s.(span)
	if !ok {
		return ctx
	}
	return trace.ContextWithSpan(ctx, sp.s)
}

// Inject writes ctx's trace context into h.
func (t *Tracer) Inject(ctx context.Context, h ports.Headers) { t.prop.Inject(ctx, carrier(h)) }

// Extract returns ctx carrying the remote trace context in h.
func (t *Tracer) Extract(ctx context.Context, h ports.Headers) context.Context {
	return t.prop.Extract(ctx, carrier(h))
}

// InjectHTTP writes ctx's trace context into HTTP headers (the webhook
// action's traceparent).
func (t *Tracer) InjectHTTP(ctx context.Context, h http.Header) {
	t.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

// carrier adapts ports.Headers to the propagator.
type carrier ports.Headers

func (c carrier) Get(key string) string { return c[strings.ToLower(key)] }
func (c carrier) Set(key, v string)     { c[strings.ToLower(key)] = v }
func (c carrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// span adapts an OpenTelemetry span to ports.Span.
type span struct{ s trace.Span }

func (sp span) Recording() bool { return sp.s.IsRecording() }

func (sp span) SetAttributes(attrs ...ports.Attr) {
	if !sp.s.IsRecording() {
		return
	}
	kv := make([]attribute.KeyValue, len(attrs))
	for i, a := range attrs {
		if a.IsInt {
			kv[i] = attribute.Int64(a.Key, a.Int)
		} else {
			kv[i] = attribute.String(a.Key, a.Str)
		}
	}
	sp.s.SetAttributes(kv...)
}

func (sp span) SetError(err error) {
	if err == nil || !sp.s.IsRecording() {
		return
	}
	sp.s.RecordError(err)
	sp.s.SetStatus(codes.Error, err.Error())
}

func (sp span) End() { sp.s.End() }

// EnvProtocol is the protocol the standard variables ask for
// (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL;
// ProtocolHTTP when they do not say, as the specification's default).
func EnvProtocol(lookup func(string) (string, bool)) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v, set := lookup(k); set && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ProtocolHTTP
}
