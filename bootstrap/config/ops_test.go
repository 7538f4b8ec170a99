package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// The topologies built for Redis turn dedup and caching on unless a key
// turns them off; an explicit false (file or environment) wins; the other
// topologies leave them off unless turned on.
func TestDedupAndCachingDefaultByTopology(t *testing.T) {
	t.Parallel()
	const redis = "[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n"
	const nats = "[nats]\nurl = \"nats://127.0.0.1:4222\"\n"
	const sources = "[[databases]]\nname = \"a\"\nurl = \"postgres://postgres@127.0.0.1/a\"\n"
	cases := []struct {
		name           string
		toml           string
		env            []string
		dedup, caching bool
	}{
		{"postgres-only", `topology = "postgres-only"`, nil, false, false},
		{"memory", `topology = "memory"`, nil, false, false},
		{"postgres-only, turned on", "topology = \"postgres-only\"\n[performance]\nenable_dedup = true\n", nil, true, false},
		{"postgres-redis", "topology = \"postgres-redis\"\n" + redis, nil, true, true},
		{"nats-distributed", "topology = \"nats-distributed\"\n" + redis + nats, nil, true, true},
		{"multi-database", "topology = \"multi-database\"\n" + redis + nats + sources, nil, true, true},
		{"postgres-redis, dedup off in the file", "topology = \"postgres-redis\"\n" + redis + "[performance]\nenable_dedup = false\n", nil, false, true},
		{"postgres-redis, caching off in the environment", "topology = \"postgres-redis\"\n" + redis,
			[]string{"FRAISEQL_PERFORMANCE_ENABLE_CACHING=false"}, true, false},
		{"topology from the environment", redis, []string{"FRAISEQL_TOPOLOGY=postgres-redis"}, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := loadConfig(t, c.toml, c.env)
			if cfg.Performance.EnableDedup != c.dedup || cfg.Performance.EnableCaching != c.caching {
				t.Errorf("enable_dedup = %v, enable_caching = %v; want %v, %v",
					cfg.Performance.EnableDedup, cfg.Performance.EnableCaching, c.dedup, c.caching)
			}
		})
	}
}

// database.poll_interval defaults to 100ms under database.wake = "poll"
// (it bounds the first row's wait after a quiet spell there), 1s under
// notify; an explicit value wins either way.
func TestPollIntervalDefaultFollowsWake(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		toml string
		env  []string
		want time.Duration
	}{
		{"notify", "", nil, time.Second},
		{"poll in the file", "[database]\nwake = \"poll\"\n", nil, config.PollIntervalPolling},
		{"poll in the environment", "", []string{"FRAISEQL_DATABASE_WAKE=poll"}, config.PollIntervalPolling},
		{"poll, interval in the file", "[database]\nwake = \"poll\"\npoll_interval = \"2s\"\n", nil, 2 * time.Second},
		{"poll, interval in the environment", "[database]\nwake = \"poll\"\n", []string{"FRAISEQL_DATABASE_POLL_INTERVAL=20ms"}, 20 * time.Millisecond},
		{"notify, interval in the file", "[database]\npoll_interval = \"300ms\"\n", nil, 300 * time.Millisecond},
		{"poll in the memory topology (no change log to poll)", "topology = \"memory\"\n[database]\nwake = \"poll\"\n", nil, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := loadConfig(t, c.toml, c.env)
			if cfg.Database.PollInterval != c.want {
				t.Errorf("database.poll_interval = %v, want %v", cfg.Database.PollInterval, c.want)
			}
			if err := cfg.SetTopology(cfg.Topology); err != nil || cfg.Database.PollInterval != c.want {
				t.Errorf("after SetTopology: database.poll_interval = %v (%v), want %v", cfg.Database.PollInterval, err, c.want)
			}
		})
	}
}

// run --topology applies the new topology's defaults to the keys the file
// left unset, both ways, and keeps the explicit ones.
func TestSetTopologyReappliesDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeConfig(t, "[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n[performance]\nenable_caching = false\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetTopology(config.TopologyPostgresRedis); err != nil {
		t.Fatal(err)
	}
	if !cfg.Performance.EnableDedup || cfg.Performance.EnableCaching {
		t.Errorf("postgres-redis: dedup %v caching %v, want true false", cfg.Performance.EnableDedup, cfg.Performance.EnableCaching)
	}
	if err := cfg.SetTopology(config.TopologyPostgresOnly); err != nil {
		t.Fatal(err)
	}
	if cfg.Performance.EnableDedup {
		t.Error("back to postgres-only: dedup still on")
	}
	if err := cfg.SetTopology("mesh"); err == nil {
		t.Error("unknown topology accepted")
	}
}

