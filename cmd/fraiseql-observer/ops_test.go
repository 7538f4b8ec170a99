package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// healthcheck: exit 0 when /readyz answers 200, 1 when it answers 503 or
// nobody answers, 2 when the configuration gives nothing to ask.
func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	serve := func(t *testing.T, code int, body string) string {
		t.Helper()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/readyz" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	closedPort := func(t *testing.T) string {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	config := func(t *testing.T, listen string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(p, []byte("[http]\nlisten = \""+listen+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unspecified := func(t *testing.T) string {
		t.Helper()
		_, port, _ := net.SplitHostPort(serve(t, http.StatusOK, `{"database":"ok"}`))
		return "0.0.0.0:" + port // as in a container: reached on loopback
	}
	cases := []struct {
		name   string
		listen func(t *testing.T) string
		code   int
		stdout string
		stderr string
	}{
		{"ready", func(t *testing.T) string { return serve(t, http.StatusOK, `{"database":"ok","reader":"reading"}`) },
			0, "ready: database ok, reader reading", ""},
		{"ready on a standby", func(t *testing.T) string {
			return serve(t, http.StatusOK, `{"database":"ok","reader":"standby (another replica holds the lease, or starting)"}`)
		}, 0, "reader standby", ""},
		{"listening on 0.0.0.0", unspecified, 0, "database ok", ""},
		{"not ready", func(t *testing.T) string {
			return serve(t, http.StatusServiceUnavailable, `{"database":"connection refused","reader":"reading"}`)
		}, 1, "", "not ready: database: connection refused"},
		{"nobody listening", closedPort, 1, "", "connection refused"},
		{"admin server off", func(*testing.T) string { return "" }, 2, "", "http.listen: the admin HTTP server is off"},
		{"port 0", func(*testing.T) string { return "127.0.0.1:0" }, 2, "", "port 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, "healthcheck", "--config", config(t, c.listen(t)), "--timeout", "2s")
			if code != c.code || !strings.Contains(stdout, c.stdout) || !strings.Contains(stderr, c.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout, stderr, c.code, c.stdout, c.stderr)
			}
		})
	}
	if _, stderr, code := runCLI(t, "healthcheck", "extra"); code != 2 || !strings.Contains(stderr, "takes no arguments") {
		t.Errorf("healthcheck extra: exit %d, %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, "healthcheck", "--bogus"); code != 2 || !strings.Contains(stderr, "flag provided but not defined") {
		t.Errorf("healthcheck --bogus: exit %d, %q", code, stderr)
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// validate-config checks every *_env reference with the environment it is
// given: an unset url_env of multi-database used to pass.
func TestValidateConfigChecksEnvReferences(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "multi.toml", `
topology = "multi-database"
[redis]
url = "redis://127.0.0.1:6379/0"
[nats]
url = "nats://127.0.0.1:4222"
[[databases]]
name = "orders"
url = "postgres://postgres@127.0.0.1/orders"
[[databases]]
name = "billing"
url_env = "BILLING_DATABASE_URL"
[[observers]]
name = "o"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "log"
`)
	cases := []struct {
		name    string
		environ []string
		code    int
		stderr  string
	}{
		{"unset", nil, 2, "databases[1].url_env: environment variable BILLING_DATABASE_URL is not set"},
		{"empty", []string{"BILLING_DATABASE_URL="}, 2, "BILLING_DATABASE_URL is not set"},
		{"set", []string{"BILLING_DATABASE_URL=postgres://postgres@127.0.0.1/billing", "FRAISEQL_ADMIN_TOKEN=t"}, 0, ""},
		{"worker needs no source", []string{"FRAISEQL_ROLE=worker"}, 0, "warning: databases[1].url_env: environment variable BILLING_DATABASE_URL is not set: unused"},
		{"admin token unset is a warning", []string{"BILLING_DATABASE_URL=x"}, 0, "warning: http.admin_token_env: environment variable FRAISEQL_ADMIN_TOKEN is not set: the admin API answers 403"},
		{"a misspelt variable is a warning", []string{"BILLING_DATABASE_URL=x", "FRAISEQL_DATABSE_URL=postgres://x"}, 0, "warning: FRAISEQL_DATABSE_URL configures nothing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if code, stderr := validate(file, c.environ); code != c.code || !strings.Contains(stderr, c.stderr) {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr, c.code, c.stderr)
			}
		})
	}
}

