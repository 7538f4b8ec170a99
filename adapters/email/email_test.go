package email_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/email"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/smtptest"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// fixedNow is the executor's clock (the Date header) in every test.
var fixedNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

const testPassword = "s3cr3t-P@ssw0rd"

var testObserver = &domain.Observer{Name: "order-shipped"}

// newExecutor builds an executor for ts (tls none unless edit says
// otherwise) that trusts the test certificate.
func newExecutor(t testing.TB, ts *smtptest.Server, edit func(*email.Config)) (*email.Executor, *testsupport.Logs) {
	t.Helper()
	cfg := email.Config{
		Host:     ts.Host,
		Port:     ts.Port,
		From:     "Boutique Été <orders@example.com>",
		TLS:      email.TLSNone,
		Timeout:  5 * time.Second,
		HELOName: "observer.test",
		Now:      func() time.Time { return fixedNow },
	}
	cfg.TLSConfig = newTLSConfig(ts)
	if edit != nil {
		edit(&cfg)
	}
	logs := &testsupport.Logs{}
	exec, err := email.NewExecutor(cfg, slog.New(logs))
	if err != nil {
		t.Fatalf("NewExecutor: %v", err)
	}
	t.Cleanup(exec.Close)
	return exec, logs
}

func newEvent() *domain.Event {
	return &domain.Event{
		ID:         "0b9e7d0c-6c6f-4f5e-9a57-6d0f7e1c2a11",
		EventType:  domain.EventUpdate,
		EntityType: "Order",
		EntityID:   "5f1c2f5a-8f6b-4a8e-9b0e-2a7c1c9f0d33",
		Data: map[string]any{
			"status": "shipped",
			"total":  json.Number("12.50"),
			"note":   `<b>fragile</b> & "urgent"`,
			"customer": map[string]any{
				"name":  "Zoë Ünïcode",
				"email": "zoe@example.com",
			},
			"watchers": []any{"w1@example.com", "Watcher Two <w2@example.com>"},
			"bad":      "not-an-address",
		},
		Timestamp: time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC),
	}
}

// newAction is a complete email action changed by edit.
func newAction(edit func(*domain.EmailAction)) *domain.Action {
	e := &domain.EmailAction{
		To:           []string{"Ops <ops@example.com>"},
		Subject:      "Order update",
		BodyTemplate: domain.MustCompileTemplate("Order {{ event.entity_id }} is {{ status }}."),
	}
	if edit != nil {
		edit(e)
	}
	return &domain.Action{Name: "email-1", Type: domain.ActionEmail, Email: e}
}

// parsed is a received message taken apart.
type parsed struct {
	Header mail.Header
	Parts  map[string]string // media type -> decoded body
	Type   string            // top-level media type
}

func parse(t *testing.T, data []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the message is not RFC 5322: %v\n%s", err, data)
	}
	p := parsed{Header: msg.Header, Parts: map[string]string{}}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	p.Type = mt
	if !strings.HasPrefix(mt, "multipart/") {
		p.Parts[mt] = decodeBody(t, msg.Header.Get("Content-Transfer-Encoding"), params["charset"], msg.Body)
		return p
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart() // undoes quoted-printable itself
		if errors.Is(err, io.EOF) {
			return p
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		pt, pp, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part Content-Type: %v", err)
		}
		p.Parts[pt] = decodeBody(t, part.Header.Get("Content-Transfer-Encoding"), pp["charset"], part)
	}
}

