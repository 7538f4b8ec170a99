package otel_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	oteladapter "github.com/fraiseql/fraiseql-observer/adapters/otel"
	"github.com/fraiseql/fraiseql-observer/internal/otlptest"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func newTracer(t *testing.T, cfg oteladapter.Config) *oteladapter.Tracer {
	t.Helper()
	tr, err := oteladapter.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tr.Close(ctx)
	})
	return tr
}

// Spans reach a receiver over both protocols with their names, kinds,
// attributes, errors and parent links, also across processes through the
// propagated headers; the configured headers go with every export.
func TestExportOverBothProtocols(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		protocol string
		endpoint func(r *otlptest.Receiver) string
	}{
		{oteladapter.ProtocolGRPC, func(r *otlptest.Receiver) string { return r.GRPCAddr }},
		{oteladapter.ProtocolHTTP, func(r *otlptest.Receiver) string { return r.HTTPURL }},
		{oteladapter.ProtocolHTTP + " host:port", func(r *otlptest.Receiver) string { return strings.TrimPrefix(r.HTTPURL, "http://") }},
	} {
		t.Run(c.protocol, func(t *testing.T) {
			t.Parallel()
			rcv := otlptest.Start(t)
			protocol, _, _ := strings.Cut(c.protocol, " ")
			cfg := oteladapter.Config{Endpoint: c.endpoint(rcv), Protocol: protocol, Insecure: true, SampleRatio: 1,
				ServiceName: "fraiseql-observer", ServiceVersion: "test", Headers: map[string]string{"x-collector-token": "t0k"}}
			bridge, worker := newTracer(t, cfg), newTracer(t, cfg)
			ctx := t.Context()

			// The bridge publishes; its trace context goes with the message.
			pctx, pub := bridge.Start(ctx, "publish", ports.SpanProducer)
			pub.SetAttributes(ports.StringAttr("event.id", "ev-1"))
			hdr := ports.Headers{}
			bridge.Inject(pctx, hdr)
			pub.End()
			if !strings.HasPrefix(hdr["traceparent"], "00-") {
				t.Fatalf("injected headers %v: no traceparent", hdr)
			}

			// The worker continues the trace: event, then an action under it,
			// resumed with With after its own context was lost.
			ectx, ev := worker.Start(worker.Extract(ctx, hdr), "event", ports.SpanConsumer)
			if !ev.Recording() {
				t.Fatal("sampled span not recording")
			}
			_, act := worker.Start(worker.With(context.Background(), ev), "action", ports.SpanClient)
			act.SetAttributes(ports.StringAttr("observer", "orders"), ports.IntAttr("attempt", 2))
			act.SetError(errors.New("status 503"))
			h := http.Header{}
			worker.InjectHTTP(ectx, h)
			act.End()
			ev.End()
			for _, tr := range []*oteladapter.Tracer{bridge, worker} {
				if err := tr.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}

			spans := rcv.Wait(t, "3 spans", func(s []otlptest.Span) bool { return len(s) >= 3 })
			byName := map[string]otlptest.Span{}
			for _, s := range spans {
				byName[s.Name] = s
				if s.Protocol != protocol[:4] || s.Service != "fraiseql-observer" {
					t.Errorf("span %s arrived over %s from %q", s.Name, s.Protocol, s.Service)
				}
				if s.Headers["X-Collector-Token"] != "t0k" {
					t.Errorf("export of %s without the configured header: %v", s.Name, s.Headers)
				}
			}
			p, e, a := byName["publish"], byName["event"], byName["action"]
			if p.TraceID == "" || e.TraceID != p.TraceID || a.TraceID != p.TraceID {
				t.Errorf("trace ids: publish %s, event %s, action %s; want one trace", p.TraceID, e.TraceID, a.TraceID)
			}
			if e.ParentSpanID != p.SpanID || a.ParentSpanID != e.SpanID || p.ParentSpanID != "" {
				t.Errorf("links: event's parent %s (publish %s), action's parent %s (event %s)", e.ParentSpanID, p.SpanID, a.ParentSpanID, e.SpanID)
			}
			if p.Kind != "producer" || e.Kind != "consumer" || a.Kind != "client" {
				t.Errorf("kinds: %s %s %s", p.Kind, e.Kind, a.Kind)
			}
			if a.Attrs["observer"] != "orders" || a.Attrs["attempt"] != int64(2) || !a.Error || a.Message != "status 503" {
				t.Errorf("action span: %+v", a)
			}
			if p.Attrs["event.id"] != "ev-1" {
				t.Errorf("publish span attributes: %v", p.Attrs)
			}
			if want := "00-" + e.TraceID + "-" + e.SpanID + "-01"; h.Get("traceparent") != want {
				t.Errorf("HTTP traceparent %q, want %q", h.Get("traceparent"), want)
			}
		})
	}
}

