package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/httpguard"
	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// fixedNow is the executor's clock in every test.
var fixedNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

type capturedRequest struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
}

type testBundle struct {
	exec  *webhook.Executor
	srv   *httptest.Server
	reqs  chan capturedRequest
	conns *atomic.Int64 // connections the server accepted
	logs  *testsupport.Logs
}

// setup starts a receiver that records each request and answers with the
// status in the X-Test-Status request header (default 204), the
// X-Test-Retry-After header as Retry-After and X-Test-Body-Size bytes of
// body; X-Test-Hang makes it wait until the client gives up.
func setup(t *testing.T, cfg webhook.Config) *testBundle {
	t.Helper()
	b := &testBundle{
		reqs:  make(chan capturedRequest, 64),
		conns: new(atomic.Int64),
		logs:  &testsupport.Logs{},
	}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case b.reqs <- capturedRequest{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}:
		default:
		}
		if r.Header.Get("X-Test-Hang") != "" {
			<-r.Context().Done()
			panic(http.ErrAbortHandler) // no answer: see TestHTTPSPath
		}
		if v := r.Header.Get("X-Test-Retry-After"); v != "" {
			w.Header().Set("Retry-After", v)
		}
		if r.Header.Get("X-Test-Location") != "" {
			w.Header().Set("Location", r.Header.Get("X-Test-Location"))
		}
		status := http.StatusNoContent
		if v := r.Header.Get("X-Test-Status"); v != "" {
			status, _ = strconv.Atoi(v)
		}
		w.WriteHeader(status)
		if n, _ := strconv.Atoi(r.Header.Get("X-Test-Body-Size")); n > 0 {
			_, _ = io.WriteString(w, strings.Repeat("x", n))
		}
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)

	if cfg.Policy.Allowed == nil && !cfg.Policy.AllowPrivate {
		cfg.Policy = loopbackPolicy(t)
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixedNow }
	}
	exec, err := webhook.NewExecutor(cfg, slog.New(b.logs))
	if err != nil {
		t.Fatalf("NewExecutor: %v", err)
	}
	t.Cleanup(exec.Close)
	b.exec = exec
	return b
}

// next returns the request the receiver saw.
func (b *testBundle) next(t *testing.T) capturedRequest {
	t.Helper()
	select {
	case r := <-b.reqs:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("receiver saw no request")
		return capturedRequest{}
	}
}