func decodeBody(t *testing.T, cte, charset string, r io.Reader) string {
	t.Helper()
	if !strings.EqualFold(charset, "utf-8") {
		t.Errorf("charset = %q, want UTF-8", charset)
	}
	if strings.EqualFold(cte, "quoted-printable") {
		r = quotedprintable.NewReader(r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

func decodeHeader(t *testing.T, v string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		t.Fatalf("decode header %q: %v", v, err)
	}
	return s
}

func addresses(t *testing.T, h mail.Header, key string) []*mail.Address {
	t.Helper()
	list, err := h.AddressList(key)
	if err != nil {
		t.Fatalf("%s header %q: %v", key, h.Get(key), err)
	}
	return list
}

func TestExecuteRendersEveryField(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	ev := newEvent()
	act := newAction(func(e *domain.EmailAction) {
		e.ToTemplate = domain.MustCompileTemplate("{{ customer.name }} <{{ customer.email }}>")
		e.Cc = []string{"Sales <sales@example.com>"}
		e.Bcc = []string{"audit@example.com"}
		e.ReplyTo = "Support <support@example.com>"
		e.Subject = ""
		e.SubjectTemplate = domain.MustCompileTemplate("Commande {{ status }} pour {{ customer.name }}\r\nBcc: evil@example.com")
		e.BodyTemplate = domain.MustCompileTemplate("Hello {{ customer.name }}, total {{ total }}. Note: {{ note }}")
		e.HTMLBodyTemplate = domain.MustCompileTemplate("<p>Hello {{ customer.name }}</p><p>{{ note }}</p>")
	})
	if err := exec.Execute(t.Context(), ev, testObserver, act); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	got := ts.Next(t)

	// Envelope: every recipient, bcc included; nothing the subject tried to add.
	if got.From != "orders@example.com" {
		t.Errorf("MAIL FROM = %q", got.From)
	}
	wantRcpts := []string{"ops@example.com", "zoe@example.com", "sales@example.com", "audit@example.com"}
	if !slices.Equal(got.Rcpts, wantRcpts) {
		t.Errorf("RCPT TO = %v, want %v", got.Rcpts, wantRcpts)
	}
	if got.HELO != "observer.test" {
		t.Errorf("EHLO name = %q, want the configured helo_name", got.HELO)
	}

	m := parse(t, got.Data)
	h := m.Header
	from := addresses(t, h, "From")
	if len(from) != 1 || from[0].Name != "Boutique Été" || from[0].Address != "orders@example.com" {
		t.Errorf("From = %v", from)
	}
	to := addresses(t, h, "To")
	if len(to) != 2 || to[0].Address != "ops@example.com" || to[1].Name != "Zoë Ünïcode" || to[1].Address != "zoe@example.com" {
		t.Errorf("To = %v (header %q)", to, h.Get("To"))
	}
	if cc := addresses(t, h, "Cc"); len(cc) != 1 || cc[0].Address != "sales@example.com" {
		t.Errorf("Cc = %v", cc)
	}
	if rt := addresses(t, h, "Reply-To"); len(rt) != 1 || rt[0].Address != "support@example.com" {
		t.Errorf("Reply-To = %v", rt)
	}
	if _, ok := h["Bcc"]; ok || bytes.Contains(got.Data, []byte("audit@example.com")) {
		t.Errorf("the bcc recipient appears in the message:\n%s", got.Data)
	}
	if bytes.Contains(got.Data, []byte("\r\nBcc:")) || slices.Contains(got.Rcpts, "evil@example.com") {
		t.Errorf("the subject's line break injected a header:\n%s", got.Data)
	}

	rawSubject := h.Get("Subject")
	if !strings.Contains(rawSubject, "=?UTF-8?") {
		t.Errorf("non-ASCII Subject is not an encoded word: %q", rawSubject)
	}
	if s, want := decodeHeader(t, rawSubject), "Commande shipped pour Zoë Ünïcode  Bcc: evil@example.com"; s != want {
		t.Errorf("Subject = %q, want %q", s, want)
	}
	if d, err := h.Date(); err != nil || !d.Equal(fixedNow) {
		t.Errorf("Date = %q (%v), want %v from the clock", h.Get("Date"), err, fixedNow)
	}
	if id := h.Get("Message-Id"); !strings.HasPrefix(id, "<"+ev.ID+".") || !strings.HasSuffix(id, "@example.com>") {
		t.Errorf("Message-ID = %q, want <event id.tag@sender domain>", id)
	}
	if got := h.Get(email.EventIDHeader); got != ev.ID {
		t.Errorf("%s = %q, want %q", email.EventIDHeader, got, ev.ID)
	}
	if h.Get("Mime-Version") != "1.0" || h.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("MIME-Version = %q, Auto-Submitted = %q", h.Get("Mime-Version"), h.Get("Auto-Submitted"))
	}

	if m.Type != "multipart/alternative" {
		t.Errorf("Content-Type = %q, want multipart/alternative with both bodies", m.Type)
	}
	if want := `Hello Zoë Ünïcode, total 12.50. Note: <b>fragile</b> & "urgent"`; strings.TrimSpace(m.Parts["text/plain"]) != want {
		t.Errorf("text part = %q, want %q", m.Parts["text/plain"], want)
	}
	if want := "<p>Hello Zoë Ünïcode</p><p>&lt;b&gt;fragile&lt;/b&gt; &amp; &#34;urgent&#34;</p>"; strings.TrimSpace(m.Parts["text/html"]) != want {
		t.Errorf("HTML part = %q, want %q", m.Parts["text/html"], want)
	}
}

func TestExecuteBodies(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	tests := []struct {
		name     string
		text     string
		html     string
		wantType string
		want     map[string]string
	}{
		{name: "text only", text: "Total {{ total }}", wantType: "text/plain", want: map[string]string{"text/plain": "Total 12.50"}},
		{name: "html only", html: "<i>{{ note }}</i>", wantType: "text/html", want: map[string]string{"text/html": "<i>&lt;b&gt;fragile&lt;/b&gt; &amp; &#34;urgent&#34;</i>"}},
		{name: "both", text: "{{ status }}", html: "<b>{{ status }}</b>", wantType: "multipart/alternative", want: map[string]string{"text/plain": "shipped", "text/html": "<b>shipped</b>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Sequential: messages share the server.
			act := newAction(func(e *domain.EmailAction) {
				e.BodyTemplate, e.HTMLBodyTemplate = nil, nil
				if tt.text != "" {
					e.BodyTemplate = domain.MustCompileTemplate(tt.text)
				}
				if tt.html != "" {
					e.HTMLBodyTemplate = domain.MustCompileTemplate(tt.html)
				}
			})
			if err := exec.Execute(t.Context(), newEvent(), testObserver, act); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			m := parse(t, ts.Next(t).Data)
			if m.Type != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", m.Type, tt.wantType)
			}
			if len(m.Parts) != len(tt.want) {
				t.Errorf("parts = %v, want %v", m.Parts, tt.want)
			}
			for typ, want := range tt.want {
				if got := strings.TrimSpace(m.Parts[typ]); got != want {
					t.Errorf("%s = %q, want %q", typ, got, want)
				}
			}
		})
	}
}

