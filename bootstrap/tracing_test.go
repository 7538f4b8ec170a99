package bootstrap_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/otlptest"
)

// traceReceiver is a webhook receiver recording each request's
// traceparent.
type traceReceiver struct {
	mu           sync.Mutex
	traceparents []string
}

func (r *traceReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	r.mu.Lock()
	r.traceparents = append(r.traceparents, req.Header.Get("traceparent"))
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *traceReceiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.traceparents...)
}

// runTraced runs the memory topology with a webhook observer and the
// tracing section given, posts one event and returns the traceparent the
// webhook received.
func runTraced(t *testing.T, tracing string, env func(string) (string, bool)) string {
	t.Helper()
	recv := &traceReceiver{}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	body := "topology = \"memory\"\n[http]\nlisten = \"\"\n[security]\nallowed_networks = [\"127.0.0.1/32\"]\n" + tracing + `
[[observers]]
name = "orders"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
url = "` + srv.URL + `/hook"
`
	cfg, err := config.Load(writeFile(t, body), nil)
	if err != nil {
		t.Fatal(err)
	}
	app, err := bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: slog.New(slog.DiscardHandler), LookupEnv: env, Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	if _, err := app.MemorySource().Append(t.Context(), domain.Event{ID: "ev-1", EventType: domain.EventInsert, EntityType: "Order",
		EntityID: "o1", Data: map[string]any{}, Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the webhook", func() bool { return len(recv.got()) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	app.Close() // flushes the spans
	return recv.got()[0]
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := t.TempDir() + "/config.toml"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkTrace checks the event span and its action span, and that the
// webhook carried the action span as its parent.
func checkTrace(t *testing.T, rcv *otlptest.Receiver, traceparent string) {
	t.Helper()
	spans := rcv.Wait(t, "event and action spans", func(s []otlptest.Span) bool {
		return len(otlptest.Named(s, application.SpanEvent)) == 1 && len(otlptest.Named(s, application.SpanAction)) == 1
	})
	ev, act := otlptest.Named(spans, application.SpanEvent)[0], otlptest.Named(spans, application.SpanAction)[0]
	if act.TraceID != ev.TraceID || act.ParentSpanID != ev.SpanID {
		t.Errorf("action span %s/%s, parent %s: want the child of event span %s/%s", act.TraceID, act.SpanID, act.ParentSpanID, ev.TraceID, ev.SpanID)
	}
	if ev.Attrs[application.AttrEventID] != "ev-1" || ev.Service != "fraiseql-observer" {
		t.Errorf("event span: %+v", ev)
	}
	if act.Attrs[application.AttrObserver] != "orders" || act.Attrs[application.AttrActionType] != "webhook" ||
		act.Attrs[application.AttrOutcome] != application.OutcomeSucceeded || act.Attrs[application.AttrAttempt] != int64(1) ||
		!strings.HasPrefix(act.Attrs[application.AttrEndpointHost].(string), "127.0.0.1:") {
		t.Errorf("action span attributes: %v", act.Attrs)
	}
	if want := "00-" + act.TraceID + "-" + act.SpanID + "-01"; traceparent != want {
		t.Errorf("webhook traceparent %q, want the action span %q", traceparent, want)
	}
}

// [tracing] names the collector: spans arrive over gRPC, and the webhook
// carries the action span's trace context.
func TestTracingFromTheConfiguration(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	env := func(k string) (string, bool) {
		if k == "COLLECTOR_TOKEN" {
			return "t0k", true
		}
		return "", false
	}
	section := "[tracing]\nendpoint = \"" + rcv.GRPCAddr + "\"\nprotocol = \"grpc\"\ninsecure = true\nheaders_env = { \"x-collector-token\" = \"COLLECTOR_TOKEN\" }\n"
	tp := runTraced(t, section, env)
	checkTrace(t, rcv, tp)
	for _, s := range rcv.Spans() {
		if s.Headers["X-Collector-Token"] != "t0k" {
			t.Errorf("span %s exported without the header from tracing.headers_env: %v", s.Name, s.Headers)
		}
	}

	// A header whose variable is not set stops the start, naming the key.
	cfg, err := config.Load(writeFile(t, "topology = \"memory\"\n"+section), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: slog.New(slog.DiscardHandler), LookupEnv: func(string) (string, bool) { return "", false }})
	var ce *config.ConfigError
	if !errors.As(err, &ce) || ce.Key != "tracing.headers_env" || !strings.Contains(ce.Msg, "COLLECTOR_TOKEN") {
		t.Errorf("New without the header's variable = %v, want a ConfigError on tracing.headers_env", err)
	}
}

// No [tracing] and no OTEL_EXPORTER_OTLP_* variable: off, no traceparent.
func TestTracingOff(t *testing.T) {
	t.Parallel()
	noEnv := func(string) (string, bool) { return "", false }
	if tp := runTraced(t, "", noEnv); tp != "" {
		t.Errorf("traceparent %q sent with tracing off", tp)
	}
}

// The standard variables alone turn tracing on (HTTP/protobuf here, as
// OTEL_EXPORTER_OTLP_PROTOCOL says). Not parallel: it sets the process's
// environment, which the exporter reads.
func TestTracingFromTheEnvironment(t *testing.T) {
	rcv := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.HTTPURL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	tp := runTraced(t, "", os.LookupEnv)
	checkTrace(t, rcv, tp)
	for _, s := range rcv.Spans() {
		if s.Protocol != "http" {
			t.Errorf("span %s arrived over %s, want http", s.Name, s.Protocol)
		}
	}
}