func loopbackPolicy(t testing.TB) httpguard.Policy {
	t.Helper()
	p, err := httpguard.ParsePolicy(false, []string{"127.0.0.1/32", "::1/128"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newEvent() *domain.Event {
	return &domain.Event{
		ID:         "0b9e7d0c-6c6f-4f5e-9a57-6d0f7e1c2a11",
		EventType:  domain.EventUpdate,
		EntityType: "Order",
		EntityID:   "5f1c2f5a-8f6b-4a8e-9b0e-2a7c1c9f0d33",
		Data: map[string]any{
			"status":   "shipped",
			"total":    json.Number("12.50"),
			"note":     "he said \"hi\"\n\\ <b>&",
			"customer": map[string]any{"tier": "gold", "tags": []any{"a", "b"}},
		},
		Before:    map[string]any{"status": "paid"},
		Changes:   map[string]domain.Change{"status": {Old: "paid", New: "shipped"}},
		TenantID:  "tenant-1",
		Timestamp: time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC),
	}
}

var testObserver = &domain.Observer{Name: "order-shipped"}

func newAction(url string, edit func(*domain.WebhookAction)) *domain.Action {
	wh := &domain.WebhookAction{URL: url, Method: http.MethodPost, Timeout: 10 * time.Second}
	if edit != nil {
		edit(wh)
	}
	return &domain.Action{Name: "webhook-1", Type: domain.ActionWebhook, Webhook: wh}
}

func TestExecuteDefaultEnvelope(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	ev := newEvent()

	err := b.exec.Execute(t.Context(), ev, testObserver, newAction(b.srv.URL+"/hooks/orders", func(wh *domain.WebhookAction) { wh.Method = "" }))
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	req := b.next(t)
	if req.Method != http.MethodPost {
		t.Errorf("method = %s, want POST (the default)", req.Method)
	}
	if req.Path != "/hooks/orders" {
		t.Errorf("path = %s", req.Path)
	}
	if got := req.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := req.Header.Get("User-Agent"); got != "fraiseql-observer" {
		t.Errorf("User-Agent = %q", got)
	}
	if got := req.Header.Get("webhook-timestamp"); got != strconv.FormatInt(fixedNow.Unix(), 10) {
		t.Errorf("webhook-timestamp = %q, want %d", got, fixedNow.Unix())
	}
	if got := req.Header.Get("webhook-id"); got == "" {
		t.Error("webhook-id missing without a signing secret")
	}
	if got := req.Header.Get("webhook-signature"); got != "" {
		t.Errorf("webhook-signature = %q without a signing secret", got)
	}
	got, err := domain.DecodeEvent(req.Body)
	if err != nil {
		t.Fatalf("body is not an event envelope: %v\n%s", err, req.Body)
	}
	if got.ID != ev.ID || got.EntityType != ev.EntityType || got.EntityID != ev.EntityID || got.EventType != ev.EventType || got.TenantID != ev.TenantID {
		t.Errorf("envelope metadata = %+v, want that of %+v", got, ev)
	}
	if !got.Timestamp.Equal(ev.Timestamp) {
		t.Errorf("timestamp = %v, want %v", got.Timestamp, ev.Timestamp)
	}
	if !domain.ValuesEqual(got.Data, ev.Data) {
		t.Errorf("data = %v, want %v", got.Data, ev.Data)
	}
	if c := got.Changes["status"]; c.Old != "paid" || c.New != "shipped" {
		t.Errorf("changes = %v", got.Changes)
	}
}

func TestExecuteBodyTemplate(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	ev := newEvent()
	tmpl := domain.MustCompileTemplate(`{"note":"{{ note }}","total":{{ total }},"customer":{{ customer }},"tier":"{{ data.customer.tier }}","id":"{{ event.id }}","gone":"{{ nope.deep }}"}`)

	err := b.exec.Execute(t.Context(), ev, testObserver, newAction(b.srv.URL, func(wh *domain.WebhookAction) { wh.BodyTemplate = tmpl }))
	if err != nil {
		t.Fatalf("Execute with a missing placeholder must not fail: %v", err)
	}
	req := b.next(t)
	var body struct {
		Note     string         `json:"note"`
		Total    json.Number    `json:"total"`
		Customer map[string]any `json:"customer"`
		Tier     string         `json:"tier"`
		ID       string         `json:"id"`
		Gone     string         `json:"gone"`
	}
	dec := json.NewDecoder(strings.NewReader(string(req.Body)))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("rendered body is not valid JSON: %v\n%s", err, req.Body)
	}
	if body.Note != ev.Data["note"] {
		t.Errorf("note = %q, want %q", body.Note, ev.Data["note"])
	}
	if body.Total != "12.50" {
		t.Errorf("total = %q, want 12.50", body.Total)
	}
	if !domain.ValuesEqual(body.Customer, ev.Data["customer"]) {
		t.Errorf("customer = %v", body.Customer)
	}
	if body.Tier != "gold" || body.ID != ev.ID || body.Gone != "" {
		t.Errorf("tier, id, gone = %q, %q, %q", body.Tier, body.ID, body.Gone)
	}
	if got := req.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}

	recs := b.logs.Records()
	if len(recs) != 1 || recs[0].Level != slog.LevelWarn {
		t.Fatalf("want one warn record for the missing placeholder, got %+v", recs)
	}
	missing, _ := recs[0].Attrs["missing_placeholders"].([]string)
	if len(missing) != 1 || missing[0] != "nope.deep" {
		t.Errorf("missing attribute = %v, want [nope.deep]", recs[0].Attrs["missing_placeholders"])
	}
	if recs[0].Attrs["observer"] != testObserver.Name || recs[0].Attrs["action"] != "webhook-1" || recs[0].Attrs["event_id"] != ev.ID {
		t.Errorf("warn record attributes = %v", recs[0].Attrs)
	}
}

func TestExecuteMethodAndHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{UserAgent: "test-agent/1"})

	tests := []struct {
		name        string
		method      string
		headers     map[string]string
		wantType    string
		wantHeaders map[string]string
	}{
		{
			name:        "put with custom headers",
			method:      http.MethodPut,
			headers:     map[string]string{"X-Api-Key": "k-123", "X-Tenant": "t1"},
			wantType:    "application/json",
			wantHeaders: map[string]string{"X-Api-Key": "k-123", "X-Tenant": "t1", "User-Agent": "test-agent/1"},
		},
		{
			name:        "configured content type wins",
			method:      http.MethodPatch,
			headers:     map[string]string{"content-type": "application/cloudevents+json"},
			wantType:    "application/cloudevents+json",
			wantHeaders: map[string]string{"User-Agent": "test-agent/1"},
		},
		{
			name:     "configured user agent wins",
			method:   http.MethodDelete,
			headers:  map[string]string{"User-Agent": "custom"},
			wantType: "application/json",
			wantHeaders: map[string]string{
				"User-Agent": "custom",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Sequential: requests share the bundle's receiver.
			act := newAction(b.srv.URL+"/h", func(wh *domain.WebhookAction) {
				wh.Method = tt.method
				wh.Headers = tt.headers
			})
			if err := b.exec.Execute(t.Context(), newEvent(), testObserver, act); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			req := b.next(t)
			if req.Method != tt.method {
				t.Errorf("method = %s, want %s", req.Method, tt.method)
			}
			if got := req.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantType)
			}
			for k, v := range tt.wantHeaders {
				if got := req.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if len(req.Body) == 0 {
				t.Error("body is empty")
			}
		})
	}
}