func TestExecuteRecipientsFromTemplate(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	tests := []struct {
		name string
		tmpl string
		want []string
	}{
		{name: "one address", tmpl: "{{ customer.email }}", want: []string{"zoe@example.com"}},
		{name: "address list", tmpl: "{{ customer.email }}, Boss <boss@example.com>", want: []string{"zoe@example.com", "boss@example.com"}},
		{name: "JSON array from an array field", tmpl: "{{ watchers }}", want: []string{"w1@example.com", "w2@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			act := newAction(func(e *domain.EmailAction) { e.To, e.ToTemplate = nil, domain.MustCompileTemplate(tt.tmpl) })
			if err := exec.Execute(t.Context(), newEvent(), testObserver, act); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			got := ts.Next(t)
			if !slices.Equal(got.Rcpts, tt.want) {
				t.Errorf("RCPT TO = %v, want %v", got.Rcpts, tt.want)
			}
			var headerTo []string
			for _, a := range addresses(t, parse(t, got.Data).Header, "To") {
				headerTo = append(headerTo, a.Address)
			}
			if !slices.Equal(headerTo, tt.want) {
				t.Errorf("To header = %v, want %v", headerTo, tt.want)
			}
		})
	}
}

// Event data inside a to_template that is more than one placeholder
// cannot add a recipient or change the address: the list's structure
// characters in a value become spaces.
func TestExecuteRecipientsTemplateResistsInjection(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	ev := newEvent()
	ev.Data["customer"] = map[string]any{"name": `Eve, evil@example.com, "x" <evil2@example.com>`, "email": "zoe@example.com"}
	ev.Data["inject"] = `a@example.com", "evil3@example.com`
	// A template that is one placeholder takes a string value as one
	// address: a customer's stored "me@x, evil@y" cannot add recipients
	// (it rendered as the list before).
	ev.Data["list"] = "zoe@example.com, evil4@example.com; evil5@example.com"
	ev.Data["array"] = `["zoe@example.com","evil6@example.com"]` // a string, not an array
	for _, tmpl := range []string{`{{ customer.name }} <{{ customer.email }}>`, `["ok@example.com", "{{ inject }}"]`, `{{ list }}`, `{{ array }}`} {
		act := newAction(func(e *domain.EmailAction) { e.To, e.ToTemplate = nil, domain.MustCompileTemplate(tmpl) })
		err := exec.Execute(t.Context(), ev, testObserver, act)
		if err != nil && !domain.IsPermanent(err) {
			t.Fatalf("%s: Execute = %v", tmpl, err)
		}
		if err == nil {
			m := ts.Next(t)
			for _, r := range m.Rcpts {
				if strings.Contains(r, "evil") {
					t.Errorf("%s: recipients %v: event data added one", tmpl, m.Rcpts)
				}
			}
		}
	}
}