// validate-config refuses what run refuses with the adapters' own parsers
// (security.allowed_networks, tracing.endpoint) and says which [tracing]
// keys do nothing while tracing is off, whose headers_env variables it
// then does not require.
func TestValidateConfigChecksWhatRunChecks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		body    string
		environ []string
		code    int
		stderr  string
	}{
		{"a network that is not one", "[security]\nallowed_networks = [\"nope\"]", nil, 2, "security.allowed_networks: "},
		{"a tracing endpoint without a port", "[tracing]\nendpoint = \"collector:\"", nil, 2, "tracing.endpoint: "},
		{"a tracing endpoint without a host", "[tracing]\nendpoint = \":4317\"", nil, 2, "tracing.endpoint: "},
		{"tracing keys while tracing is off", "[tracing]\nsample_ratio = 0.5\n[tracing.headers_env]\nauthorization = \"NOPE_UNSET\"", nil, 0,
			"warning: tracing is off (no tracing.endpoint, no OTEL_EXPORTER_OTLP_ENDPOINT): tracing.sample_ratio, tracing.headers_env have no effect"},
		{"headers variable unset while tracing is off", "[tracing.headers_env]\nauthorization = \"NOPE_UNSET\"", nil, 0,
			"warning: tracing.headers_env.authorization: environment variable NOPE_UNSET is not set: unused: tracing is off"},
		{"headers variable unset with tracing on", "[tracing.headers_env]\nauthorization = \"NOPE_UNSET\"", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318"}, 2,
			"tracing.headers_env.authorization: environment variable NOPE_UNSET is not set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			body := "topology = \"memory\"\n" + cliObserver + c.body
			code, stderr := validate(writeFile(t, "config.toml", body), append(c.environ, "FRAISEQL_ADMIN_TOKEN=t"))
			if code != c.code || !strings.Contains(stderr, c.stderr) {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr, c.code, c.stderr)
			}
		})
	}
}

// --print redacts a NATS server list's credentials (a token as the URL's
// user, every URL of a comma-separated list) and a PostgreSQL
// keyword/value string's password, whose host list has a comma too.
func TestValidateConfigPrintRedactsNATSURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, secrets, shown string }{
		{"nats://natstoken9@127.0.0.1:4222,nats://user:natspass10@127.0.0.2:4222", "natstoken9 natspass10", "127.0.0.2:4222"},
		{"wss://wstoken12@127.0.0.1:443", "wstoken12", "127.0.0.1:443"}, // a token as the user of a websocket URL
		{"tls://user:tlspass13@127.0.0.1:4222", "tlspass13", "127.0.0.1:4222"},
	} {
		file := writeFile(t, "config.toml", `
topology = "nats-distributed"
[database]
url = "host=127.0.0.1,127.0.0.3 user=app password=pgsecret11 dbname=app"
[redis]
url = "redis://127.0.0.1:6379/0"
[nats]
url = "`+tc.url+`"
[[observers]]
name = "hook"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "log"
`)
		var out, errOut bytes.Buffer
		if err := checkConfig(file, []string{"FRAISEQL_ADMIN_TOKEN=x"}, true, false, &out, &errOut); err != nil {
			t.Fatalf("%v\n%s", err, errOut.String())
		}
		got := out.String()
		for _, s := range append(strings.Fields(tc.secrets), "pgsecret11") { // a PostgreSQL host list holds a comma too
			if strings.Contains(got, s) {
				t.Errorf("%s: printed secret %q:\n%s", tc.url, s, got)
			}
		}
		if !strings.Contains(got, tc.shown) {
			t.Errorf("%s: output lacks %s:\n%s", tc.url, tc.shown, got)
		}
	}
}

