package config_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestEmailSection(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := config.EmailConfig{TLS: "starttls", Timeout: 10 * time.Second, MaxIdleConns: 2, IdleTimeout: 30 * time.Second}
	if cfg.Email != want || cfg.Email.Configured() {
		t.Errorf("email defaults = %+v, want %+v (no server)", cfg.Email, want)
	}

	p := writeConfig(t, `
[email]
host = "smtp.example.com"
from = "Orders <orders@example.com>"
tls = "tls"
username = "mailer"
password_env = "SMTP_PASSWORD"
timeout = "5s"
helo_name = "observer.example.com"
max_idle_conns = 0
idle_timeout = "1m"
`)
	cfg, err = config.Load(p, []string{"FRAISEQL_EMAIL_PORT=2465", "FRAISEQL_EMAIL_HOST=relay.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	want = config.EmailConfig{Host: "relay.example.com", Port: 2465, From: "Orders <orders@example.com>", TLS: "tls",
		Username: "mailer", PasswordEnv: "SMTP_PASSWORD", Timeout: 5 * time.Second, HELOName: "observer.example.com",
		MaxIdleConns: 0, IdleTimeout: time.Minute}
	if cfg.Email != want {
		t.Errorf("email = %+v, want %+v", cfg.Email, want)
	}
}

func TestEmailSectionErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	const server = "[email]\nhost = \"smtp.example.com\"\nfrom = \"orders@example.com\"\n"
	tests := []struct {
		name, body, key string
	}{
		{"unknown key", "[email]\nhots = \"x\"", "email.hots"},
		{"bad tls", server + "tls = \"ssl\"", "email.tls"},
		{"port out of range", server + "port = 70000", "email.port"},
		{"zero timeout", server + "timeout = \"0s\"", "email.timeout"},
		{"bad timeout", server + "timeout = \"soon\"", "email.timeout"},
		{"negative idle conns", server + "max_idle_conns = -1", "email.max_idle_conns"},
		{"zero idle timeout", server + "idle_timeout = \"0s\"", "email.idle_timeout"},
		{"helo with space", server + "helo_name = \"my host\"", "email.helo_name"},
		{"host with port", "[email]\nhost = \"smtp.example.com:587\"\nfrom = \"a@example.com\"", "email.host"},
		{"no from", "[email]\nhost = \"smtp.example.com\"", "email.from"},
		{"bad from", "[email]\nhost = \"smtp.example.com\"\nfrom = \"orders\"", "email.from"},
		{"username without password", server + "username = \"u\"", "email.password_env"},
		{"password without username", server + "password_env = \"P\"", "email.username"},
		{"password in clear", server + "tls = \"none\"\nusername = \"u\"\npassword_env = \"P\"", "email.tls"},
		{"from without host", "[email]\nfrom = \"orders@example.com\"", "email.from"},
		{"port without host", "[email]\nport = 25", "email.port"},
		// Keys with defaults of their own: refused when the file sets them
		// without a server (they used to be read and ignored).
		{"tls without host", "[email]\ntls = \"tls\"", "email.tls"},
		{"timeout without host", "[email]\ntimeout = \"3s\"", "email.timeout"},
		{"idle conns without host", "[email]\nmax_idle_conns = 7", "email.max_idle_conns"},
		{"idle timeout without host", "[email]\nidle_timeout = \"1m\"", "email.idle_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(writeConfig(t, tt.body), nil)
			var ce *config.ConfigError
			if !errors.As(err, &ce) || !strings.Contains(ce.Key, tt.key) {
				t.Fatalf("Load = %v, want a ConfigError naming %s", err, tt.key)
			}
		})
	}
	if _, err := config.Load(writeConfig(t, server), nil); err != nil {
		t.Errorf("a complete [email]: %v", err)
	}
	if _, err := config.Load(writeConfig(t, "[email]\nhost = \"::1\"\nfrom = \"a@example.com\"\ntls = \"none\""), nil); err != nil {
		t.Errorf("an IPv6 literal host: %v", err)
	}
}

// emailObserver is a TOML observer with an email action of every key.
const emailObserver = `
[email]
host = "127.0.0.1"
from = "Orders <orders@example.com>"
tls  = "none"

[[observers]]
name   = "shipped"
entity = "Order"
events = ["UPDATE"]
[[observers.actions]]
type               = "email"
name               = "notify"
to                 = ["Ops <ops@example.com>", "audit@example.com"]
to_template        = "{{ customer.email }}"
cc                 = ["sales@example.com"]
bcc                = ["archive@example.com"]
reply_to           = "support@example.com"
subject_template   = "Order {{ event.entity_id }} {{ status }}"
body_template      = "Order {{ event.entity_id }} is {{ status }}."
html_body_template = "<p>Order {{ event.entity_id }} is <b>{{ status }}</b>.</p>"
`