// A NATS topology without Redis: the default-on dedup says how to go on;
// a bridge, which runs no actions, needs no Redis.
func TestDefaultDedupWithoutRedis(t *testing.T) {
	t.Parallel()
	base := "topology = \"nats-distributed\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\n"
	_, err := config.Load(writeConfig(t, base), nil)
	var ce *config.ConfigError
	if !errors.As(err, &ce) || ce.Key != "performance.enable_dedup" ||
		!strings.Contains(ce.Msg, "on by default in topology nats-distributed") || !strings.Contains(ce.Msg, "performance.enable_dedup = false") {
		t.Errorf("err = %v, want the default named with the way out", err)
	}
	if _, err := config.Load(writeConfig(t, base+"[performance]\nenable_dedup = false\nenable_caching = false\n"), nil); err != nil {
		t.Errorf("dedup and caching off: %v", err)
	}
	if _, err := config.Load(writeConfig(t, base), []string{"FRAISEQL_ROLE=bridge"}); err != nil {
		t.Errorf("bridge without Redis: %v", err)
	}
}

// An error in observers_file names that file and the observer's index in
// it, not the main file's index or the main file.
func TestObserversFileErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const good = "[[observers]]\nname = %q\nentity = \"Order\"\nevents = [\"INSERT\"]\n[[observers.actions]]\ntype = \"log\"\n"
	obs := func(name string) string { return strings.ReplaceAll(good, "%q", `"`+name+`"`) }
	cases := []struct {
		name     string
		main     string
		file     string
		wantFile string // "main" or "observers"
		wantKey  string
		wantMsg  string
	}{
		{"bad condition in the file", obs("a") + obs("b"),
			obs("c") + obs("d") + "[[observers]]\nname = \"e\"\nentity = \"Order\"\nevents = [\"INSERT\"]\ncondition = \"status ==\"\n[[observers.actions]]\ntype = \"log\"\n",
			"observers", `observers[2] ("e")`, "condition"},
		{"missing service in the file", obs("a"),
			"[[observers]]\nname = \"c\"\nentity = \"Order\"\nevents = [\"INSERT\"]\n[[observers.actions]]\ntype = \"cache\"\nkey_pattern = \"k\"\n",
			"observers", `observers[0] ("c")`, "actions[0]: action type cache needs Redis"},
		{"bad observer in the main file", obs("a") + "[[observers]]\nname = \"b\"\nentity = \"Order\"\nevents = [\"BOOM\"]\n[[observers.actions]]\ntype = \"log\"\n",
			obs("c"), "main", `observers[1] ("b")`, "events[0]"},
		{"name used in both files", obs("a") + obs("b"), obs("c") + obs("b"),
			"observers", `observers[1] ("b")`, "already used by observers[1] of "},
		{"unset url_env in the file", obs("a"),
			"[[observers]]\nname = \"w\"\nentity = \"Order\"\nevents = [\"INSERT\"]\n[[observers.actions]]\ntype = \"webhook\"\nurl_env = \"UNSET_HOOK_URL\"\n",
			"observers", `observers[0] ("w")`, "UNSET_HOOK_URL"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			obsFile := write(c.name+"-observers.toml", c.file)
			main := write(c.name+"-main.toml", "observers_file = "+quote(obsFile)+"\n"+c.main)
			cfg, err := config.Load(main, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = config.LoadObservers(cfg, func(string) (string, bool) { return "", false }, config.Checks{})
			var ce *config.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("case %d: err = %v, want a ConfigError", i, err)
			}
			wantFile := main
			if c.wantFile == "observers" {
				wantFile = obsFile
			}
			if ce.File != wantFile || ce.Key != c.wantKey || !strings.Contains(ce.Msg, c.wantMsg) {
				t.Errorf("err = file %q key %q msg %q; want file %q key %q msg containing %q", ce.File, ce.Key, ce.Msg, wantFile, c.wantKey, c.wantMsg)
			}
		})
	}
}

func quote(s string) string { return `'` + s + `'` }