// A display name with an address's structure characters ([ ] @, as in
// "ACME [EU]" or "bob@home") is sent as a name: in a display name's place
// they become spaces. Before, such a customer's every email was
// dead-lettered ("expected comma", "missing '@' or angle-addr").
func TestExecuteDisplayNameWithAddressCharacters(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	for _, tmpl := range []string{`{{ customer.name }} <{{ customer.email }}>`, `{{ customer.name }} {{ customer.email }} <{{ customer.email }}>`} {
		ev := newEvent()
		ev.Data["customer"] = map[string]any{"name": "ACME [EU] bob@home", "email": "zoe@example.com"}
		act := newAction(func(e *domain.EmailAction) { e.To, e.ToTemplate = nil, domain.MustCompileTemplate(tmpl) })
		if err := exec.Execute(t.Context(), ev, testObserver, act); err != nil {
			t.Fatalf("%s: Execute = %v", tmpl, err)
		}
		m := ts.Next(t)
		if !slices.Equal(m.Rcpts, []string{"zoe@example.com"}) {
			t.Errorf("%s: RCPT TO = %v, want zoe only", tmpl, m.Rcpts)
		}
		to := addresses(t, parse(t, m.Data).Header, "To")
		if len(to) != 1 || !strings.HasPrefix(to[0].Name, "ACME EU bob home") {
			t.Errorf("%s: To = %v, want zoe named after ACME [EU] bob@home with the brackets and @ as spaces", tmpl, to)
		}
	}
}

func TestExecuteBadAddressIsPermanentAndNamesField(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	many := make([]string, email.MaxRecipients)
	for i := range many {
		many[i] = "r@example.com"
	}
	tests := []struct {
		name  string
		edit  func(*domain.EmailAction)
		field string
	}{
		{"rendered non-address", func(e *domain.EmailAction) { e.ToTemplate = domain.MustCompileTemplate("{{ bad }}") }, "to_template"},
		{"rendered empty", func(e *domain.EmailAction) { e.ToTemplate = domain.MustCompileTemplate("{{ missing.field }}") }, "to_template"},
		{"rendered header injection", func(e *domain.EmailAction) {
			e.ToTemplate = domain.MustCompileTemplate("{{ customer.email }}\r\nBcc: evil@example.com")
		}, "to_template"},
		{"rendered JSON array with a bad entry", func(e *domain.EmailAction) {
			e.ToTemplate = domain.MustCompileTemplate(`["ok@example.com", "{{ bad }}"]`)
		}, "to_template[1]"},
		{"static to", func(e *domain.EmailAction) { e.To = []string{"ok@example.com", "nope"} }, "to[1]"},
		{"cc", func(e *domain.EmailAction) { e.Cc = []string{"@example.com"} }, "cc[0]"},
		{"bcc", func(e *domain.EmailAction) { e.Bcc = []string{"a b c"} }, "bcc[0]"},
		{"reply_to", func(e *domain.EmailAction) { e.ReplyTo = "support" }, "reply_to"},
		{"too many recipients", func(e *domain.EmailAction) { e.Bcc = many }, "at most 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(tt.edit))
			if !domain.IsPermanent(err) {
				t.Fatalf("Execute = %v, want a permanent error", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
		})
	}
	t.Cleanup(func() {
		if n := ts.Conns(); n != 0 {
			t.Errorf("%d connections were made for messages that cannot be sent", n)
		}
	})
}

func TestExecuteStartTLS(t *testing.T) {
	t.Parallel()
	t.Run("upgrades and verifies the certificate", func(t *testing.T) {
		t.Parallel()
		ts := smtptest.Start(t, smtptest.Config{StartTLS: true})
		exec, _ := newExecutor(t, ts, func(c *email.Config) { c.TLS = email.TLSStartTLS })
		if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
			t.Fatalf("Execute: %v", err)
		}
		if got := ts.Next(t); !got.TLS {
			t.Error("the message was sent without TLS")
		}
	})
	t.Run("default mode is starttls", func(t *testing.T) {
		t.Parallel()
		ts := smtptest.Start(t, smtptest.Config{StartTLS: true})
		exec, _ := newExecutor(t, ts, func(c *email.Config) { c.TLS = "" })
		if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
			t.Fatalf("Execute: %v", err)
		}
		if got := ts.Next(t); !got.TLS {
			t.Error("the default mode sent without TLS")
		}
	})
	t.Run("server without STARTTLS: nothing sent in clear", func(t *testing.T) {
		t.Parallel()
		ts := smtptest.Start(t, smtptest.Config{})
		exec, _ := newExecutor(t, ts, func(c *email.Config) { c.TLS = email.TLSStartTLS })
		err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil))
		if err == nil || domain.IsPermanent(err) {
			t.Fatalf("Execute = %v, want a transient error", err)
		}
		ts.None(t)
	})
	t.Run("untrusted certificate: nothing sent", func(t *testing.T) {
		t.Parallel()
		ts := smtptest.Start(t, smtptest.Config{StartTLS: true})
		exec, _ := newExecutor(t, ts, func(c *email.Config) { c.TLS, c.TLSConfig = email.TLSStartTLS, nil })
		err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil))
		if err == nil {
			t.Fatal("Execute = nil with a certificate nobody trusts")
		}
		ts.None(t)
	})
}

