package ports

import "context"

// Headers are metadata that travel with an event across a process
// boundary (a bus message's headers): the trace context ("traceparent",
// "tracestate"). Keys are lower case.
type Headers map[string]string

// SpanKind says what a span's operation is, as tracing backends draw it.
type SpanKind int

// The span kinds.
const (
	SpanInternal SpanKind = iota
	SpanProducer          // hands work to another process (the bridge publishing)
	SpanConsumer          // takes work handed over (a worker's event)
	SpanClient            // calls out (an action)
)

// Attr is a span attribute: a string, or an integer when IsInt.
type Attr struct {
	Key   string
	Str   string
	Int   int64
	IsInt bool
}

// StringAttr returns a string attribute.
func StringAttr(key, v string) Attr { return Attr{Key: key, Str: v} }

// IntAttr returns an integer attribute.
func IntAttr(key string, v int64) Attr { return Attr{Key: key, Int: v, IsInt: true} }

// Tracer records spans: what the service did for an event, and for each
// action, linked across processes by the trace context.
//
// Start starts a span named name as a child of the span ctx carries (or of
// the remote span Extract put into ctx) and returns ctx carrying the new
// span; the caller must End it. With returns ctx carrying span (a span
// started under another context, resumed later). Inject writes the trace
// context of ctx's span into h (nothing when ctx carries none); Extract
// returns ctx carrying the remote span context h holds, or ctx itself
// when h holds none. A tracer that records nothing returns ctx unchanged
// from Start, and a Span whose Recording is false: callers skip building
// attributes then, so tracing that is off costs nothing. Safe for
// concurrent use.
type Tracer interface {
	Start(ctx context.Context, name string, kind SpanKind) (context.Context, Span)
	With(ctx context.Context, span Span) context.Context
	Inject(ctx context.Context, h Headers)
	Extract(ctx context.Context, h Headers) context.Context
}

// Span is one traced operation. SetAttributes and SetError do nothing
// when Recording is false. End ends it; nothing may be called after.
type Span interface {
	Recording() bool
	SetAttributes(attrs ...Attr)
	// SetError marks the span failed, with err's message.
	SetError(err error)
	End()
}

// NopTracer records nothing.
type NopTracer struct{}

var _ Tracer = NopTracer{}

func (NopTracer) Start(ctx context.Context, _ string, _ SpanKind) (context.Context, Span) {
	return ctx, nopSpan{}
}
func (NopTracer) With(ctx context.Context, _ Span) context.Context       { return ctx }
func (NopTracer) Inject(context.Context, Headers)                        {}
func (NopTracer) Extract(ctx context.Context, _ Headers) context.Context { return ctx }

type nopSpan struct{}

func (nopSpan) Recording() bool       { return false }
func (nopSpan) SetAttributes(...Attr) {}
func (nopSpan) SetError(error)        {}
func (nopSpan) End()                  {}