// Every *_env reference is found (sections, [[databases]], observers of
// both files, lists and maps of names), required ones unset are errors
// naming file and key, optional ones are reported apart.
func TestCheckEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	obsFile := filepath.Join(dir, "observers.toml")
	if err := os.WriteFile(obsFile, []byte(`
[[observers]]
name = "hook"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
url_env = "HOOK_URL"
signing_secret_env = "HOOK_SECRET"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	main := writeConfig(t, `
topology = "multi-database"
observers_file = '`+obsFile+`'
[redis]
addrs = ["127.0.0.1:6379"]
password_env = "REDIS_PASSWORD"
[nats]
url = "nats://127.0.0.1:4222"
[[databases]]
name = "orders"
url = "postgres://postgres@127.0.0.1/orders"
[[databases]]
name = "billing"
url_env = "BILLING_URL"
[[observers]]
name = "slack"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "slack"
webhook_url_env = "SLACK_URL"
`)
	cfg, err := config.Load(main, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOOK_URL": "https://example.com/h", "SLACK_URL": "", "REDIS_PASSWORD": "pw"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	optional, err := config.CheckEnv(cfg, lookup)
	if err == nil {
		t.Fatal("unset variables passed")
	}
	for _, want := range []string{
		main + `: databases[1].url_env: environment variable BILLING_URL is not set`,
		main + `: observers[0].actions[0].webhook_url_env: environment variable SLACK_URL is not set`, // empty counts as unset
		obsFile + `: observers[0].actions[0].signing_secret_env: environment variable HOOK_SECRET is not set`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, notWant := range []string{"HOOK_URL", "REDIS_PASSWORD"} {
		if strings.Contains(err.Error(), notWant) {
			t.Errorf("error names %s, which is set:\n%v", notWant, err)
		}
	}
	var ce *config.ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("error is not a ConfigError (exit status 2): %T", err)
	}
	if len(optional) != 1 || optional[0].Key != "http.admin_token_env" || optional[0].Variable != "FRAISEQL_ADMIN_TOKEN" {
		t.Errorf("optional unset = %+v, want http.admin_token_env", optional)
	}

	// A worker reads no source database: its url_env is not required.
	worker := cfg
	worker.Role = config.RoleWorker
	env["SLACK_URL"], env["HOOK_SECRET"] = "https://hooks.slack.com/x", "s"
	optional, err = config.CheckEnv(worker, lookup)
	if err != nil {
		t.Errorf("worker: %v", err)
	}
	if len(optional) != 2 || optional[0].Key != "databases[1].url_env" || !strings.Contains(optional[0].Effect, "worker") {
		t.Errorf("worker optional = %+v", optional)
	}
}

// An observers_file that cannot be opened is named with the key and the
// configuration file; a relative one says which directory it was taken
// from (the working directory, not the configuration file's).
func TestObserversFileNotFoundSaysWhereItLooked(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeConfig(t, "observers_file = \"no-such-observers.toml\"\n"), nil)
	if err == nil {
		_, err = config.LoadObservers(cfg, func(string) (string, bool) { return "", false }, config.Checks{})
	}
	wd, _ := os.Getwd()
	if err == nil || !strings.Contains(err.Error(), "observers_file") || !strings.Contains(err.Error(), "working directory, "+wd) {
		t.Errorf("error = %v, want it to name observers_file and the working directory %s", err, wd)
	}
}

// http.metrics_token_env is required while /metrics is served, and unused
// (a warning) when http.listen is empty.
func TestMetricsTokenEnvRequiredWhileListening(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeConfig(t, "topology = \"memory\"\n[http]\nmetrics_token_env = \"SCRAPE_TOKEN\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	none := func(string) (string, bool) { return "", false }
	if _, err := config.CheckEnv(cfg, none); err == nil || !strings.Contains(err.Error(), "http.metrics_token_env: environment variable SCRAPE_TOKEN is not set") {
		t.Errorf("unset metrics token variable: %v", err)
	}
	cfg.HTTP.Listen = ""
	optional, err := config.CheckEnv(cfg, none)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(optional, func(r config.EnvReference) bool { return r.Key == "http.metrics_token_env" }); i < 0 || !strings.Contains(optional[i].Effect, "http.listen is empty") {
		t.Errorf("optional = %+v, want http.metrics_token_env unused", optional)
	}
}