func TestExecuteImplicitTLS(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{Implicit: true, Username: "mailer", Password: testPassword})
	exec, _ := newExecutor(t, ts, func(c *email.Config) {
		c.TLS, c.Username, c.Password = email.TLSImplicit, "mailer", testPassword
	})
	if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	got := ts.Next(t)
	if !got.TLS || got.AuthUser != "mailer" {
		t.Errorf("TLS = %v, authenticated user = %q; want TLS and mailer (AUTH PLAIN over implicit TLS)", got.TLS, got.AuthUser)
	}
}

func TestExecuteAuth(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{StartTLS: true, Username: "mailer", Password: testPassword})
	tests := []struct {
		name      string
		user      string
		pass      string
		permanent bool
		wantErr   string
	}{
		{name: "right credentials", user: "mailer", pass: testPassword},
		{name: "wrong password", user: "mailer", pass: testPassword + "-old", permanent: true, wantErr: "535"},
		{name: "no credentials on a server that requires them", permanent: true, wantErr: "502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			exec, _ := newExecutor(t, ts, func(c *email.Config) {
				c.TLS, c.Username, c.Password = email.TLSStartTLS, tt.user, tt.pass
			})
			ev := newEvent()
			ev.ID = "auth-" + strings.ReplaceAll(tt.name, " ", "-")
			err := exec.Execute(t.Context(), ev, testObserver, newAction(nil))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Execute: %v", err)
				}
				if got := ts.Next(t); got.AuthUser != "mailer" || !got.TLS {
					t.Errorf("authenticated user = %q, TLS = %v", got.AuthUser, got.TLS)
				}
				return
			}
			if err == nil || domain.IsPermanent(err) != tt.permanent || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Execute = %v, want a permanent error with %s", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error %q contains the password", err)
			}
			if !strings.Contains(err.Error(), ts.Addr) {
				t.Errorf("error %q does not name the server %s", err, ts.Addr)
			}
		})
	}
}

func TestExecuteReplyClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cmd       string
		code      int
		permanent bool
	}{
		{name: "MAIL 421 service not available", cmd: "MAIL", code: 421},
		{name: "MAIL 552 exceeded storage", cmd: "MAIL", code: 552, permanent: true},
		{name: "RCPT 450 mailbox busy", cmd: "RCPT", code: 450},
		{name: "RCPT 452 too many recipients", cmd: "RCPT", code: 452},
		{name: "RCPT 550 no such user", cmd: "RCPT", code: 550, permanent: true},
		{name: "RCPT 553 name not allowed", cmd: "RCPT", code: 553, permanent: true},
		{name: "DATA 451 local error", cmd: "DATA", code: 451},
		{name: "DATA 554 transaction failed", cmd: "DATA", code: 554, permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var reject sync.Once // only the first message is refused
			ts := smtptest.Start(t, smtptest.Config{Reply: func(cmd, _ string) error {
				var err error
				if cmd == tt.cmd {
					reject.Do(func() { err = smtptest.Reply(tt.code, "test reply") })
				}
				return err
			}})
			exec, _ := newExecutor(t, ts, nil)
			err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil))
			if err == nil {
				t.Fatal("Execute = nil, want an error")
			}
			if got := domain.IsPermanent(err); got != tt.permanent {
				t.Errorf("permanent = %v, want %v (%v)", got, tt.permanent, err)
			}
			if msg := err.Error(); !strings.Contains(msg, ts.Addr) || !strings.Contains(msg, strings.Fields(tt.name)[1]) {
				t.Errorf("error %q does not name the server and the reply code", msg)
			}
			ts.None(t)
			// The next message goes through (a fresh session).
			if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
				t.Fatalf("Execute after the refusal: %v", err)
			}
			ts.Next(t)
		})
	}
}