// TestExecuteRequestTarget covers what the request takes from the URL:
// user information sent as basic auth (a configured Authorization header
// wins), an empty port, a custom method token, and URLs past the
// executor's memo of parsed URLs still reaching their own path.
func TestExecuteRequestTarget(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	userURL := strings.Replace(b.srv.URL, "http://", "http://alice:s3cr%40t@", 1) + "/u"
	if err := b.exec.Execute(t.Context(), newEvent(), testObserver, newAction(userURL, nil)); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cr@t"))
	if req := b.next(t); req.Header.Get("Authorization") != want || req.Path != "/u" {
		t.Errorf("Authorization = %q on %s, want %q on /u", req.Header.Get("Authorization"), req.Path, want)
	}
	act := newAction(userURL, func(wh *domain.WebhookAction) { wh.Headers = map[string]string{"Authorization": "Bearer t"} })
	if err := b.exec.Execute(t.Context(), newEvent(), testObserver, act); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if got := b.next(t).Header.Get("Authorization"); got != "Bearer t" {
		t.Errorf("Authorization = %q, want the configured header", got)
	}

	act = newAction(b.srv.URL+"/p", func(wh *domain.WebhookAction) { wh.Method = "purge" })
	if err := b.exec.Execute(t.Context(), newEvent(), testObserver, act); err != nil {
		t.Fatalf("Execute PURGE: %v", err)
	}
	if req := b.next(t); req.Method != "PURGE" {
		t.Errorf("method = %q, want PURGE", req.Method)
	}

	for i := range 1100 { // more distinct URLs than the executor keeps parsed
		path := "/n" + strconv.Itoa(i)
		if err := b.exec.Execute(t.Context(), newEvent(), testObserver, newAction(b.srv.URL+path, nil)); err != nil {
			t.Fatalf("Execute %s: %v", path, err)
		}
		if req := b.next(t); req.Path != path {
			t.Fatalf("request %d went to %s, want %s", i, req.Path, path)
		}
	}
}

// secretOf is the whsec_ form of key.
func secretOf(key []byte) string { return "whsec_" + base64.StdEncoding.EncodeToString(key) }

func TestExecuteSignature(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	key1 := []byte("0123456789abcdef0123456789abcdef")
	key2 := []byte("the-new-secret-after-rotation!!")

	hmacOf := func(key []byte, id, ts string, body []byte) string {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + ts + "." + string(body)))
		return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	tests := []struct {
		name    string
		secrets []string
		keys    [][]byte
		tmpl    *domain.Template
	}{
		{name: "one secret", secrets: []string{secretOf(key1)}, keys: [][]byte{key1}},
		{name: "one secret with template body", secrets: []string{secretOf(key1)}, keys: [][]byte{key1}, tmpl: domain.MustCompileTemplate(`{"s":"{{ status }}"}`)},
		{name: "rotated pair in configured order", secrets: []string{secretOf(key2), secretOf(key1)}, keys: [][]byte{key2, key1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := newEvent()
			act := newAction(b.srv.URL, func(wh *domain.WebhookAction) {
				wh.SigningSecrets = tt.secrets
				wh.BodyTemplate = tt.tmpl
			})
			if err := b.exec.Execute(t.Context(), ev, testObserver, act); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			req := b.next(t)
			id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
			if ts != strconv.FormatInt(fixedNow.Unix(), 10) {
				t.Errorf("webhook-timestamp = %q", ts)
			}
			var want []string
			for _, key := range tt.keys {
				want = append(want, hmacOf(key, id, ts, req.Body))
			}
			if got := req.Header.Get("webhook-signature"); got != strings.Join(want, " ") {
				t.Errorf("webhook-signature = %q, want %q", got, strings.Join(want, " "))
			}
		})
	}

	for _, bad := range []struct{ name, secret string }{
		{"raw secret", "plain-SECRETVALUE-without-prefix"},
		{"not base64", "whsec_!!not-base64-SECRETVALUE"},
		{"too short", secretOf([]byte("SECRETVALUE"))},
	} {
		t.Run("bad secret is permanent and not leaked: "+bad.name, func(t *testing.T) {
			act := newAction(b.srv.URL, func(wh *domain.WebhookAction) { wh.SigningSecrets = []string{secretOf(key1), bad.secret} })
			err := b.exec.Execute(t.Context(), newEvent(), testObserver, act)
			if !domain.IsPermanent(err) || !errors.Is(err, webhook.ErrInvalidSigningSecret) {
				t.Fatalf("Execute = %v, want a permanent ErrInvalidSigningSecret", err)
			}
			if !strings.Contains(err.Error(), "signing secret 2 of 2") {
				t.Errorf("error %q does not say which secret is bad", err)
			}
			for _, leak := range []string{"SECRETVALUE", bad.secret[len(bad.secret)-6:], secretOf(key1)[6:]} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q leaks %q", err, leak)
				}
			}
			select {
			case r := <-b.reqs:
				t.Errorf("request sent despite the bad secret: %+v", r)
			default:
			}
		})
	}
}

