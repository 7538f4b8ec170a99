package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/smtptest"
)

// emailConfig is a memory-topology configuration sending through the SMTP
// server at port, with an email observer for shipped orders.
func emailConfig(t *testing.T, port int, extra string) config.Config {
	t.Helper()
	body := fmt.Sprintf(`topology = "memory"
[http]
listen = ""
[reader]
checkpoint_interval = "50ms"
[email]
host = "127.0.0.1"
port = %d
from = "Boutique <orders@example.com>"
tls  = "none"
helo_name = "observer.test"
%s
[[observers]]
name   = "shipped"
entity = "Order"
events = ["UPDATE"]
[[observers.actions]]
type               = "email"
to_template        = "{{ customer.name }} <{{ customer.email }}>"
bcc                = ["audit@example.com"]
subject_template   = "Commande {{ status }}"
body_template      = "Order {{ event.entity_id }} is {{ status }}."
html_body_template = "<p>{{ note }}</p>"
`, port, extra)
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The email action runs in the service: [email] builds the executor, the
// message goes over SMTP, and shutdown ends the kept session.
func TestEmailActionRunsInTheService(t *testing.T) {
	t.Parallel()
	ts := smtptest.Start(t, smtptest.Config{})
	app, err := bootstrap.New(t.Context(), emailConfig(t, ts.Port, ""), bootstrap.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		app.Close()
	}
	t.Cleanup(stop)

	ev := domain.Event{EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o-7",
		Data: map[string]any{"status": "shipped", "note": "<fragile>", "customer": map[string]any{"name": "Zoë", "email": "zoe@example.com"}}}
	if _, err := app.MemorySource().Append(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	got := ts.Next(t)
	if got.From != "orders@example.com" || strings.Join(got.Rcpts, ",") != "zoe@example.com,audit@example.com" || got.HELO != "observer.test" {
		t.Errorf("envelope: from %q to %v helo %q", got.From, got.Rcpts, got.HELO)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if subject != "Commande shipped" || !strings.Contains(msg.Header.Get("To"), "zoe@example.com") || msg.Header.Get("X-FraiseQL-Event-ID") == "" {
		t.Errorf("headers = %v", msg.Header)
	}
	if !bytes.Contains(got.Data, []byte("&lt;fragile&gt;")) || !bytes.Contains(got.Data, []byte("Order o-7 is shipped.")) {
		t.Errorf("bodies:\n%s", got.Data)
	}

	if n := ts.Conns(); n != 1 || ts.Closed() != 0 {
		t.Fatalf("connections: %d opened, %d closed; want one kept open", n, ts.Closed())
	}
	stop()
	waitFor(t, "the kept SMTP session ended at shutdown", func() bool { return ts.Closed() == 1 })
}

// A password variable that is not set stops the start, naming the key.
func TestEmailPasswordEnvUnset(t *testing.T) {
	t.Parallel()
	cfg := emailConfig(t, 2525, "")
	cfg.Email.TLS, cfg.Email.Username, cfg.Email.PasswordEnv = "starttls", "mailer", "SMTP_PASSWORD_FOR_TEST"
	_, err := bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: slog.New(slog.DiscardHandler),
		LookupEnv: func(string) (string, bool) { return "", false }})
	var ce *config.ConfigError
	if !errors.As(err, &ce) || ce.Key != "email.password_env" || !strings.Contains(err.Error(), "SMTP_PASSWORD_FOR_TEST") {
		t.Errorf("New = %v, want a ConfigError on email.password_env naming the variable", err)
	}
}

// actions.LoadObservers (run, validate-config, debug-event, reload, dlq
// retry) applies the adapters' checks: a signing secret the Standard
// Webhooks libraries would refuse and a fixed address that is not one
// stop the load, naming the key and never the secret.
func TestLoadObserversAppliesTheAdapterChecks(t *testing.T) {
	t.Parallel()
	const short = "whsec_c2VjcmV0LXNpZ25pbmcta2V5" // 18 bytes: the specification asks for 24 to 64
	env := func(k string) (string, bool) {
		switch k {
		case "NEW":
			return hookSecret, true
		case "OLD":
			return short, true
		}
		return "", false
	}
	load := func(t *testing.T, action string) error {
		t.Helper()
		cfg := emailConfig(t, 2525, "")
		file := filepath.Join(t.TempDir(), "observers.toml")
		body := "[[observers]]\nname = \"o\"\nentity = \"Order\"\nevents = [\"INSERT\"]\n[[observers.actions]]\n" + action
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.ObserversFile = file
		_, err := actions.LoadObservers(cfg, env)
		return err
	}
	if err := load(t, "type = \"webhook\"\nurl = \"https://example.com/h\"\nsigning_secrets_env = [\"NEW\"]\n"); err != nil {
		t.Fatalf("a valid secret: %v", err)
	}
	for _, tt := range []struct {
		name, action string
		want         []string
	}{
		{"short rotated secret", "type = \"webhook\"\nurl = \"https://example.com/h\"\nsigning_secrets_env = [\"NEW\", \"OLD\"]\n",
			[]string{`observers.toml: observers[0] ("o")`, "signing_secrets_env[1] (OLD)", "decodes to 18 bytes"}},
		{"secret without the prefix", "type = \"webhook\"\nurl = \"https://example.com/h\"\nsigning_secret = \"my webhook secret\"\n",
			[]string{"signing_secret:", `"whsec_" followed by base64`}},
		{"bad cc", "type = \"email\"\nto = [\"ops@example.com\"]\ncc = [\"ops at example\"]\nsubject = \"s\"\nbody_template = \"b\"\n",
			[]string{"cc[0]", "not an email address"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := load(t, tt.action)
			var ce *config.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("load = %v, want a ConfigError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, secret := range []string{short[6:], "my webhook secret", hookSecret[6:]} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q carries a secret", err)
				}
			}
		})
	}
}

