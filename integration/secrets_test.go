package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// TestSecretsNeverLeak plants secrets where operators put them (a token
// in a webhook URL's path and another in its query, a Slack incoming
// webhook's path, a header value, a signing secret, the database
// password in its URL), makes every action fail so that errors are
// logged, retried, dead-lettered and retried again through the admin
// API, then greps everything the service shows: its logs (debug level),
// the dead-letter rows, the admin API's answers and the CLI's. None may
// hold a secret.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Both receivers answer 500 (their paths start with /status/500).
	recv, slackRecv := testsupport.StartReceiver(t), testsupport.StartReceiver(t)
	secrets := map[string]string{
		"webhook path token":  "pathtok-7f3a9c",
		"webhook query token": "querytok-4b81e2",
		"slack webhook path":  "slacktok-9d02c5",
		"header value":        "hdrsecret-61ab7e",
		"signing secret":      base64.StdEncoding.EncodeToString([]byte("signkey-3c7d90-24-bytes!")),
		"database password":   "dbpass-a58e13",
	}
	u, err := url.Parse(b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("postgres", secrets["database password"]) // trust authentication ignores it
	timeout := 5 * time.Second
	retry := retryPolicy(2, 20*time.Millisecond, 20*time.Millisecond, "fixed")
	cfg := b.config(
		config.ObserverConfig{Name: "hook", Entity: "Order", Events: []string{"INSERT"}, Retry: retry,
			Actions: []config.ActionConfig{{
				Type: "webhook", Timeout: &timeout,
				URL:           recv.URL + "/status/500/hooks/" + secrets["webhook path token"] + "/in?token=" + secrets["webhook query token"],
				Headers:       map[string]string{"Authorization": "Bearer " + secrets["header value"], "X-Api-Key": secrets["header value"]},
				SigningSecret: "whsec_" + secrets["signing secret"],
			}}},
		config.ObserverConfig{Name: "chat", Entity: "Order", Events: []string{"INSERT"}, Retry: retry,
			Actions: []config.ActionConfig{{
				Type:       "slack",
				WebhookURL: slackRecv.URL + "/status/500/services/T0001/B0002/" + secrets["slack webhook path"],
			}}},
	)
	cfg.Database.URL = u.String()
	logs := &logBuffer{}
	logger := newDebugLogger(logs)
	env := func(k string) (string, bool) {
		if k == "FRAISEQL_ADMIN_TOKEN" {
			return "admin-token", true
		}
		return "", false
	}
	app, err := bootstrap.New(t.Context(), cfg, bootstrap.Options{Logger: logger, LookupEnv: env})
	if err != nil {
		t.Fatalf("bootstrap.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = app.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		app.Close()
	})

	b.insert(t, change{Entity: "Order", Kind: "INSERT", Data: `{"n": 1}`})
	waitFor(t, "both actions dead-lettered", func() bool { return len(b.deadLetters(t)) == 2 })

	// What the admin API answers, retries through it included.
	base := "http://" + app.HTTPAddr()
	call := func(method, path string) string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer admin-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%s %s -> %d %s\n", method, path, resp.StatusCode, body)
	}
	var answers strings.Builder
	for _, path := range []string{"/readyz", "/metrics", "/api/observers/status", "/api/observers/state", "/api/observers/dlq",
		"/api/observers/dlq/stats", "/api/observers/checkpoints"} {
		answers.WriteString(call(http.MethodGet, path))
	}
	var ids []int64
	rows, err := b.pool.Query(t.Context(), `SELECT id FROM observer.dead_letters`)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		answers.WriteString(call(http.MethodGet, fmt.Sprintf("/api/observers/dlq/%d", id)))
		answers.WriteString(call(http.MethodPost, fmt.Sprintf("/api/observers/dlq/%d/retry", id)))
	}
	answers.WriteString(call(http.MethodPost, "/api/observers/dlq/retry-all"))

	// What the dead-letter rows hold, every column.
	var stored strings.Builder
	rows, err = b.pool.Query(t.Context(), `SELECT event::text, observer, action, action_type, error, coalesce(encode(raw, 'escape'), '') FROM observer.dead_letters`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var cols [6]string
		if err := rows.Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5]); err != nil {
			t.Fatal(err)
		}
		stored.WriteString(strings.Join(cols[:], " | ") + "\n")
	}
	rows.Close()

	// What the CLI prints from the same configuration.
	file := writeFile(t, "secrets.toml", fmt.Sprintf(`
[database]
url = %q
[http]
listen = ""
[security]
allowed_networks = ["127.0.0.1/32"]
[[observers]]
name = "hook"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
url = %q
headers = { "Authorization" = %q }
signing_secret = %q
`, u.String(), recv.URL+"/status/500/hooks/"+secrets["webhook path token"]+"/in?token="+secrets["webhook query token"],
		"Bearer "+secrets["header value"], "whsec_"+secrets["signing secret"]))
	var printed strings.Builder
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"dlq", "list", "--json"}, {"dlq", "retry-all", "--json"}, {"validate-config"}} {
		stdout, stderr, code := cli(t, cliEnv(), append(args, "--config", file)...)
		fmt.Fprintf(&printed, "%v -> %d\n%s\n%s\n", args, code, stdout, stderr)
	}
	for _, id := range ids {
		stdout, stderr, _ := cli(t, cliEnv(), "dlq", "show", fmt.Sprint(id), "--config", file)
		printed.WriteString(stdout + stderr)
	}

	cancel()
	<-done
	shown := map[string]string{"logs": logs.String(), "dead letters": stored.String(), "admin API": answers.String(), "CLI": printed.String()}
	for where, text := range shown {
		if text == "" {
			t.Fatalf("nothing to grep in the %s", where)
		}
		for what, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("the %s hold the %s %q", where, what, secret)
			}
		}
	}
	// The failures are there to be seen, with their targets as scheme,
	// host and port; and the requests did carry the secrets.
	if strings.Count(stored.String(), "status 500") < 2 || !strings.Contains(logs.String(), "127.0.0.1") {
		t.Errorf("the failures are not reported:\n%s", stored.String())
	}
	sent := recv.Requests()
	if len(sent) == 0 || !strings.Contains(sent[0].Path, secrets["webhook path token"]) || sent[0].Header.Get("Authorization") != "Bearer "+secrets["header value"] ||
		len(slackRecv.Requests()) == 0 || !strings.Contains(slackRecv.Requests()[0].Path, secrets["slack webhook path"]) {
		t.Errorf("the actions did not use the planted secrets: %+v", sent)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs.String())
		t.Logf("dead letters:\n%s\nadmin API:\n%s\nCLI:\n%s", stored.String(), answers.String(), printed.String())
	}
	t.Logf("fault secrets: planted=%d grepped logs=%dB dead_letters=%dB admin_api=%dB cli=%dB leaks=0",
		len(secrets), len(logs.String()), stored.Len(), answers.Len(), printed.Len())
}

func newDebugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