// TestRotatedSecretsVerifyWithReferenceLibrary checks a delivery signed
// with a rotated pair with the Standard Webhooks reference Go library: a
// receiver holding either secret accepts it, one holding another does not.
func TestRotatedSecretsVerifyWithReferenceLibrary(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{Now: time.Now}) // the reference checks the timestamp against its own clock
	oldSecret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	newSecret := secretOf([]byte("a-brand-new-32-byte-signing-key!"))
	otherSecret := secretOf([]byte("some-other-receivers-signing-key"))

	act := newAction(b.srv.URL, func(wh *domain.WebhookAction) { wh.SigningSecrets = []string{newSecret, oldSecret} })
	if err := b.exec.Execute(t.Context(), newEvent(), testObserver, act); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	req := b.next(t)
	if n := len(strings.Fields(req.Header.Get("webhook-signature"))); n != 2 {
		t.Fatalf("webhook-signature %q has %d signatures, want 2", req.Header.Get("webhook-signature"), n)
	}
	for _, tt := range []struct {
		name   string
		secret string
		ok     bool
	}{
		{"new secret", newSecret, true},
		{"old secret", oldSecret, true},
		{"unrelated secret", otherSecret, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wh, err := standardwebhooks.NewWebhook(tt.secret)
			if err != nil {
				t.Fatal(err)
			}
			err = wh.Verify(req.Body, req.Header)
			if tt.ok && err != nil {
				t.Errorf("reference Verify with the %s: %v", tt.name, err)
			}
			if !tt.ok && err == nil {
				t.Errorf("reference Verify accepted a signature made without the %s", tt.name)
			}
		})
	}
}