// Every email key reaches the domain action (a config using them used to
// get "unknown key"), and the adapter's check runs at load.
func TestEmailActionEveryKey(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeConfig(t, emailObserver), nil)
	if err != nil {
		t.Fatal(err)
	}
	var checked []*domain.EmailAction
	obs, err := config.LoadObservers(cfg, nil, config.Checks{Email: func(e *domain.EmailAction) error {
		checked = append(checked, e)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	a := obs[0].Actions[0]
	e := a.Email
	if a.Type != domain.ActionEmail || a.Name != "notify" || e == nil {
		t.Fatalf("action = %+v", a)
	}
	if !slices.Equal(e.To, []string{"Ops <ops@example.com>", "audit@example.com"}) || e.ToTemplate.Source() != "{{ customer.email }}" ||
		!slices.Equal(e.Cc, []string{"sales@example.com"}) || !slices.Equal(e.Bcc, []string{"archive@example.com"}) ||
		e.ReplyTo != "support@example.com" || e.Subject != "" ||
		e.SubjectTemplate.Source() != "Order {{ event.entity_id }} {{ status }}" ||
		e.BodyTemplate.Source() != "Order {{ event.entity_id }} is {{ status }}." ||
		e.HTMLBodyTemplate.Source() != "<p>Order {{ event.entity_id }} is <b>{{ status }}</b>.</p>" {
		t.Errorf("email action = %+v", e)
	}
	if len(checked) != 1 || checked[0] != e {
		t.Errorf("the email check ran on %v, want the action once", checked)
	}
}

func TestEmailActionErrors(t *testing.T) {
	t.Parallel()
	lookup := func(string) (string, bool) { return "", false }
	refuse := config.Checks{Email: func(e *domain.EmailAction) error {
		if slices.Contains(e.Cc, "not-an-address") {
			return errors.New(`cc[0]: "not-an-address" is not an email address`)
		}
		return nil
	}}
	base := func() config.ActionConfig {
		return config.ActionConfig{Type: "email", To: []string{"ops@example.com"}, Subject: "s", BodyTemplate: "b"}
	}
	tests := []struct {
		name string
		edit func(*config.ActionConfig)
		want []string
	}{
		{"the adapter's check", func(a *config.ActionConfig) { a.Cc = []string{"not-an-address"} }, []string{`"o"`, "actions[0]", "cc[0]"}},
		{"no recipient", func(a *config.ActionConfig) { a.To = nil }, []string{"to or to_template"}},
		{"no subject", func(a *config.ActionConfig) { a.Subject = "" }, []string{"subject or subject_template"}},
		{"both subjects", func(a *config.ActionConfig) { a.SubjectTemplate = "{{ status }}" }, []string{"subject or subject_template, not both"}},
		// Sent as written, the braces would reach the customers.
		{"placeholder in subject", func(a *config.ActionConfig) { a.Subject = "Order {{ id }} shipped" }, []string{"subject:", "use subject_template"}},
		{"no body", func(a *config.ActionConfig) { a.BodyTemplate = "" }, []string{"body_template or html_body_template"}},
		{"to_template syntax", func(a *config.ActionConfig) { a.ToTemplate = "{{ event.nope }}" }, []string{"to_template", "nope"}},
		{"subject_template syntax", func(a *config.ActionConfig) { a.Subject, a.SubjectTemplate = "", "{{ event.nope }}" }, []string{"subject_template"}},
		{"html_body_template syntax", func(a *config.ActionConfig) { a.HTMLBodyTemplate = "{{ event.nope }}" }, []string{"html_body_template"}},
		{"a webhook key", func(a *config.ActionConfig) { a.URL = "https://example.com" }, []string{"url", "not used by email actions"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ac := base()
			tt.edit(&ac)
			_, err := config.BuildObservers([]config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"},
				Actions: []config.ActionConfig{ac}}}, lookup, refuse)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// An email action without [email] host is refused at load, naming the
// key to set, as a cache action without Redis is.
func TestEmailActionNeedsSMTPServer(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeConfig(t, emailObserver), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Email = config.Defaults().Email
	_, err = config.LoadObservers(cfg, nil, config.Checks{})
	var ce *config.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "email.host") || !strings.Contains(err.Error(), "actions[0]") {
		t.Errorf("email action without email.host: %v, want a ConfigError naming the action and email.host", err)
	}
}

// Signing secrets come from signing_secret(_env) and signing_secrets_env,
// in that order; each is checked at load, and an error names the key and
// the variable, never the secret.
func TestWebhookSigningSecrets(t *testing.T) {
	t.Parallel()
	env := map[string]string{"NEW": "whsec-new-secret-value", "OLD": "whsec-old-secret-value", "SAME": "whsec-new-secret-value", "BAD": "bad-secret-value"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var checked []string
	checks := config.Checks{SigningSecret: func(s string) error {
		checked = append(checked, s)
		if !strings.HasPrefix(s, "whsec") {
			return errors.New("invalid signing secret: it must be \"whsec_\" followed by base64")
		}
		return nil
	}}
	build := func(ac config.ActionConfig) (*domain.WebhookAction, error) {
		ac.Type, ac.URL = "webhook", "https://example.com/h"
		obs, err := config.BuildObservers([]config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"},
			Actions: []config.ActionConfig{ac}}}, lookup, checks)
		if err != nil {
			return nil, err
		}
		return obs[0].Actions[0].Webhook, nil
	}
	wh, err := build(config.ActionConfig{SigningSecretEnv: "NEW", SigningSecretsEnv: []string{"OLD"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(wh.SigningSecrets, []string{env["NEW"], env["OLD"]}) || !slices.Equal(checked, wh.SigningSecrets) {
		t.Errorf("secrets = %v, checked %v; want NEW then OLD, each checked", wh.SigningSecrets, checked)
	}
	if wh, err := build(config.ActionConfig{SigningSecretsEnv: []string{"NEW", "OLD"}}); err != nil || len(wh.SigningSecrets) != 2 {
		t.Errorf("signing_secrets_env alone: %+v, %v", wh, err)
	}
	if wh, err := build(config.ActionConfig{}); err != nil || wh.SigningSecrets != nil {
		t.Errorf("no secret: %+v, %v; want an unsigned webhook", wh, err)
	}

	for _, tt := range []struct {
		name string
		ac   config.ActionConfig
		want []string
	}{
		{"bad secret in the list", config.ActionConfig{SigningSecretsEnv: []string{"NEW", "BAD"}}, []string{"signing_secrets_env[1] (BAD)", "invalid signing secret"}},
		{"bad secret_env", config.ActionConfig{SigningSecretEnv: "BAD"}, []string{"signing_secret_env (BAD)", "invalid signing secret"}},
		{"bad inline secret", config.ActionConfig{SigningSecret: "bad-secret-value"}, []string{"signing_secret:", "invalid signing secret"}},
		{"unset variable", config.ActionConfig{SigningSecretsEnv: []string{"NEW", "NOPE"}}, []string{"signing_secrets_env[1]", "NOPE", "not set"}},
		{"empty name", config.ActionConfig{SigningSecretsEnv: []string{""}}, []string{"signing_secrets_env[0]", "names no environment variable"}},
		{"the same secret twice", config.ActionConfig{SigningSecretEnv: "NEW", SigningSecretsEnv: []string{"SAME"}}, []string{"signing_secrets_env[0] (SAME)", "the same secret as signing_secret_env (NEW)"}},
		{"secret and secret_env", config.ActionConfig{SigningSecret: "whsec-x", SigningSecretEnv: "NEW"}, []string{"set only one"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(tt.ac)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, secret := range env {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q carries a secret", err)
				}
			}
		})
	}
}

// headers_env values come from the environment into SecretHeaders (never
// into Headers, which the dry run shows); errors name the header and the
// variable, never the value.
func TestWebhookHeadersEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ORDERS_HOOK_TOKEN": "Bearer tok-123456", "WITH_NEWLINE": "tok-abcdef\n", "WITH_CONTROL": "tok-abc\x01def"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	build := func(ac config.ActionConfig) (*domain.WebhookAction, error) {
		ac.Type, ac.URL = "webhook", "https://example.com/h"
		obs, err := config.BuildObservers([]config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"},
			Actions: []config.ActionConfig{ac}}}, lookup, config.Checks{})
		if err != nil {
			return nil, err
		}
		return obs[0].Actions[0].Webhook, nil
	}
	wh, err := build(config.ActionConfig{Headers: map[string]string{"X-Team": "ops"}, HeadersEnv: map[string]string{"Authorization": "ORDERS_HOOK_TOKEN"}})
	if err != nil {
		t.Fatal(err)
	}
	if wh.SecretHeaders["Authorization"] != "Bearer tok-123456" || len(wh.SecretHeaders) != 1 || wh.Headers["X-Team"] != "ops" || len(wh.Headers) != 1 {
		t.Errorf("headers = %v, secret headers = %v", wh.Headers, wh.SecretHeaders)
	}
	for _, tt := range []struct {
		name string
		ac   config.ActionConfig
		want []string
	}{
		{"unset variable", config.ActionConfig{HeadersEnv: map[string]string{"Authorization": "NOPE"}}, []string{"headers_env.Authorization", "NOPE", "not set"}},
		{"also in headers", config.ActionConfig{Headers: map[string]string{"authorization": "x"}, HeadersEnv: map[string]string{"Authorization": "ORDERS_HOOK_TOKEN"}},
			[]string{"headers_env.Authorization", "also set in headers"}},
		{"twice in headers_env", config.ActionConfig{HeadersEnv: map[string]string{"Authorization": "ORDERS_HOOK_TOKEN", "authorization": "ORDERS_HOOK_TOKEN"}},
			[]string{"header names ignore case"}},
		{"line break in the value", config.ActionConfig{HeadersEnv: map[string]string{"Authorization": "WITH_NEWLINE"}}, []string{"headers_env.Authorization", "WITH_NEWLINE", "line break"}},
		{"not a header name", config.ActionConfig{HeadersEnv: map[string]string{"Bad Header": "ORDERS_HOOK_TOKEN"}}, []string{"headers_env.Bad Header", "not a header name"}},
		{"fixed header name", config.ActionConfig{Headers: map[string]string{"X:Y": "v"}}, []string{"headers.X:Y", "not a header name"}},
		{"fixed header value", config.ActionConfig{Headers: map[string]string{"X-Y": "a\r\nInjected: 1"}}, []string{"headers.X-Y", "line break"}},
		// Other control characters: net/http refuses them, over https as
		// an error retried like a network failure's for a day.
		{"escape in a header value", config.ActionConfig{Headers: map[string]string{"X-Y": "a\x1b[31m"}}, []string{"headers.X-Y", "control character"}},
		{"DEL in a header value", config.ActionConfig{Headers: map[string]string{"X-Y": "a\x7f"}}, []string{"headers.X-Y", "control character"}},
		{"control character from the environment", config.ActionConfig{HeadersEnv: map[string]string{"Authorization": "WITH_CONTROL"}}, []string{"headers_env.Authorization", "WITH_CONTROL", "control character"}},
		// Accepted before, then dropped, overwritten or sent as written:
		{"a header the service sets", config.ActionConfig{Headers: map[string]string{"webhook-id": "mine"}}, []string{"headers.webhook-id", "sets this header itself"}},
		{"a header the service sets, from the environment", config.ActionConfig{HeadersEnv: map[string]string{"Webhook-Signature": "ORDERS_HOOK_TOKEN"}},
			[]string{"headers_env.Webhook-Signature", "sets this header itself"}},
		{"a framing header", config.ActionConfig{Headers: map[string]string{"Content-Length": "5"}}, []string{"headers.Content-Length", "sets this header itself"}},
		{"twice in headers", config.ActionConfig{Headers: map[string]string{"X-A": "1", "x-a": "2"}}, []string{"header names ignore case"}},
		{"a template in a header", config.ActionConfig{Headers: map[string]string{"X-Id": "{{ event.entity_id }}"}}, []string{"headers.X-Id", "body_template only"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(tt.ac)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "tok-") {
				t.Errorf("error %q carries the header value", err)
			}
		})
	}
	_, err = config.BuildObservers([]config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{{Type: "webhook", URL: "https://example.com/orders/{{ event.entity_id }}"}}}}, lookup, config.Checks{})
	if err == nil || !strings.Contains(err.Error(), "body_template only") || strings.Contains(err.Error(), "whitespace") {
		t.Errorf("a template in the URL: %v, want it named as not a template", err)
	}
	_, err = config.BuildObservers([]config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{{Type: "log", HeadersEnv: map[string]string{"A": "B"}}}}}, lookup, config.Checks{})
	if err == nil || !strings.Contains(err.Error(), "headers_env: not used by log actions") {
		t.Errorf("headers_env on a log action: %v", err)
	}
}

// A single address may be written as a string where a list is expected.
func TestEmailAddressAsOneString(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeConfig(t, `
[email]
host = "smtp.example.com"
from = "shop@example.com"

[[observers]]
name = "notify"
entity = "Order"
events = "INSERT"
[[observers.actions]]
type = "email"
to = "ops@example.com"
cc = "sales@example.com"
subject = "s"
body_template = "b"
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := config.LoadObservers(cfg, nil, config.Checks{})
	if err != nil {
		t.Fatal(err)
	}
	e := obs[0].Actions[0].Email
	if !slices.Equal(e.To, []string{"ops@example.com"}) || !slices.Equal(e.Cc, []string{"sales@example.com"}) ||
		len(obs[0].Events) != 1 || obs[0].Events[0] != domain.EventInsert {
		t.Errorf("to = %q, cc = %q, events = %v; want one-element lists", e.To, e.Cc, obs[0].Events)
	}
}