// A ratio of 0 records no new trace, yet the context still propagates (a
// receiver downstream sees it is not sampled); a sampled parent is
// followed.
func TestSampling(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	tr := newTracer(t, oteladapter.Config{Endpoint: rcv.GRPCAddr, Protocol: oteladapter.ProtocolGRPC, Insecure: true, SampleRatio: 0})
	ctx, s := tr.Start(t.Context(), "dropped", ports.SpanInternal)
	if s.Recording() {
		t.Error("span recording at ratio 0")
	}
	hdr := ports.Headers{}
	tr.Inject(ctx, hdr)
	s.End()
	if !strings.HasSuffix(hdr["traceparent"], "-00") {
		t.Errorf("traceparent %q: want propagated, not sampled", hdr["traceparent"])
	}
	sampled := ports.Headers{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	_, child := tr.Start(tr.Extract(t.Context(), sampled), "kept", ports.SpanConsumer)
	if !child.Recording() {
		t.Error("the child of a sampled parent is not recording")
	}
	child.End()
	if err := tr.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Wait(t, "the kept span", func(s []otlptest.Span) bool { return len(otlptest.Named(s, "kept")) == 1 })
	if len(otlptest.Named(spans, "dropped")) != 0 {
		t.Error("an unsampled span was exported")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  oteladapter.Config
		want string
	}{
		{oteladapter.Config{Endpoint: "127.0.0.1:4317", Protocol: "thrift", SampleRatio: 1}, "protocol"},
		{oteladapter.Config{Endpoint: "127.0.0.1:4317", Protocol: "grpc", SampleRatio: 1.5}, "sample ratio"},
		{oteladapter.Config{Endpoint: "ftp://127.0.0.1:4317", Protocol: "grpc", SampleRatio: 1}, "scheme"},
		{oteladapter.Config{Endpoint: "collector", Protocol: "grpc", SampleRatio: 1}, "host:port"},
		{oteladapter.Config{Endpoint: "https://127.0.0.1:4318", Protocol: "http/protobuf", Insecure: true, SampleRatio: 1}, "insecure"},
	} {
		if _, err := oteladapter.New(t.Context(), c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error about %s", c.cfg, err, c.want)
		}
	}
}

func TestEnvProtocol(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	cases := []struct {
		env      map[string]string
		protocol string
	}{
		{nil, oteladapter.ProtocolHTTP},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, oteladapter.ProtocolGRPC},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, oteladapter.ProtocolGRPC},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": " ", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, oteladapter.ProtocolGRPC},
	}
	for _, c := range cases {
		if p := oteladapter.EnvProtocol(env(c.env)); p != c.protocol {
			t.Errorf("EnvProtocol(%v) = %s, want %s", c.env, p, c.protocol)
		}
	}
}

func TestCheckEndpoint(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		endpoint string
		insecure bool
		ok       bool
	}{
		{"", false, true}, {"collector:4317", true, true}, {"http://collector:4318", false, true},
		{"collector:", false, false}, {":4317", false, false}, {"ftp://collector", false, false},
		{"https://collector:4318", true, false}, {"http://", false, false},
	} {
		err := oteladapter.CheckEndpoint(oteladapter.Config{Endpoint: c.endpoint, Insecure: c.insecure})
		if (err == nil) != c.ok {
			t.Errorf("CheckEndpoint(%q, insecure %v) = %v, want ok %v", c.endpoint, c.insecure, err, c.ok)
		}
	}
}

// TestLongAttributesAreCut: a string attribute (an entity id can be as long
// as a change-log row allows) is exported cut to MaxAttributeLength
// characters: the SDK's export queue is bounded by count only, and its
// attributes were not bounded at all.
func TestLongAttributesAreCut(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	tr := newTracer(t, oteladapter.Config{Endpoint: rcv.GRPCAddr, Protocol: oteladapter.ProtocolGRPC, Insecure: true, SampleRatio: 1})
	_, s := tr.Start(t.Context(), "long", ports.SpanInternal)
	s.SetAttributes(ports.Attr{Key: "entity.id", Str: strings.Repeat("k", 100_000)}, ports.Attr{Key: "short", Str: "s"})
	s.End()
	if err := tr.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Wait(t, "the span", func(s []otlptest.Span) bool { return len(otlptest.Named(s, "long")) == 1 })
	attrs := otlptest.Named(spans, "long")[0].Attrs
	if v, _ := attrs["entity.id"].(string); len(v) != oteladapter.MaxAttributeLength || attrs["short"] != "s" {
		t.Fatalf("entity.id exported with %d characters (short %v), want %d", len(v), attrs["short"], oteladapter.MaxAttributeLength)
	}
}
