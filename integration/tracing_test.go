package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/internal/otlptest"
)

// One trace from the change-log row to the webhook, across processes: the
// bridge's publication span (exported over HTTP/protobuf) is the parent
// of the worker's event span (exported over gRPC) through the NATS
// message headers; the action span is the event span's child, and the
// webhook carries the action span as its traceparent.
func TestTraceFromBridgeThroughNATSToWorker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := newJSEnv(t)
	rcv := otlptest.Start(t)
	var mu sync.Mutex
	var traceparents []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		traceparents = append(traceparents, r.Header.Get("traceparent"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	bridge := b.config()
	e.configure(&bridge, "bridge")
	bridge.Tracing = config.TracingConfig{Endpoint: rcv.HTTPURL, Protocol: config.TracingHTTP, SampleRatio: 1}
	worker := b.config(webhookObserver("orders", "Order", hook.URL+"/hook", nil))
	e.configure(&worker, "worker")
	worker.Database.MigrateOnStart = false
	worker.Tracing = config.TracingConfig{Endpoint: rcv.GRPCAddr, Protocol: config.TracingGRPC, Insecure: true, SampleRatio: 1}
	bridgeApp, workerApp := b.start(t, bridge), b.start(t, worker)

	b.insert(t, orders(1)...)
	waitFor(t, "the webhook", func() bool { mu.Lock(); defer mu.Unlock(); return len(traceparents) == 1 })
	bridgeApp.stop(t) // flushes the spans
	workerApp.stop(t)

	spans := rcv.Wait(t, "publish, event and action spans", func(s []otlptest.Span) bool {
		return len(otlptest.Named(s, application.SpanPublish)) == 1 && len(otlptest.Named(s, application.SpanEvent)) == 1 &&
			len(otlptest.Named(s, application.SpanAction)) == 1
	})
	pub := otlptest.Named(spans, application.SpanPublish)[0]
	ev := otlptest.Named(spans, application.SpanEvent)[0]
	act := otlptest.Named(spans, application.SpanAction)[0]
	if pub.Protocol != "http" || ev.Protocol != "grpc" || pub.Kind != "producer" || ev.Kind != "consumer" || act.Kind != "client" {
		t.Errorf("publish %s/%s, event %s/%s, action %s", pub.Protocol, pub.Kind, ev.Protocol, ev.Kind, act.Kind)
	}
	if ev.TraceID != pub.TraceID || ev.ParentSpanID != pub.SpanID {
		t.Errorf("event span %s parent %s: want the child of the bridge's publish span %s/%s", ev.TraceID, ev.ParentSpanID, pub.TraceID, pub.SpanID)
	}
	if act.TraceID != pub.TraceID || act.ParentSpanID != ev.SpanID {
		t.Errorf("action span %s parent %s: want the child of event span %s", act.TraceID, act.ParentSpanID, ev.SpanID)
	}
	rows := b.rows(t)
	if pub.Attrs[application.AttrEventID] != rows[0].EventID || ev.Attrs[application.AttrEventID] != rows[0].EventID ||
		pub.Attrs[application.AttrPosition] != rows[0].Pos.String() {
		t.Errorf("spans not linked to the change-log row %s at %s: publish %v, event %v", rows[0].EventID, rows[0].Pos, pub.Attrs, ev.Attrs)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := "00-" + act.TraceID + "-" + act.SpanID + "-01"; traceparents[0] != want {
		t.Errorf("webhook traceparent %q, want %q", traceparents[0], want)
	}
}