// --print shows the effective configuration, defaults and topology
// defaults included, with every secret redacted, as TOML or JSON.
func TestValidateConfigPrintRedacts(t *testing.T) {
	t.Parallel()
	obsFile := writeFile(t, "observers.toml", `
[[observers]]
name = "from-file"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "slack"
webhook_url = "https://hooks.slack.com/services/T000/B000/slacksecretpath"
`)
	file := writeFile(t, "config.toml", `
topology = "postgres-redis"
observers_file = '`+obsFile+`'
[database]
url = "postgres://app:dbpassword1@db.internal:5432/app?sslmode=require&sslpassword=keypass2"
[redis]
url = "redis://default:redispass3@cache.internal:6379/0"
[[observers]]
name = "hook"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
url = "https://tokenuser9abc@example.com/hook/PathSecret10xyz?token=querysecret4&plain=x"
signing_secret = "whsec_c2lnbmluZ3NlY3JldDUtMjQtYnl0ZXMtbG9uZw=="
headers = { Authorization = "Bearer headersecret6", "X-Api-Key" = "apikey7", "X-Trace" = "visible-header" }
[observers.actions.batch]
max_events = 50
`)
	secrets := []string{"dbpassword1", "keypass2", "redispass3", "querysecret4", "c2lnbmluZ3NlY3JldDUtMjQtYnl0ZXMtbG9uZw==", "headersecret6", "apikey7", "slacksecretpath", "tokenuser9abc", "PathSecret10xyz"}
	for _, asJSON := range []bool{false, true} {
		var out, errOut bytes.Buffer
		environ := []string{"FRAISEQL_ADMIN_TOKEN=admintoken8", "FRAISEQL_LOGGING_LEVEL=debug"}
		if err := checkConfig(file, environ, true, asJSON, &out, &errOut); err != nil {
			t.Fatalf("json=%v: %v\n%s", asJSON, err, errOut.String())
		}
		got := out.String()
		for _, s := range append(secrets, "admintoken8") {
			if strings.Contains(got, s) {
				t.Errorf("json=%v: printed secret %q:\n%s", asJSON, s, got)
			}
		}
		for _, want := range []string{
			"db.internal:5432", "sslmode=require", "cache.internal:6379", "hooks.slack.com", "visible-header",
			"FRAISEQL_ADMIN_TOKEN", "from-file", "(redacted)", "debug", "8079",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("json=%v: output lacks %q:\n%s", asJSON, want, got)
			}
		}
		if asJSON {
			var tree map[string]any
			if err := json.Unmarshal(out.Bytes(), &tree); err != nil {
				t.Fatalf("--json output is not JSON: %v", err)
			}
			perf, _ := tree["performance"].(map[string]any)
			if perf["enable_dedup"] != true || perf["enable_caching"] != true {
				t.Errorf("performance = %v, want the topology's defaults (dedup and caching on)", perf)
			}
			obs, _ := tree["observers"].([]any)
			if len(obs) != 2 {
				t.Fatalf("observers = %v, want both files'", tree["observers"])
			}
			// The batch keys left out are shown with the defaults they run with.
			hook, _ := obs[0].(map[string]any)
			acts, _ := hook["actions"].([]any)
			act, _ := acts[0].(map[string]any)
			batch, _ := act["batch"].(map[string]any)
			if batch["max_events"] != float64(50) || batch["max_bytes"] != float64(1<<20) || batch["max_wait"] != "20ms" {
				t.Errorf("batch = %v, want max_events 50 and the defaults max_bytes 1048576, max_wait 20ms", act["batch"])
			}
		} else if !strings.HasPrefix(got, "# Effective configuration") || !strings.Contains(got, "[[observers.actions]]") {
			t.Errorf("TOML output:\n%s", got)
		}
	}
}