// silentListener accepts connections and never writes a byte.
func silentListener(t *testing.T) (host string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	addr := ln.Addr().(*net.TCPAddr)
	return "127.0.0.1", addr.Port
}

func TestExecuteServerThatNeverAnswers(t *testing.T) {
	t.Parallel()
	host, port := silentListener(t)
	target := &smtptest.Server{Host: host, Port: port}

	t.Run("returns within the timeout", func(t *testing.T) {
		t.Parallel()
		exec, _ := newExecutor(t, target, func(c *email.Config) { c.Timeout = 200 * time.Millisecond })
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		err := exec.Execute(ctx, newEvent(), testObserver, newAction(nil))
		if err == nil || domain.IsPermanent(err) {
			t.Fatalf("Execute = %v, want a transient error", err)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("error %v does not report the timeout", err)
		}
		if ctx.Err() != nil {
			t.Error("the test's deadline ended the call, not the configured timeout")
		}
	})
	t.Run("returns when ctx is cancelled", func(t *testing.T) {
		t.Parallel()
		exec, _ := newExecutor(t, target, func(c *email.Config) { c.Timeout = 10 * time.Minute })
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		done := make(chan error, 1)
		go func() { done <- exec.Execute(ctx, newEvent(), testObserver, newAction(nil)) }()
		select {
		case err := <-done:
			if err == nil || domain.IsPermanent(err) || !errors.Is(err, context.Canceled) {
				t.Fatalf("Execute = %v, want a transient error reporting the cancellation", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Execute did not return after ctx was cancelled")
		}
	})
}

// A server that answers each command slowly (each within the timeout)
// cannot hold a message longer than the timeout in all: 20 recipients at
// 100ms each against a 500ms timeout fail transiently after about 500ms.
func TestExecuteTimeoutBoundsTheWholeExchange(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{Reply: func(cmd, _ string) error {
		if cmd == "RCPT" {
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}})
	exec, _ := newExecutor(t, ts, func(c *email.Config) { c.Timeout = 500 * time.Millisecond })
	rcpts := make([]string, 20)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("r%d@example.com", i)
	}
	start := time.Now()
	err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(func(e *domain.EmailAction) { e.Bcc = rcpts }))
	if err == nil || domain.IsPermanent(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Execute = %v, want a transient timeout", err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("the exchange took %s, want it ended near the 500ms timeout (2s of replies)", took)
	}
}

func TestExecuteServerThatStallsMidMessage(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	var first sync.Once
	ts := smtptest.Start(t, smtptest.Config{Reply: func(cmd, _ string) error {
		if cmd == "DATA" {
			stalled := false
			first.Do(func() { stalled = true })
			if !stalled {
				<-stall
			}
		}
		return nil
	}})
	// The first message opens the session that the next ones reuse. The
	// per-command timeout is well below the test's deadline and well above
	// what a command takes on a loaded machine.
	exec, _ := newExecutor(t, ts, func(c *email.Config) { c.Timeout = 2 * time.Second })
	if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
		t.Fatalf("first Execute: %v", err)
	}
	ts.Next(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := exec.Execute(ctx, newEvent(), testObserver, newAction(nil))
	if err == nil || domain.IsPermanent(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Execute = %v, want a transient timeout", err)
	}
	if ctx.Err() != nil {
		t.Error("the test's deadline ended the call, not the configured timeout")
	}
}

func TestExecuteReusesConnection(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{StartTLS: true})
	const timeout = 2 * time.Second
	exec, _ := newExecutor(t, ts, func(c *email.Config) { c.TLS, c.Timeout = email.TLSStartTLS, timeout })
	for range 10 {
		if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
			t.Fatalf("Execute: %v", err)
		}
		ts.Next(t)
	}
	// Idle past the per-command timeout: the session must still be usable.
	last := time.Now()
	waitFor(t, func() bool { return time.Since(last) > 2*timeout })
	if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
		t.Fatalf("Execute after idling: %v", err)
	}
	ts.Next(t)
	if n := ts.Conns(); n != 1 {
		t.Errorf("11 sequential messages opened %d sessions, want 1", n)
	}
}