func TestParseSigningSecret(t *testing.T) {
	t.Parallel()
	key24 := []byte("MfKQ9r8GKYqrTwjUPD8ILPZI")
	tests := []struct {
		name    string
		secret  string
		want    []byte
		wantErr string
	}{
		{name: "spec test vector secret", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", want: mustDecode(t, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")},
		{name: "24 bytes", secret: secretOf(key24), want: key24},
		{name: "64 bytes", secret: secretOf([]byte(strings.Repeat("k", 64))), want: []byte(strings.Repeat("k", 64))},
		{name: "no prefix", secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: `"whsec_" followed by base64`},
		{name: "raw text", secret: "my webhook secret", wantErr: `"whsec_" followed by base64`},
		{name: "empty", secret: "", wantErr: `"whsec_" followed by base64`},
		{name: "prefix only", secret: "whsec_", wantErr: "decodes to 0 bytes"},
		{name: "url-safe alphabet", secret: "whsec_" + base64.URLEncoding.EncodeToString([]byte("\xfb\xff\xfe-24-bytes-of-key-material")), wantErr: "not standard base64"},
		{name: "missing padding", secret: "whsec_" + base64.RawStdEncoding.EncodeToString([]byte("twenty-five-bytes-of-key!")), wantErr: "not standard base64"},
		{name: "too short", secret: secretOf([]byte("short-key")), wantErr: "decodes to 9 bytes"},
		{name: "too long", secret: secretOf([]byte(strings.Repeat("k", 65))), wantErr: "decodes to 65 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := webhook.ParseSigningSecret(tt.secret)
			if tt.wantErr == "" {
				if err != nil || string(got) != string(tt.want) {
					t.Fatalf("ParseSigningSecret = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, webhook.ErrInvalidSigningSecret) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseSigningSecret error = %v, want ErrInvalidSigningSecret mentioning %q", err, tt.wantErr)
			}
			if rest := strings.TrimPrefix(tt.secret, "whsec_"); len(rest) >= 4 && strings.Contains(err.Error(), rest[:4]) {
				t.Errorf("error %q quotes the secret", err)
			}
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExecuteWebhookID(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	ev := newEvent()

	send := func(t *testing.T, ev *domain.Event, obs, action string) string {
		t.Helper()
		act := newAction(b.srv.URL, nil)
		act.Name = action
		if err := b.exec.Execute(t.Context(), ev, &domain.Observer{Name: obs}, act); err != nil {
			t.Fatalf("Execute: %v", err)
		}
		return b.next(t).Header.Get("webhook-id")
	}
	first := send(t, ev, "order-shipped", "webhook-1")
	retry := send(t, ev, "order-shipped", "webhook-1")
	other := send(t, ev, "order-shipped", "webhook-2")
	otherObs := send(t, ev, "order-paid", "webhook-1")
	ev2 := newEvent()
	ev2.ID = "7d1f0e3a-0000-4000-8000-000000000001"
	otherEvent := send(t, ev2, "order-shipped", "webhook-1")

	sum := sha256.Sum256([]byte("order-shipped/webhook-1"))
	if want := ev.ID + "." + hex.EncodeToString(sum[:])[:12]; first != want {
		t.Errorf("webhook-id = %q, want %q", first, want)
	}
	if retry != first {
		t.Errorf("retry webhook-id = %q, want the first %q", retry, first)
	}
	for name, id := range map[string]string{"other action": other, "other observer": otherObs, "other event": otherEvent} {
		if id == first {
			t.Errorf("%s reuses webhook-id %q", name, id)
		}
	}
	if !strings.HasPrefix(otherEvent, ev2.ID+".") {
		t.Errorf("webhook-id %q does not start with the event id", otherEvent)
	}
}

func TestExecuteStatus(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})

	tests := []struct {
		status     int
		retryAfter string
		location   string
		wantErr    bool
		permanent  bool
		wantDelay  time.Duration
	}{
		{status: 200},
		{status: 202},
		{status: 204},
		{status: 301, location: "/moved", wantErr: true, permanent: true},
		{status: 307, location: "http://10.0.0.1/", wantErr: true, permanent: true},
		{status: 400, wantErr: true, permanent: true},
		{status: 401, wantErr: true, permanent: true},
		{status: 404, wantErr: true, permanent: true},
		{status: 409, wantErr: true, permanent: true},
		{status: 408, wantErr: true},
		{status: 425, wantErr: true},
		{status: 429, retryAfter: "120", wantErr: true, wantDelay: 120 * time.Second},
		{status: 429, retryAfter: fixedNow.Add(90 * time.Second).Format(http.TimeFormat), wantErr: true, wantDelay: 90 * time.Second},
		{status: 429, retryAfter: fixedNow.Add(-time.Hour).Format(http.TimeFormat), wantErr: true},
		{status: 429, retryAfter: "soon", wantErr: true},
		{status: 429, retryAfter: "-5", wantErr: true},
		{status: 429, retryAfter: "86400", wantErr: true, wantDelay: time.Hour},
		{status: 429, retryAfter: "99999999999999999999999", wantErr: true, wantDelay: time.Hour},
		{status: 500, wantErr: true},
		{status: 502, wantErr: true},
		{status: 503, retryAfter: "5", wantErr: true, wantDelay: 5 * time.Second},
		{status: 503, retryAfter: fixedNow.Add(48 * time.Hour).Format(http.TimeFormat), wantErr: true, wantDelay: time.Hour},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status)+" "+tt.retryAfter, func(t *testing.T) {
			// Sequential: requests share the bundle's receiver.
			act := newAction(b.srv.URL+"/hooks/orders?token=QUERYSECRET", func(wh *domain.WebhookAction) {
				wh.SigningSecrets = []string{secretOf([]byte("SIGNINGKEY-of-24-bytes-xx"))}
				wh.Headers = map[string]string{"X-Test-Status": strconv.Itoa(tt.status)}
				if tt.retryAfter != "" {
					wh.Headers["X-Test-Retry-After"] = tt.retryAfter
				}
				if tt.location != "" {
					wh.Headers["X-Test-Location"] = tt.location
				}
			})
			err := b.exec.Execute(t.Context(), newEvent(), testObserver, act)
			req := b.next(t)
			if req.RawQuery != "token=QUERYSECRET" {
				t.Errorf("query string not sent: %q", req.RawQuery)
			}
			select {
			case r := <-b.reqs:
				t.Errorf("a second request was made (redirect followed?): %s %s", r.Method, r.Path)
			default:
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Execute = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Execute = nil, want an error")
			}
			if got := domain.IsPermanent(err); got != tt.permanent {
				t.Errorf("permanent = %v, want %v (%v)", got, tt.permanent, err)
			}
			if got := domain.RetryAfter(err); got != tt.wantDelay {
				t.Errorf("retry after = %v, want %v", got, tt.wantDelay)
			}
			var serr *webhook.StatusError
			if !errors.As(err, &serr) || serr.StatusCode != tt.status {
				t.Fatalf("error %v does not carry status %d", err, tt.status)
			}
			msg := err.Error()
			for _, want := range []string{"POST", b.srv.URL, strconv.Itoa(tt.status)} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not name %q", msg, want)
				}
			}
			for _, leak := range []string{"/hooks/orders", "QUERYSECRET", "token=", "whsec_", secretOf([]byte("SIGNINGKEY-of-24-bytes-xx"))[6:]} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q leaks %q", msg, leak)
				}
			}
		})
	}
}

func TestExecuteErrorBodyBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	act := newAction(b.srv.URL, func(wh *domain.WebhookAction) {
		wh.Headers = map[string]string{"X-Test-Status": "500", "X-Test-Body-Size": "10000"}
	})
	err := b.exec.Execute(t.Context(), newEvent(), testObserver, act)
	var serr *webhook.StatusError
	if !errors.As(err, &serr) {
		t.Fatalf("Execute = %v, want a StatusError", err)
	}
	if serr.Body != strings.Repeat("x", 256) {
		t.Errorf("quoted body has %d bytes, want the first 256", len(serr.Body))
	}
	if len(err.Error()) > 600 {
		t.Errorf("error text is %d bytes long", len(err.Error()))
	}
}

func TestExecuteReusesConnections(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	statuses := []string{"200", "500", "404", "204", "503", "429"}
	for i := range 24 {
		act := newAction(b.srv.URL, func(wh *domain.WebhookAction) {
			wh.Headers = map[string]string{"X-Test-Status": statuses[i%len(statuses)], "X-Test-Body-Size": "4096"}
		})
		_ = b.exec.Execute(t.Context(), newEvent(), testObserver, act)
		b.next(t)
	}
	if got := b.conns.Load(); got != 1 {
		t.Errorf("24 sequential deliveries opened %d connections, want 1", got)
	}
}