// An endpoint override that matches no action (here: the port is
// missing on an https endpoint that is not on 443) is a warning naming the
// entry, and the endpoints that do match are not.
func TestValidateConfigWarnsOfUnusedEndpointOverrides(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "config.toml", `
topology = "memory"
[email]
host = "127.0.0.1"
from = "observer@example.com"
[[delivery.endpoints]]
endpoint = "https://hooks.example.com"
rate_limit = 5
[[delivery.endpoints]]
endpoint = "https://hooks.example.com:8443/any/path"
rate_limit = 5
[[delivery.endpoints]]
endpoint = "smtp://127.0.0.1:587"
max_concurrent = 2
[[delivery.endpoints]]
endpoint = "log:orders/gone"
[[observers]]
name = "orders"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
url = "https://hooks.example.com:8443/orders"
[[observers.actions]]
type = "email"
to = ["ops@example.com"]
subject = "order"
body_template = "order"
`)
	var out, errOut bytes.Buffer
	if err := checkConfig(file, []string{"FRAISEQL_ADMIN_TOKEN=t"}, false, false, &out, &errOut); err != nil {
		t.Fatalf("checkConfig: %v (stderr %s)", err, errOut.String())
	}
	got := errOut.String()
	for _, want := range []string{
		`warning: delivery.endpoints[0]: endpoint "https://hooks.example.com" ("https://hooks.example.com:443" as the service names it) matches no configured action`,
		`warning: delivery.endpoints[3]: endpoint "log:orders/gone"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("stderr %q lacks %q", got, want)
		}
	}
	for _, unwanted := range []string{"delivery.endpoints[1]", "delivery.endpoints[2]"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("stderr %q warns of %s, which matches an action", got, unwanted)
		}
	}
}

// validate runs validate-config's check of file under environ and
// returns the exit status and what it wrote on stderr, the error's text
// included.
func validate(file string, environ []string) (code int, stderr string) {
	var out, errOut bytes.Buffer
	if err := checkConfig(file, environ, false, false, &out, &errOut); err != nil {
		code = exitCode(err)
		errOut.WriteString(err.Error())
	}
	return code, errOut.String()
}

// validate-config refuses what run refuses: a process that runs actions
// with no observer (every event consumed, nothing done); a bridge needs
// none.
func TestValidateConfigRefusesNoObservers(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "empty.toml", "[database]\nurl = \"postgres://postgres@127.0.0.1/app\"\n")
	if code, stderr := validate(file, nil); code != 2 || !strings.Contains(stderr, "no observers configured") || !strings.Contains(stderr, "empty.toml") {
		t.Errorf("no observers: exit %d, stderr %q; want 2 naming the file and the missing observers", code, stderr)
	}
	bridge := writeFile(t, "bridge.toml", "topology = \"nats-distributed\"\nrole = \"bridge\"\n[database]\nurl = \"postgres://postgres@127.0.0.1/app\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\n")
	if code, stderr := validate(bridge, []string{"FRAISEQL_ADMIN_TOKEN=t"}); code != 0 {
		t.Errorf("a bridge without observers: exit %d, stderr %q; want 0", code, stderr)
	}
}

// A value given both directly and through *_env is refused as such, not
// as an unset variable (the environment check ran first).
func TestValidateConfigBothValueAndEnv(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "both.toml", `
[[observers]]
name = "o"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
url = "https://example.com/h"
url_env = "NOPE_UNSET"
`)
	if code, stderr := validate(file, nil); code != 2 || !strings.Contains(stderr, "url and url_env: set only one") || strings.Contains(stderr, "NOPE_UNSET is not set") {
		t.Errorf("exit %d, stderr %q; want 2 saying to set only one", code, stderr)
	}
}

// validate-config reads memory.events_file as run does: a line run would
// refuse is refused here, naming the file and the line (it said
// "configuration ok" and run then exited 2). A byte-order mark before the
// first event is not an error.
func TestValidateConfigReadsTheEventsFile(t *testing.T) {
	t.Parallel()
	good := `{"id":"e1","event_type":"INSERT","entity_type":"Order","entity_id":"o1","data":{}}`
	for _, c := range []struct {
		name, events, stderr string
		code                 int
	}{
		{"a truncated line", good + "\n" + `{"id":"e2","event_type":"INSERT"` + "\n", "line 2", 2},
		{"a byte-order mark", "\xef\xbb\xbf" + good + "\n", "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			events := writeFile(t, "events.jsonl", c.events)
			body := "topology = \"memory\"\n[memory]\nevents_file = " + strconv.Quote(events) + "\n" + cliObserver
			code, stderr := validate(writeFile(t, "config.toml", body), []string{"FRAISEQL_ADMIN_TOKEN=t"})
			if code != c.code || !strings.Contains(stderr, c.stderr) || c.code != 0 && !strings.Contains(stderr, "events.jsonl") {
				t.Errorf("exit %d, stderr %q; want %d naming the file and %q", code, stderr, c.code, c.stderr)
			}
		})
	}
}
