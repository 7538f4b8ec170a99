package application_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// fakeTracer records spans in memory; its trace context is "span:<id>".
type fakeTracer struct {
	mu    sync.Mutex
	spans []*fakeSpan
}

type fakeSpan struct {
	t      *fakeTracer
	id     int
	parent string // "span:<id>" of the parent, "" for a root
	name   string
	kind   ports.SpanKind
	attrs  map[string]any
	err    string
	ended  int
}

type spanKey struct{}
type remoteKey struct{}

var _ ports.Tracer = (*fakeTracer)(nil)

func (t *fakeTracer) Start(ctx context.Context, name string, kind ports.SpanKind) (context.Context, ports.Span) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &fakeSpan{t: t, id: len(t.spans) + 1, name: name, kind: kind, attrs: map[string]any{}}
	if p, ok := ctx.Value(spanKey{}).(*fakeSpan); ok {
		s.parent = fmt.Sprintf("span:%d", p.id)
	} else if r, ok := ctx.Value(remoteKey{}).(string); ok {
		s.parent = r
	}
	t.spans = append(t.spans, s)
	return context.WithValue(ctx, spanKey{}, s), s
}

func (t *fakeTracer) With(ctx context.Context, span ports.Span) context.Context {
	return context.WithValue(ctx, spanKey{}, span.(*fakeSpan))
}

func (t *fakeTracer) Inject(ctx context.Context, h ports.Headers) {
	if s, ok := ctx.Value(spanKey{}).(*fakeSpan); ok {
		h["traceparent"] = fmt.Sprintf("span:%d", s.id)
	}
}

func (t *fakeTracer) Extract(ctx context.Context, h ports.Headers) context.Context {
	if v, ok := h["traceparent"]; ok {
		return context.WithValue(ctx, remoteKey{}, v)
	}
	return ctx
}