func TestExecuteTimeoutIsTransient(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	act := newAction(b.srv.URL, func(wh *domain.WebhookAction) {
		wh.Timeout = 100 * time.Millisecond
		wh.Headers = map[string]string{"X-Test-Hang": "1"}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := b.exec.Execute(ctx, newEvent(), testObserver, act)
	if err == nil || domain.IsPermanent(err) {
		t.Fatalf("Execute = %v, want a transient error", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not report the deadline", err)
	}
	if ctx.Err() != nil {
		t.Error("the action timeout did not end the request; the test deadline did")
	}
}

func TestExecuteConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	err = b.exec.Execute(t.Context(), newEvent(), testObserver, newAction("http://"+addr+"/hook", nil))
	if err == nil || domain.IsPermanent(err) {
		t.Fatalf("Execute = %v, want a transient error", err)
	}
	if errors.Is(err, httpguard.ErrForbiddenAddress) {
		t.Fatalf("allowed address reported as forbidden: %v", err)
	}
}

func TestExecuteGuardRefuses(t *testing.T) {
	t.Parallel()
	// Default policy: nothing private is allowed.
	b := setup(t, webhook.Config{})
	strict, err := webhook.NewExecutor(webhook.Config{}, slog.New(b.logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(strict.Close)
	_, port, err := net.SplitHostPort(b.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		url  string
	}{
		{"loopback", "http://127.0.0.1:" + port + "/hook"},
		{"localhost", "http://localhost:" + port + "/hook"},
		{"private", "http://10.0.0.1:" + port + "/hook"},
		{"metadata", "http://169.254.169.254/latest/meta-data/"},
		{"ipv6 loopback", "http://[::1]:" + port + "/hook"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := strict.Execute(t.Context(), newEvent(), testObserver, newAction(tt.url, nil))
			if !domain.IsPermanent(err) {
				t.Fatalf("Execute = %v, want a permanent error", err)
			}
			if !errors.Is(err, httpguard.ErrForbiddenAddress) {
				t.Fatalf("Execute = %v, want ErrForbiddenAddress", err)
			}
		})
	}
	t.Cleanup(func() {
		if got := b.conns.Load(); got != 0 {
			t.Errorf("the guard let %d connections through", got)
		}
	})
}

func TestExecuteInvalidConfig(t *testing.T) {
	t.Parallel()
	b := setup(t, webhook.Config{})
	tests := []struct {
		name string
		act  *domain.Action
	}{
		{"no webhook config", &domain.Action{Name: "w", Type: domain.ActionWebhook}},
		{"relative url", newAction("/hook", nil)},
		{"ftp url", newAction("ftp://127.0.0.1/x", nil)},
		{"bad method", newAction(b.srv.URL, func(wh *domain.WebhookAction) { wh.Method = "BAD METHOD" })},
		{"method with a slash", newAction(b.srv.URL, func(wh *domain.WebhookAction) { wh.Method = "GET/1" })},
		{"method not ascii", newAction(b.srv.URL, func(wh *domain.WebhookAction) { wh.Method = "PÜT" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := b.exec.Execute(t.Context(), newEvent(), testObserver, tt.act); !domain.IsPermanent(err) {
				t.Fatalf("Execute = %v, want a permanent error", err)
			}
		})
	}
}

func TestNewExecutorValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    webhook.Config
		logger *slog.Logger
	}{
		{"nil logger", webhook.Config{}, nil},
		{"negative idle connections", webhook.Config{MaxIdleConnsPerHost: -1}, slog.New(&testsupport.Logs{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := webhook.NewExecutor(tt.cfg, tt.logger); err == nil {
				t.Fatal("NewExecutor = nil error")
			}
		})
	}
}

func BenchmarkWebhookExecute(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	exec, err := webhook.NewExecutor(webhook.Config{Policy: loopbackPolicy(b)}, slog.New(&testsupport.Logs{}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(exec.Close)
	ev := newEvent()
	act := newAction(srv.URL+"/hook", func(wh *domain.WebhookAction) { wh.SigningSecrets = []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} })
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := exec.Execute(ctx, ev, testObserver, act); err != nil {
			b.Fatal(err)
		}
	}
}

// Header values from the environment (headers_env) are sent like the
// others; a receiver that echoes them (or a credential-named header) in a
// failure's body does not put them in the error, which goes to logs and
// dead letters, even when the quote's length limit cuts them.
func TestExecuteSecretHeaders(t *testing.T) {
	t.Parallel()
	const token = "tok-9f8e7d6c5b4a39281706"
	const apiKey = "key-1a2b3c4d5e6f"
	got := make(chan http.Header, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		if r.URL.Query().Get("echo") == "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		pad, _ := strconv.Atoi(r.URL.Query().Get("pad"))
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, strings.Repeat("x", pad)+"key="+r.Header.Get("X-Api-Key")+" auth="+r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)
	exec, err := webhook.NewExecutor(webhook.Config{Policy: loopbackPolicy(t)}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(exec.Close)
	act := func(query string) *domain.Action {
		return newAction(srv.URL+"/h"+query, func(wh *domain.WebhookAction) {
			wh.Headers = map[string]string{"X-Api-Key": apiKey, "X-Team": "ops"}
			wh.SecretHeaders = map[string]string{"Authorization": "Bearer " + token}
		})
	}

	if err := exec.Execute(t.Context(), newEvent(), testObserver, act("")); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if h := <-got; h.Get("Authorization") != "Bearer "+token || h.Get("X-Api-Key") != apiKey || h.Get("X-Team") != "ops" {
		t.Fatalf("headers sent = %v, want the environment's Authorization with the fixed headers", h)
	}

	leaks := []string{token, token[:8], token[len(token)-8:], apiKey, "Bearer tok"}
	for _, tt := range []struct {
		name string
		pad  int
	}{
		{"whole echo", 0},
		{"token cut by the quote limit", 256 - len("key="+apiKey+" auth=Bearer ") - 10},
		{"key cut by the quote limit", 256 - len("key=") - 6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := exec.Execute(t.Context(), newEvent(), testObserver, act("?echo=1&pad="+strconv.Itoa(tt.pad)))
			<-got
			var serr *webhook.StatusError
			if !errors.As(err, &serr) || serr.StatusCode != http.StatusUnauthorized || domain.IsPermanent(err) != true {
				t.Fatalf("Execute = %v, want a permanent 401", err)
			}
			msg := err.Error()
			for _, leak := range leaks {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q carries %q", msg, leak)
				}
			}
			if !strings.Contains(msg, "(redacted)") {
				t.Errorf("error %q does not show where the credential was", msg)
			}
		})
	}
}

// A receiver that echoes the URL's credentials (its user information,
// path and query: a Slack webhook's path is its secret) or a header sent
// has them removed from the recorded response (the delivery log) and from
// the error, for failures and, with the log asking for every answer, for
// successes too.
func TestExecuteRedactsEchoedURLSecrets(t *testing.T) {
	t.Parallel()
	const (
		user, pass = "svc-user", "pa55-w0rd-xyz"
		pathToken  = "T0AB1CD2/B3EF4GH5/xoxhooksecret42"
		query      = "qwerty-123-abc"
		apiKey     = "key-1a2b3c4d5e6f"
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusNotFound
		if r.URL.Query().Get("ok") != "" {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, `{"path":%q,"query":%q,"auth":%q,"key":%q}`, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"))
	}))
	t.Cleanup(srv.Close)
	exec, err := webhook.NewExecutor(webhook.Config{Policy: loopbackPolicy(t)}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(exec.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	const sig = "Ab%2Bcd%2F9876%3D" // a base64 signature as the URL carries it (Ab+cd/9876=)
	leaks := []string{pass, "xoxhooksecret42", query, apiKey, base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)), sig, "Ab+cd/9876="}
	for _, ok := range []bool{false, true} {
		target := "http://" + user + ":" + pass + "@" + u.Host + "/" + pathToken + "?token=" + query + "&format=json&sig=" + sig
		if ok {
			target += "&ok=yes"
		}
		act := newAction(target, func(wh *domain.WebhookAction) { wh.Headers = map[string]string{"X-Api-Key": apiKey} })
		ctx, note := ports.WithResponseNote(t.Context())
		err := exec.Execute(ctx, newEvent(), testObserver, act)
		if ok != (err == nil) {
			t.Fatalf("ok=%v: Execute = %v", ok, err)
		}
		status, body := note.Get()
		texts := map[string]string{"recorded response": string(body)}
		if err != nil {
			texts["error"] = err.Error()
		}
		if status == 0 || !strings.Contains(string(body), "(redacted)") {
			t.Errorf("ok=%v: recorded %d %q, want the answer with the credentials redacted", ok, status, body)
		}
		if !strings.Contains(string(body), "format=json") {
			t.Errorf("ok=%v: recorded %q: a query value that is no credential was redacted", ok, body)
		}
		for what, text := range texts {
			for _, leak := range leaks {
				if strings.Contains(text, leak) {
					t.Errorf("ok=%v: %s %q carries %q", ok, what, text, leak)
				}
			}
		}
	}
}

// A body template's missing placeholder is logged once a minute per
// action, not once per event.
func TestExecuteLogsMissingPlaceholdersOnceAMinute(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(srv.Close)
	logs := &testsupport.Logs{}
	exec, err := webhook.NewExecutor(webhook.Config{Policy: loopbackPolicy(t)}, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(exec.Close)
	act := newAction(srv.URL+"/h", func(wh *domain.WebhookAction) {
		wh.BodyTemplate = domain.MustCompileTemplate(`{"status": "{{ no_such_field }}"}`)
	})
	for range 5 {
		if err := exec.Execute(t.Context(), newEvent(), testObserver, act); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(logs.Find("webhook body template has missing placeholders (logged at most once a minute per action)")); n != 1 {
		t.Errorf("%d warnings for 5 events, want 1", n)
	}
}

type traceKey struct{}

// With Propagate, the request carries the trace context of its ctx (the
// action's span); without, no traceparent is sent.
func TestExecutePropagatesTheTraceContext(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	propagate := func(ctx context.Context, h http.Header) {
		if v, ok := ctx.Value(traceKey{}).(string); ok {
			h.Set("traceparent", v)
		}
	}
	for _, c := range []struct {
		name string
		cfg  webhook.Config
		want string
	}{
		{"propagating", webhook.Config{Propagate: propagate}, tp},
		{"not propagating", webhook.Config{}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, c.cfg)
			ctx := context.WithValue(t.Context(), traceKey{}, tp)
			if err := b.exec.Execute(ctx, newEvent(), testObserver, newAction(b.srv.URL+"/hook", nil)); err != nil {
				t.Fatal(err)
			}
			if got := b.next(t).Header.Get("traceparent"); got != c.want {
				t.Errorf("traceparent = %q, want %q", got, c.want)
			}
		})
	}
}