func TestExecuteReplacesDroppedConnection(t *testing.T) {
	t.Parallel()
	// The server's idle limit holds mid-session too: long enough for any
	// command's answer on a loaded machine.
	ts := smtptest.Start(t, smtptest.Config{ReadTimeout: 2 * time.Second})
	exec, _ := newExecutor(t, ts, nil)
	if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	ts.Next(t)
	waitFor(t, func() bool { return ts.Closed() == 1 }) // the server dropped the idle session
	if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
		t.Fatalf("Execute on a dropped session: %v (want a transparent new session)", err)
	}
	ts.Next(t)
	if n := ts.Conns(); n != 2 {
		t.Errorf("sessions = %d, want 2", n)
	}
}

func TestExecuteConcurrent(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	const workers, each = 6, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				errs <- exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Execute: %v", err)
		}
	}
	for range workers * each {
		ts.Next(t)
	}
	if n := ts.Conns(); n > workers*each {
		t.Errorf("%d sessions for %d messages", n, workers*each)
	}
}

func TestCloseQuitsKeptConnections(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	ts.Next(t)
	if n := ts.Closed(); n != 0 {
		t.Fatalf("the session ended after one message (%d closed): nothing is kept", n)
	}
	exec.Close()
	waitFor(t, func() bool { return ts.Closed() == 1 })
	// After Close a message still goes out, on a session of its own.
	if err := exec.Execute(t.Context(), newEvent(), testObserver, newAction(nil)); err != nil {
		t.Fatalf("Execute after Close: %v", err)
	}
	ts.Next(t)
	waitFor(t, func() bool { return ts.Closed() == 2 })
}

func TestExecuteMessageIDStable(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	send := func(t *testing.T, ev *domain.Event, action string) mail.Header {
		t.Helper()
		act := newAction(nil)
		act.Name = action
		if err := exec.Execute(t.Context(), ev, testObserver, act); err != nil {
			t.Fatalf("Execute: %v", err)
		}
		return parse(t, ts.Next(t).Data).Header
	}
	ev := newEvent()
	first := send(t, ev, "email-1")
	retry := send(t, ev, "email-1")
	other := send(t, ev, "email-2")
	odd := newEvent()
	odd.ID = "id with spaces/and@signs"
	oddH := send(t, odd, "email-1")

	if first.Get("Message-Id") != retry.Get("Message-Id") {
		t.Errorf("retry Message-ID %q differs from %q", retry.Get("Message-Id"), first.Get("Message-Id"))
	}
	if first.Get("Message-Id") == other.Get("Message-Id") {
		t.Errorf("two actions share Message-ID %q", first.Get("Message-Id"))
	}
	if _, err := (&mail.AddressParser{}).Parse(strings.Trim(oddH.Get("Message-Id"), "<>")); err != nil {
		t.Errorf("Message-ID %q for an unusual event id is not addr-spec shaped: %v", oddH.Get("Message-Id"), err)
	}
	if got := oddH.Get(email.EventIDHeader); got != odd.ID {
		t.Errorf("%s = %q, want %q", email.EventIDHeader, got, odd.ID)
	}
}

func TestExecuteLogsMissingPlaceholders(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, logs := newExecutor(t, ts, nil)
	act := newAction(func(e *domain.EmailAction) {
		e.Subject, e.SubjectTemplate = "", domain.MustCompileTemplate("Order {{ nope }}")
		e.HTMLBodyTemplate = domain.MustCompileTemplate("<p>{{ customer.phone }}</p>")
	})
	if err := exec.Execute(t.Context(), newEvent(), testObserver, act); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	ts.Next(t)
	recs := logs.Records()
	if len(recs) != 1 || recs[0].Level != slog.LevelWarn {
		t.Fatalf("want one warning, got %+v", recs)
	}
	if got, _ := recs[0].Attrs["missing_placeholders"].([]string); !slices.Equal(got, []string{"nope", "customer.phone"}) {
		t.Errorf("missing_placeholders = %v", recs[0].Attrs["missing_placeholders"])
	}
	if recs[0].Attrs["action"] != "email-1" || recs[0].Attrs["observer"] != testObserver.Name {
		t.Errorf("attributes = %v", recs[0].Attrs)
	}
}