// debug-event shows the email message (recipients, subject, both bodies),
// the number of webhook signatures, and never a secret from the
// environment.
func TestDebugEventEmailAndSecrets(t *testing.T) {
	t.Parallel()
	const token = "Bearer env-token-0123456789"
	cfg := emailConfig(t, 2525, "")
	file := filepath.Join(t.TempDir(), "observers.toml")
	hook := "[[observers]]\nname = \"hook\"\nentity = \"Order\"\nevents = [\"UPDATE\"]\n[[observers.actions]]\ntype = \"webhook\"\n" +
		"url = \"https://hooks.example.com/orders\"\nsigning_secret_env = \"NEW\"\nsigning_secrets_env = [\"OLD\"]\nheaders_env = { Authorization = \"ORDERS_HOOK_TOKEN\" }\n"
	if err := os.WriteFile(file, []byte(hook), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ObserversFile = file
	const oldSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"NEW": hookSecret, "OLD": oldSecret, "ORDERS_HOOK_TOKEN": token}[k]
		return v, ok
	}
	input := `{"id": "e-1", "event_type": "UPDATE", "entity_type": "Order", "entity_id": "o-7",
		"data": {"status": "shipped", "note": "<fragile>", "customer": {"name": "Zoë", "email": "zoe@example.com"}}}`
	rep, err := actions.DebugEvent(cfg, env, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{hookSecret[6:], oldSecret[6:], "env-token-0123456789"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the dry run shows a secret: %s", raw)
		}
	}
	var back struct {
		Matched []struct {
			Name    string `json:"name"`
			Actions []map[string]json.RawMessage
		} `json:"matched"`
	}
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Matched) != 2 {
		t.Fatalf("report %s: %v", raw, err)
	}
	var mailPreview struct {
		From, Subject, Text, HTML string
		To, Bcc                   []string
	}
	if err := json.Unmarshal(back.Matched[0].Actions[0]["email"], &mailPreview); err != nil {
		t.Fatalf("email details %s: %v", back.Matched[0].Actions[0]["email"], err)
	}
	if mailPreview.From != "Boutique <orders@example.com>" || strings.Join(mailPreview.To, ",") != "Zoë <zoe@example.com>" ||
		strings.Join(mailPreview.Bcc, ",") != "audit@example.com" || mailPreview.Subject != "Commande shipped" ||
		mailPreview.Text != "Order o-7 is shipped." || mailPreview.HTML != "<p>&lt;fragile&gt;</p>" {
		t.Errorf("email preview = %+v", mailPreview)
	}
	var hookPreview struct {
		Signing    string
		Signatures int
		Headers    map[string]string
	}
	if err := json.Unmarshal(back.Matched[1].Actions[0]["webhook"], &hookPreview); err != nil {
		t.Fatal(err)
	}
	if hookPreview.Signing != "signed with 2 secrets" || hookPreview.Signatures != 2 || !strings.HasPrefix(hookPreview.Headers["Authorization"], "(redacted)") {
		t.Errorf("webhook preview = %+v", hookPreview)
	}
}

// Every example configuration passes the checks run applies (the
// configuration test covers the keys; this one the adapters' checks).
func TestExampleConfigsPassTheAdapterChecks(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../configs/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	env := func(string) (string, bool) { return hookSecret, true }
	for _, f := range files {
		cfg, err := config.Load(f, nil)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, err := actions.LoadObservers(cfg, env); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