func (t *fakeTracer) named(name string) []*fakeSpan {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*fakeSpan
	for _, s := range t.spans {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

func (s *fakeSpan) Recording() bool { return true }
func (s *fakeSpan) SetAttributes(attrs ...ports.Attr) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	for _, a := range attrs {
		if a.IsInt {
			s.attrs[a.Key] = a.Int
		} else {
			s.attrs[a.Key] = a.Str
		}
	}
}
func (s *fakeSpan) SetError(err error) { s.t.mu.Lock(); s.err = err.Error(); s.t.mu.Unlock() }
func (s *fakeSpan) End()               { s.t.mu.Lock(); s.ended++; s.t.mu.Unlock() }
func (s *fakeSpan) ref() string        { return fmt.Sprintf("span:%d", s.id) }

// tracedStack is Traced(Processor(Traced(executor))) with an action that
// fails once (transiently) and then succeeds, and one that succeeds.
func tracedStack(t *testing.T, tracer ports.Tracer) (application.RunProcessor, *callLog) {
	t.Helper()
	var mu sync.Mutex
	calls := 0
	exec, log := recording(func(_ context.Context, _ *domain.Event, _ *domain.Observer, act *domain.Action) error {
		mu.Lock()
		defer mu.Unlock()
		if act.Name == "flaky" {
			calls++
			if calls == 1 {
				return domain.Transient(errBoom, 0)
			}
		}
		return nil
	})
	traced, err := application.NewTracedExecutor(exec, tracer)
	if err != nil {
		t.Fatal(err)
	}
	obs := observer("orders", "Order", "flaky", "steady")
	obs.Actions[0].Webhook = &domain.WebhookAction{URL: "https://hooks.example.com:8443/orders?token=secret"}
	obs.Retry = fixedRetry(3, 0)
	p, err := application.NewProcessor(domain.NewMatcher([]domain.Observer{obs}), application.ProcessorConfig{
		Executor: traced, DeadLetters: memory.NewDeadLetters(nil), Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := application.NewTracedProcessor(p, tracer)
	if err != nil {
		t.Fatal(err)
	}
	return tp, log
}

// An event's span is the child of the trace context it came with and the
// parent of a span per action attempt, which carries the observer, the
// action, its type, the endpoint host, the attempt and the outcome.
func TestTracedProcessorSpans(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	tracer := &fakeTracer{}
	proc, _ := tracedStack(t, tracer)
	rec := record(7, event("ev-1", "Order", "o1", nil))
	rec.Position.TxID = 42
	rec.Headers = ports.Headers{"traceparent": "remote:bridge"}
	run := proc.Start(ctx, rec)
	for {
		if _, done := proc.Step(ctx, run); done {
			break
		}
	}
	proc.Finish(ctx, run)

	events := tracer.named(application.SpanEvent)
	if len(events) != 1 {
		t.Fatalf("%d event spans, want 1", len(events))
	}
	ev := events[0]
	if ev.parent != "remote:bridge" || ev.kind != ports.SpanConsumer || ev.ended != 1 {
		t.Errorf("event span: parent %q, kind %v, ended %d; want the bridge's child, consumer, ended once", ev.parent, ev.kind, ev.ended)
	}
	for k, v := range map[string]any{
		application.AttrEventID: "ev-1", application.AttrEntityType: "Order", application.AttrEntityID: "o1",
		application.AttrPosition: "42/7", application.AttrTxID: int64(42), application.AttrSeq: int64(7),
		application.AttrOutcome: "succeeded", application.AttrSucceeded: int64(2), application.AttrFailed: int64(1),
	} {
		if ev.attrs[k] != v {
			t.Errorf("event span %s = %v, want %v", k, ev.attrs[k], v)
		}
	}
	actions := tracer.named(application.SpanAction)
	if len(actions) != 3 {
		t.Fatalf("%d action spans, want 3 (flaky twice, steady once)", len(actions))
	}
	var got []string
	for _, a := range actions {
		if a.parent != ev.ref() || a.ended != 1 || a.kind != ports.SpanClient {
			t.Errorf("action span %d: parent %q, ended %d, kind %v; want the event's child, ended once, client", a.id, a.parent, a.ended, a.kind)
		}
		got = append(got, fmt.Sprintf("%s/%s %s #%d %s %s", a.attrs[application.AttrObserver], a.attrs[application.AttrAction],
			a.attrs[application.AttrActionType], a.attrs[application.AttrAttempt], a.attrs[application.AttrOutcome], a.attrs[application.AttrEndpointHost]))
	}
	want := []string{
		"orders/flaky webhook #1 transient hooks.example.com:8443",
		"orders/steady webhook #1 succeeded %!s(<nil>)",
		"orders/flaky webhook #2 succeeded hooks.example.com:8443",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("action spans:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if actions[0].err == "" {
		t.Error("the failed attempt's span has no error")
	}
}

// An abandoned run (shutdown, or a nak) ends its span too.
func TestTracedProcessorAbandon(t *testing.T) {
	t.Parallel()
	tracer := &fakeTracer{}
	proc, _ := tracedStack(t, tracer)
	run := proc.Start(t.Context(), record(1, event("ev-2", "Order", "o2", nil)))
	proc.Abandon(t.Context(), run)
	ev := tracer.named(application.SpanEvent)
	if len(ev) != 1 || ev[0].ended != 1 || ev[0].attrs[application.AttrOutcome] != "abandoned" || ev[0].parent != "" {
		t.Errorf("abandoned event span: %+v", ev)
	}
}

// The bridge's handler: a producer span per event whose trace context
// goes with the record as headers, ended when the record is finished.
func TestTracedHandler(t *testing.T) {
	t.Parallel()
	tracer := &fakeTracer{}
	inner := &headerHandler{}
	h, err := application.NewTracedHandler(inner, tracer)
	if err != nil {
		t.Fatal(err)
	}
	finished := 0
	h.Handle(record(3, event("ev-3", "Order", "o3", nil)), func() { finished++ })
	spans := tracer.named(application.SpanPublish)
	if len(spans) != 1 || spans[0].kind != ports.SpanProducer || spans[0].attrs[application.AttrEventID] != "ev-3" {
		t.Fatalf("publish spans: %+v", spans)
	}
	if got := inner.headers["traceparent"]; got != spans[0].ref() {
		t.Errorf("headers handed on: %v, want traceparent %s", inner.headers, spans[0].ref())
	}
	if spans[0].ended != 0 {
		t.Error("the span ended before the record was finished")
	}
	inner.finish()
	if spans[0].ended != 1 || finished != 1 {
		t.Errorf("after finish: span ended %d, finish called %d; want 1 and 1", spans[0].ended, finished)
	}
}

type headerHandler struct {
	headers ports.Headers
	finish  func()
}

func (h *headerHandler) Begin()                        {}
func (h *headerHandler) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (h *headerHandler) Handle(rec ports.Record, finish func()) {
	h.headers, h.finish = rec.Headers, finish
}

// Over a tracer that records nothing the decorators allocate nothing: the
// processor path costs what it costs undecorated. (Not parallel: counting
// allocations needs the process to itself.)
func TestTracingOffAllocatesNothing(t *testing.T) { //nolint:paralleltest // counts the process's allocations
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	traced, err := application.NewTracedExecutor(exec, ports.NopTracer{})
	if err != nil {
		t.Fatal(err)
	}
	ev, obs := event("e", "Order", "o", nil), observer("o", "Order", "a")
	ctx := context.Background()
	if n := testing.AllocsPerRun(200, func() { _ = traced.Execute(ctx, &ev, &obs, &obs.Actions[0]) }); n != 0 {
		t.Errorf("TracedExecutor over NopTracer: %v allocations per action, want 0", n)
	}

	plain, err := application.NewProcessor(domain.NewMatcher([]domain.Observer{obs}), application.ProcessorConfig{
		Executor: exec, DeadLetters: memory.NewDeadLetters(nil), Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	decorated, err := application.NewTracedProcessor(plain, ports.NopTracer{})
	if err != nil {
		t.Fatal(err)
	}
	rec := record(1, ev)
	cycle := func(p application.RunProcessor) func() {
		return func() {
			run := p.Start(ctx, rec)
			p.Step(ctx, run)
			p.Finish(ctx, run)
		}
	}
	base, off := testing.AllocsPerRun(200, cycle(plain)), testing.AllocsPerRun(200, cycle(decorated))
	if off != base {
		t.Errorf("an event through TracedProcessor over NopTracer: %v allocations, undecorated %v; want the same", off, base)
	}
}

// go test -run '^$' -bench Tracing -benchmem ./application/
func BenchmarkTracing(b *testing.B) {
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	obs := observer("o", "Order", "a")
	ev := event("e", "Order", "o", nil)
	rec := record(1, ev)
	newProc := func(b *testing.B, tracer ports.Tracer) application.RunProcessor {
		var e ports.ActionExecutor = exec
		if tracer != nil {
			e, _ = application.NewTracedExecutor(exec, tracer)
		}
		p, err := application.NewProcessor(domain.NewMatcher([]domain.Observer{obs}), application.ProcessorConfig{
			Executor: e, DeadLetters: memory.NewDeadLetters(nil), Logger: discardLogger(), Now: func() time.Time { return time.Time{} },
		})
		if err != nil {
			b.Fatal(err)
		}
		if tracer == nil {
			return p
		}
		tp, _ := application.NewTracedProcessor(p, tracer)
		return tp
	}
	for _, c := range []struct {
		name   string
		tracer ports.Tracer
	}{{"undecorated", nil}, {"nop-tracer", ports.NopTracer{}}} {
		b.Run(c.name, func(b *testing.B) {
			p := newProc(b, c.tracer)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				run := p.Start(ctx, rec)
				p.Step(ctx, run)
				p.Finish(ctx, run)
			}
		})
	}
}

// stubProc is a RunProcessor whose runs are made by start.
type stubProc struct {
	application.RunProcessor
	start func(rec ports.Record) *application.Run
}

func (s stubProc) Start(_ context.Context, rec ports.Record) *application.Run { return s.start(rec) }
func (s stubProc) Finish(context.Context, ...*application.Run)                {}

// A duplicate (skipped by dedup) and an invalid input end their spans
// with that outcome.
func TestTracedProcessorOutcomes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		run  func(rec ports.Record) *application.Run
		want string
	}{
		{"duplicate", func(rec ports.Record) *application.Run { return &application.Run{Record: rec, Skipped: true} }, "duplicate"},
		{"invalid", func(rec ports.Record) *application.Run {
			rec.Err = domain.ErrInvalidEvent
			return &application.Run{Record: rec}
		}, "invalid"},
	} {
		tracer := &fakeTracer{}
		p, err := application.NewTracedProcessor(stubProc{start: c.run}, tracer)
		if err != nil {
			t.Fatal(err)
		}
		run := p.Start(t.Context(), record(1, event("e", "Order", "o", nil)))
		p.Finish(t.Context(), run)
		if ev := tracer.named(application.SpanEvent); len(ev) != 1 || ev[0].attrs[application.AttrOutcome] != c.want || ev[0].ended != 1 {
			t.Errorf("%s: event spans %+v, want one ended with outcome %s", c.name, ev, c.want)
		}
	}
}