func TestExecuteInvalidAction(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	exec, _ := newExecutor(t, ts, nil)
	for name, act := range map[string]*domain.Action{
		"no email config": {Name: "e", Type: domain.ActionEmail},
		"bodies render empty": newAction(func(e *domain.EmailAction) {
			e.BodyTemplate = domain.MustCompileTemplate("{{ missing }}")
		}),
	} {
		if err := exec.Execute(t.Context(), newEvent(), testObserver, act); !domain.IsPermanent(err) {
			t.Errorf("%s: Execute = %v, want a permanent error", name, err)
		}
	}
	if err := exec.Execute(t.Context(), nil, testObserver, newAction(nil)); !domain.IsPermanent(err) {
		t.Errorf("nil event: Execute = %v, want a permanent error", err)
	}
	ts.None(t)
}

func TestNewExecutorValidates(t *testing.T) {
	t.Parallel()
	ok := email.Config{Host: "127.0.0.1", From: "orders@example.com"}
	tests := []struct {
		name    string
		edit    func(*email.Config)
		wantErr string
	}{
		{name: "defaults"},
		{name: "no host", edit: func(c *email.Config) { c.Host = "" }, wantErr: "host"},
		{name: "host with a path", edit: func(c *email.Config) { c.Host = "smtp.example.com/x" }, wantErr: "host"},
		{name: "bad port", edit: func(c *email.Config) { c.Port = 70000 }, wantErr: "port"},
		{name: "no from", edit: func(c *email.Config) { c.From = "" }, wantErr: "from"},
		{name: "bad from", edit: func(c *email.Config) { c.From = "orders" }, wantErr: "from"},
		{name: "bad tls", edit: func(c *email.Config) { c.TLS = "ssl" }, wantErr: `"ssl"`},
		{name: "password without username", edit: func(c *email.Config) { c.Password = testPassword }, wantErr: "username"},
		{name: "username without password", edit: func(c *email.Config) { c.Username = "u" }, wantErr: "password"},
		{name: "auth in clear", edit: func(c *email.Config) { c.Username, c.Password, c.TLS = "u", testPassword, email.TLSNone }, wantErr: "in clear"},
		{name: "helo with space", edit: func(c *email.Config) { c.HELOName = "a b" }, wantErr: "helo_name"},
		{name: "negative timeout", edit: func(c *email.Config) { c.Timeout = -time.Second }, wantErr: "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			exec, err := email.NewExecutor(cfg, slog.New(&testsupport.Logs{}))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewExecutor: %v", err)
				}
				exec.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewExecutor error = %v, want one naming %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
	if _, err := email.NewExecutor(ok, nil); err == nil {
		t.Error("NewExecutor accepted a nil logger")
	}
}

func TestDefaultPorts(t *testing.T) {
	t.Parallel()
	for mode, want := range map[email.TLSMode]int{email.TLSNone: 25, email.TLSStartTLS: 587, email.TLSImplicit: 465} {
		exec, err := email.NewExecutor(email.Config{Host: "mail.example.com", From: "a@example.com", TLS: mode}, slog.New(&testsupport.Logs{}))
		if err != nil {
			t.Fatal(err)
		}
		if got := exec.Server(); got != "mail.example.com:"+itoa(want) {
			t.Errorf("%s: server = %s, want port %d", mode, got, want)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testsupport.WaitUntil(t, 10*time.Second, 10*time.Millisecond, "the condition", cond)
}

func TestCheckAction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(*domain.EmailAction)
		wantErr string
	}{
		{name: "valid fixed addresses", edit: func(e *domain.EmailAction) {
			e.Cc, e.Bcc, e.ReplyTo = []string{"Zoë <z@example.com>"}, []string{"b@example.com"}, "r@example.com"
		}},
		{name: "templates are checked when rendered, not here", edit: func(e *domain.EmailAction) {
			e.ToTemplate = domain.MustCompileTemplate("{{ bad }}")
		}},
		{name: "bad to", edit: func(e *domain.EmailAction) { e.To = []string{"x"} }, wantErr: "to[0]"},
		{name: "bad cc", edit: func(e *domain.EmailAction) { e.Cc = []string{"a@example.com", "b@"} }, wantErr: "cc[1]"},
		{name: "bad bcc", edit: func(e *domain.EmailAction) { e.Bcc = []string{"<>"} }, wantErr: "bcc[0]"},
		{name: "bad reply_to", edit: func(e *domain.EmailAction) { e.ReplyTo = "a@example.com, b@example.com" }, wantErr: "reply_to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := email.CheckAction(newAction(tt.edit).Email)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckAction: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckAction = %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
	if email.CheckAction(nil) == nil {
		t.Error("CheckAction(nil) = nil")
	}
}
