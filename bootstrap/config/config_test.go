package config_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadConfig loads body as a configuration file with environ; an error
// fails the test.
func loadConfig(t *testing.T, body string, environ []string) config.Config {
	t.Helper()
	cfg, err := config.Load(writeConfig(t, body), environ)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Defaults()
	if cfg.Topology != want.Topology || cfg.Database != want.Database || cfg.Reader != want.Reader || cfg.HTTP != want.HTTP {
		t.Fatalf("defaults not applied: got %+v", cfg)
	}
}

func TestLoadConfigFileThenEnvironment(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, `
topology = "postgres-only"
[database]
url = "postgres://file@127.0.0.1/db"
poll_interval = "250ms"
change_log_table = "app.changes"
[reader]
batch_size = 50
[security]
allowed_networks = ["10.0.0.0/8"]
`)
	env := []string{
		"FRAISEQL_DATABASE_URL=postgres://env@127.0.0.1/db",
		"FRAISEQL_READER_BATCH_SIZE=75",
		"FRAISEQL_DATABASE_MIGRATE_ON_START=true",
		"FRAISEQL_DATABASE_CHANGE_LOG_TABLE=other.log",
		"FRAISEQL_DATABASE_WAKE=poll",
		"FRAISEQL_SECURITY_ALLOWED_NETWORKS=127.0.0.1/32, ::1/128",
		"FRAISEQL_ADMIN_TOKEN=secret",             // a secret named by *_env: not a key, ignored
		"FRAISEQL_TEST_DATABASE_URL=postgres://x", // another program's variable: ignored
	}
	cfg, err := config.Load(p, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database.URL != "postgres://env@127.0.0.1/db" {
		t.Errorf("database.url = %q, want the environment's", cfg.Database.URL)
	}
	if cfg.Database.PollInterval != 250*time.Millisecond {
		t.Errorf("database.poll_interval = %s, want the file's 250ms", cfg.Database.PollInterval)
	}
	if cfg.Reader.BatchSize != 75 || !cfg.Database.MigrateOnStart || cfg.Database.ChangeLogTable != "other.log" || cfg.Database.Wake != config.WakePoll {
		t.Errorf("environment overrides not applied: %+v %+v", cfg.Reader, cfg.Database)
	}
	if got := strings.Join(cfg.Security.AllowedNetworks, ","); got != "127.0.0.1/32,::1/128" {
		t.Errorf("security.allowed_networks = %q", got)
	}
	if cfg.Reader.CheckpointInterval != time.Second {
		t.Errorf("unset key lost its default: %s", cfg.Reader.CheckpointInterval)
	}
	if cfg.File != p {
		t.Errorf("File = %q", cfg.File)
	}
}

func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		env  []string
		want []string // substrings of the error
	}{
		{"unknown top-level key", "topolgy = \"memory\"", nil, []string{"topolgy", "unknown key"}},
		{"unknown nested key", "[database]\nurll = \"x\"", nil, []string{"database.urll", "unknown key"}},
		{"unknown observer key", "[[observers]]\nname = \"a\"\nentty = \"Order\"", nil, []string{"observers[0].entty", "unknown key"}},
		{"[observers] for [[observers]]", "[observers]\nname = \"a\"\nentity = \"Order\"", nil, []string{"observers", "write [[observers]]"}},
		{"[observers.actions] for [[observers.actions]]", "[[observers]]\nname = \"a\"\n[observers.actions]\ntype = \"log\"", nil,
			[]string{"observers[0].actions", "write [[observers.actions]]"}},
		{"[databases] for [[databases]]", "[databases]\nname = \"a\"", nil, []string{"databases", "write [[databases]]"}},
		{"bad duration", "[reader]\ncheckpoint_interval = \"5 minutes\"", nil, []string{"reader.checkpoint_interval", "duration"}},
		{"days for a duration", "[retry]\nmax_age = \"2d\"", nil, []string{"retry.max_age", `"2d" is not a duration`, "write 24h for a day"}},
		{"number as string", "[reader]\nbatch_size = \"lots\"", nil, []string{"reader.batch_size"}},
		{"toml syntax with line", "[database\nurl = 1", nil, []string{":1:"}},
		// The parser's structure errors carry no position: the line is found.
		{"a key twice", "[reader]\nbatch_size = 1\nbatch_size = 2\n", nil, []string{".toml:3:", "key batch_size is set a second time"}},
		{"a table twice", "[reader]\nbatch_size = 1\n[reader]\nname = \"x\"\n", nil, []string{".toml:3:", "[reader] a second time"}},
		{"[observers] after [[observers]]", "[[observers]]\nname = \"a\"\n[observers]\nname = \"b\"\n", nil, []string{".toml:3:", "write [[observers]]"}},
		{"[[reader]] after [reader]", "[reader]\nname = \"x\"\n[[reader]]\nname = \"y\"\n", nil, []string{".toml:3:", "reader is one table"}},
		{"bad topology", "topology = \"mesh\"", nil, []string{"topology", "mesh"}},
		{"bad role", "topology = \"memory\"\nrole = \"workers\"", nil, []string{"role", `"workers" is not a role: want all, bridge, worker`}},
		{"zero batch", "[reader]\nbatch_size = 0", nil, []string{"reader.batch_size", "positive"}},
		{"reader name of a bridge", "[reader]\nname = \"bridge:x\"", nil, []string{"reader.name", "bridge:x", "letters, digits"}},
		{"empty reader name", "[reader]\nname = \"\"", nil, []string{"reader.name", "required"}},
		{"bad log level", "[logging]\nlevel = \"loud\"", nil, []string{"logging.level"}},
		{"env not an integer", "", []string{"FRAISEQL_READER_BATCH_SIZE=many"}, []string{"reader.batch_size", "FRAISEQL_READER_BATCH_SIZE"}},
		{"env not a boolean", "", []string{"FRAISEQL_DATABASE_MIGRATE_ON_START=yes please"}, []string{"database.migrate_on_start"}},
		{"env not a duration", "", []string{"FRAISEQL_DATABASE_POLL_INTERVAL=soon"}, []string{"database.poll_interval", "duration"}},
		// A number where a duration is expected would read as nanoseconds,
		// a fraction where an integer is expected would be truncated.
		{"number as duration", "[database]\npoll_interval = 5", nil, []string{"database.poll_interval", `write a duration string such as "5s"`}},
		{"fraction as duration", "[reader]\ncheckpoint_interval = 1.5", nil, []string{"reader.checkpoint_interval", `write a duration string such as "5s"`}},
		{"number as observer retry delay", "[[observers]]\nname = \"a\"\n[observers.retry]\ninitial_delay = 100", nil, []string{"observers[0].retry.initial_delay", `write a duration string such as "5s"`}},
		{"number as action timeout", "[[observers]]\nname = \"a\"\nentity = \"*\"\nevents = [\"INSERT\"]\n[[observers.actions]]\ntype = \"webhook\"\nurl = \"https://example.com/\"\ntimeout = 5", nil, []string{"observers[0].actions[0].timeout", `write a duration string such as "5s"`}},
		{"fraction as integer", "[reader]\nbatch_size = 3.7", nil, []string{"reader.batch_size", "3.7", "not a whole number"}},
		{"fraction as int64", "[nats.stream]\nmax_msgs = 10.5", nil, []string{"nats.stream.max_msgs", "not a whole number"}},
		{"fraction as observer attempts", "[[observers]]\nname = \"a\"\n[observers.retry]\nmax_attempts = 2.5", nil, []string{"observers[0].retry.max_attempts", "not a whole number"}},
		{"env number as duration", "", []string{"FRAISEQL_DATABASE_POLL_INTERVAL=5"}, []string{"database.poll_interval", "FRAISEQL_DATABASE_POLL_INTERVAL", `write a duration string such as "5s"`}},
		{"event limit above the in-flight bound", "[reader]\nmax_event_bytes = 2048\nmax_in_flight_bytes = 1024", nil, []string{"reader.max_event_bytes", "max_in_flight_bytes"}},
		{"zero in-flight bytes", "[reader]\nmax_in_flight_bytes = 0", nil, []string{"reader.max_in_flight_bytes", "positive"}},
		{"zero stall_after", "[reader]\nstall_after = \"0s\"", nil, []string{"reader.stall_after", "positive"}},
		{"negative coalesce_wait", "[reader]\ncoalesce_wait = \"-1ms\"", nil, []string{"reader.coalesce_wait", "between 0s and 1s"}},
		{"coalesce_wait over a second", "", []string{"FRAISEQL_READER_COALESCE_WAIT=2s"}, []string{"reader.coalesce_wait", "between 0s and 1s"}},
		{"negative coalesce_wait_max", "[reader]\ncoalesce_wait_max = \"-1ms\"", nil, []string{"reader.coalesce_wait_max", "between 0s and 1s"}},
		{"coalesce_wait_max over a second", "", []string{"FRAISEQL_READER_COALESCE_WAIT_MAX=1500ms"}, []string{"reader.coalesce_wait_max", "between 0s and 1s"}},
		{"unknown wake", "[database]\nwake = \"listen\"", nil, []string{"database.wake", `"listen"`, `"notify" or "poll"`}},
		{"reader name in nats-distributed", "topology = \"nats-distributed\"\nrole = \"bridge\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\n[reader]\nname = \"orders\"", nil, []string{"reader.name", "bridge:default"}},
		{"reader name in multi-database", "topology = \"multi-database\"\nrole = \"bridge\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\n[reader]\nname = \"billing\"\n[[databases]]\nname = \"a\"\nurl = \"postgres://127.0.0.1/a\"", nil, []string{"reader.name", "[[databases]] name"}},
		{"admin listen without a port", "[http]\nlisten = \"localhost\"", nil, []string{"http.listen", `"localhost" is not host:port`}},
		{"admin listen with a bad port", "", []string{"FRAISEQL_HTTP_LISTEN=127.0.0.1:99999"}, []string{"http.listen", "127.0.0.1:99999"}},
		{"unknown wake in memory", "topology = \"memory\"\n[database]\nwake = \"sometimes\"", nil, []string{"database.wake", `"sometimes"`}},
		{"poll interval under a millisecond when polling", "[database]\nwake = \"poll\"\npoll_interval = \"500us\"", nil, []string{"database.poll_interval", "at least 1ms"}},
		{"env unknown wake", "", []string{"FRAISEQL_DATABASE_WAKE=Poll"}, []string{"database.wake", `"Poll"`}},
		{"env fraction as integer", "", []string{"FRAISEQL_READER_MAX_IN_FLIGHT=3.7"}, []string{"reader.max_in_flight", "FRAISEQL_READER_MAX_IN_FLIGHT", "not an integer"}},
		// What the adapters refuse at run must be refused by validate-config
		// too, naming the key.
		{"several redis addrs without sentinel or cluster", "[redis]\naddrs = [\"127.0.0.1:6379\", \"127.0.0.1:6380\"]", nil, []string{"redis.addrs", "Sentinel", "Cluster"}},
		{"redis addr without port", "[redis]\naddrs = [\"127.0.0.1\"]", nil, []string{"redis.addrs[0]", "not host:port"}},
		{"redis cluster addr without host", "[redis]\ncluster = true\naddrs = [\"127.0.0.1:7000\", \":7001\"]", nil, []string{"redis.addrs[1]", "not host:port"}},
		{"nats subject prefix with an empty token", "topology = \"nats-distributed\"\nrole = \"bridge\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\nsubject_prefix = \"fraiseql..events\"", nil, []string{"nats.subject_prefix", "fraiseql..events"}},
		{"nats subject prefix starting with a dot", "topology = \"nats-distributed\"\nrole = \"bridge\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\nsubject_prefix = \".events\"", nil, []string{"nats.subject_prefix"}},
		{"nats limits stream bounded by count", "topology = \"nats-distributed\"\nrole = \"bridge\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\n[nats.stream]\nmax_msgs = 1000", nil, []string{"nats.stream.max_msgs", "retention = \"workqueue\""}},
		{"nats limits stream bounded by bytes", "topology = \"nats-distributed\"\nrole = \"bridge\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\n[nats.stream]\nmax_bytes = 1000000", nil, []string{"nats.stream.max_bytes", "consumed or not"}},
		{"nats duplicate window beyond max age", "topology = \"nats-distributed\"\nrole = \"bridge\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\n[nats.stream]\nmax_age = \"1m\"\nduplicate_window = \"2m\"", nil, []string{"nats.stream.duplicate_window", "nats.stream.max_age"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := ""
			if tt.body != "" {
				p = writeConfig(t, tt.body)
			}
			_, err := config.Load(p, tt.env)
			if err == nil {
				t.Fatal("no error")
			}
			var ce *config.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a ConfigError: %v", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if p != "" && !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestBuildObservers(t *testing.T) {
	t.Parallel()
	env := map[string]string{"HOOK_URL": "https://example.com/h", "HOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	three := 3
	obs, err := config.BuildObservers([]config.ObserverConfig{{
		Name: "o", Entity: "Order", Events: []string{"update", "INSERT"},
		Condition: "status == 'shipped'",
		Retry:     &config.RetryConfig{MaxAttempts: &three},
		Actions: []config.ActionConfig{
			{Type: "webhook", URLEnv: "HOOK_URL", SigningSecretEnv: "HOOK_SECRET", BodyTemplate: `{"s":"{{ status }}"}`},
			{Type: "log", MessageTemplate: "{{ event.id }}"},
			{Type: "webhook", URL: "https://example.com/other", Method: "put"},
		},
	}}, lookup, config.Checks{})
	if err != nil {
		t.Fatal(err)
	}
	o := obs[0]
	if o.Retry.MaxAttempts != 3 || o.Retry.InitialDelay != time.Second {
		t.Errorf("retry = %+v, want max 3 and the default delays", o.Retry)
	}
	if o.OnFailure != "dlq" {
		t.Errorf("on_failure default = %q", o.OnFailure)
	}
	w := o.Actions[0].Webhook
	if w.URL != env["HOOK_URL"] || len(w.SigningSecrets) != 1 || w.SigningSecrets[0] != env["HOOK_SECRET"] || w.Method != "POST" || w.Timeout != config.DefaultWebhookTimeout {
		t.Errorf("webhook = %+v", w)
	}
	for i, prefix := range []string{"webhook-", "log-", "webhook-"} {
		if name := o.Actions[i].Name; !strings.HasPrefix(name, prefix) || len(name) != len(prefix)+8 {
			t.Errorf("actions[%d] identity = %q, want %s<8 hex digits>", i, name, prefix)
		}
	}
	if o.Actions[2].Webhook.Method != "PUT" {
		t.Errorf("method not upper-cased: %q", o.Actions[2].Webhook.Method)
	}
}

func TestBuildObserversErrors(t *testing.T) {
	t.Parallel()
	lookup := func(name string) (string, bool) {
		if name == "HOOK_URL_NL" {
			return "https://hooks.example.com/T0/B0/secret\n", true
		}
		return "", false
	}
	valid := func() config.ObserverConfig {
		return config.ObserverConfig{Name: "o", Entity: "Order", Events: []string{"UPDATE"},
			Actions: []config.ActionConfig{{Type: "log"}}}
	}
	tests := []struct {
		name string
		edit func(o *config.ObserverConfig)
		want []string
	}{
		{"condition syntax", func(o *config.ObserverConfig) { o.Condition = "status == 'a' && )" }, []string{`"o"`, "condition", "column 18"}},
		{"webhook without url", func(o *config.ObserverConfig) { o.Actions = []config.ActionConfig{{Type: "webhook"}} }, []string{"actions[0]", "url"}},
		{"url_env unset", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "webhook", URLEnv: "NOPE"}}
		}, []string{"url_env", "NOPE"}},
		{"key of another type", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "log", URL: "https://x"}}
		}, []string{"url", "not used by log actions"}},
		{"unknown action type", func(o *config.ObserverConfig) { o.Actions = []config.ActionConfig{{Type: "fax"}} }, []string{"fax"}},
		{"unknown event", func(o *config.ObserverConfig) { o.Events = []string{"UPSERT"} }, []string{"events[0]", "UPSERT"}},
		{"no entity", func(o *config.ObserverConfig) { o.Entity = "" }, []string{"entity"}},
		{"bad template", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "log", MessageTemplate: "{{ event.nope }}"}}
		}, []string{"message_template", "nope"}},
		{"database function name", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "database", FunctionName: "fn; drop table x"}}
		}, []string{"actions[0]", "function_name", "not an identifier"}},
		{"database without function", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "database", Params: map[string]any{"a": 1}}}
		}, []string{"function_name", "required"}},
		{"database params nan", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "database", FunctionName: "f", Params: map[string]any{"a": math.NaN()}}}
		}, []string{"actions[0]", "params: not representable in JSON"}},
		{"webhook url without host", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "webhook", URL: "https:///path"}}
		}, []string{"actions[0]", "url: the URL has no host"}},
		{"webhook url of another scheme", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "webhook", URL: "ftp://x.example.com/"}}
		}, []string{"url: must start with https://"}},
		{"webhook url_env with a trailing newline", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "webhook", URLEnv: "HOOK_URL_NL"}}
		}, []string{"url_env (variable HOOK_URL_NL): the URL holds whitespace or a control character"}},
		{"slack url_env with a trailing newline", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "slack", WebhookURLEnv: "HOOK_URL_NL"}}
		}, []string{"webhook_url_env (variable HOOK_URL_NL): the URL holds whitespace"}},
		// A subject whose own text no event can make valid: every event
		// would be dead-lettered at once, so the configuration refuses it.
		{"nats subject with a wildcard", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "nats", Subject: "orders.*"}}
		}, []string{"actions[0]", "subject", `"orders.*"`, "contains '*'"}},
		{"nats subject with a space", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "nats", Subject: "orders created.{{ id }}"}}
		}, []string{"subject", "contains ' '"}},
		{"nats subject with an empty token", func(o *config.ObserverConfig) {
			o.Actions = []config.ActionConfig{{Type: "nats", Subject: "orders..{{ id }}"}}
		}, []string{"subject", "empty token"}},
		{"bad backoff", func(o *config.ObserverConfig) {
			b := "random"
			o.Retry = &config.RetryConfig{Backoff: &b}
		}, []string{"retry", "random"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := valid()
			tt.edit(&o)
			_, err := config.BuildObservers([]config.ObserverConfig{o}, lookup, config.Checks{})
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
	_, err := config.BuildObservers([]config.ObserverConfig{valid(), valid()}, lookup, config.Checks{})
	if err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate names: %v", err)
	}
}

func TestExampleConfigsLoad(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../configs/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	for _, f := range files {
		cfg, err := config.Load(f, nil)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, err := config.BuildObservers(cfg.Observers, func(string) (string, bool) { return "x", true }, config.Checks{}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestLoadObserversRefusesActionsWithoutTheirService(t *testing.T) {
	t.Parallel()
	obs := func(a config.ActionConfig) []config.ObserverConfig {
		return []config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"}, Actions: []config.ActionConfig{a}}}
	}
	memory := config.Defaults()
	memory.Topology = config.TopologyMemory
	memory.Observers = obs(config.ActionConfig{Type: "database", FunctionName: "app.f"})
	if _, err := config.LoadObservers(memory, nil, config.Checks{}); err == nil || !strings.Contains(err.Error(), "needs a database") {
		t.Errorf("database action in the memory topology: %v", err)
	}
	noRedis := config.Defaults()
	noRedis.Observers = obs(config.ActionConfig{Type: "cache", KeyPattern: "orders:*"})
	if _, err := config.LoadObservers(noRedis, nil, config.Checks{}); err == nil || !strings.Contains(err.Error(), "redis.url") {
		t.Errorf("cache action without Redis: %v", err)
	}
	withRedis := noRedis
	withRedis.Redis.URL = "redis://127.0.0.1:6379/0"
	if _, err := config.LoadObservers(withRedis, nil, config.Checks{}); err != nil {
		t.Errorf("cache action with Redis: %v", err)
	}
}

func TestBuildSlackAction(t *testing.T) {
	t.Parallel()
	env := func(k string) (string, bool) {
		if k == "SLACK_URL" {
			return "https://hooks.slack.com/services/T/B/x", true
		}
		return "", false
	}
	obs, err := config.BuildObservers([]config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{{Type: "slack", WebhookURLEnv: "SLACK_URL", Channel: "#ops", MessageTemplate: "{{ event.entity_id }}"}}}}, env, config.Checks{})
	if err != nil {
		t.Fatal(err)
	}
	s := obs[0].Actions[0].Slack
	if s == nil || s.WebhookURL != "https://hooks.slack.com/services/T/B/x" || s.Channel != "#ops" || s.MessageTemplate.Source() != "{{ event.entity_id }}" {
		t.Errorf("slack action = %+v", s)
	}
	_, err = config.BuildObservers([]config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{{Type: "slack", WebhookURL: "ftp://x"}}}}, env, config.Checks{})
	if err == nil || !strings.Contains(err.Error(), "webhook_url") {
		t.Errorf("bad slack url: %v", err)
	}
}

func TestTopologyAndRole(t *testing.T) {
	t.Parallel()
	for _, top := range config.Topologies {
		got, err := config.ParseTopology(string(top))
		if err != nil || got != top {
			t.Errorf("ParseTopology(%q) = %q, %v", top, got, err)
		}
		want := top == config.TopologyNATSDistributed || top == config.TopologyMultiDatabase
		if top.Distributed() != want {
			t.Errorf("%s.Distributed() = %v, want %v", top, top.Distributed(), want)
		}
	}
	if _, err := config.ParseTopology("mesh"); err == nil || !strings.Contains(err.Error(), "postgres-only") {
		t.Errorf("ParseTopology(mesh) = %v, want an error listing the topologies", err)
	}
	roles := []struct {
		role           config.Role
		bridge, worker bool
	}{
		{config.RoleAll, true, true},
		{config.RoleBridge, true, false},
		{config.RoleWorker, false, true},
	}
	for _, r := range roles {
		if got, err := config.ParseRole(string(r.role)); err != nil || got != r.role {
			t.Errorf("ParseRole(%q) = %q, %v", r.role, got, err)
		}
		if r.role.RunsBridge() != r.bridge || r.role.RunsWorker() != r.worker {
			t.Errorf("%s: RunsBridge %v RunsWorker %v", r.role, r.role.RunsBridge(), r.role.RunsWorker())
		}
	}
	if _, err := config.ParseRole("leader"); err == nil {
		t.Error("ParseRole(leader) accepted")
	}
}

// The database and cache actions take a timeout of their own, and the
// cache action an application key prefix of its own.
func TestBuildActionTimeoutsAndCachePrefix(t *testing.T) {
	t.Parallel()
	lookup := func(string) (string, bool) { return "", false }
	d := 2 * time.Second
	obs, err := config.BuildObservers([]config.ObserverConfig{{
		Name: "o", Entity: "Order", Events: []string{"INSERT"},
		Actions: []config.ActionConfig{
			{Type: "database", FunctionName: "app.f", Timeout: &d},
			{Type: "cache", KeyPattern: "order:{{ id }}", KeyPrefix: "shop:", Timeout: &d},
			{Type: "cache", KeyPattern: "order:{{ id }}:*"},
		},
	}}, lookup, config.Checks{})
	if err != nil {
		t.Fatal(err)
	}
	a := obs[0].Actions
	if a[0].Database.Timeout != d || a[1].Cache.Timeout != d || a[1].Cache.KeyPrefix != "shop:" {
		t.Errorf("database = %+v, cache = %+v", a[0].Database, a[1].Cache)
	}
	if a[2].Cache.Timeout != 0 || a[2].Cache.KeyPrefix != "" {
		t.Errorf("cache without timeout/prefix = %+v, want the executor's default and no prefix", a[2].Cache)
	}
	zero := time.Duration(0)
	for _, ac := range []config.ActionConfig{
		{Type: "database", FunctionName: "f", Timeout: &zero},
		{Type: "cache", KeyPattern: "k", Timeout: &zero},
	} {
		_, err := config.BuildObservers([]config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"},
			Actions: []config.ActionConfig{ac}}}, lookup, config.Checks{})
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("%s action with timeout 0: err = %v, want one naming timeout", ac.Type, err)
		}
	}
}

// TestEffectiveLeavesTheConfigAsItIs: the printed configuration shows a
// batch's defaults without writing them into the configuration it was
// given.
func TestEffectiveLeavesTheConfigAsItIs(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeConfig(t, batchedHook+"[observers.actions.batch]\nmax_events = 50\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := config.Effective(cfg, func(s string) string { return s })
	if err != nil {
		t.Fatal(err)
	}
	obs, _ := tree["observers"].([]any)
	act := obs[0].(map[string]any)["actions"].([]any)[0].(map[string]any)
	if batch := act["batch"].(map[string]any); batch["max_bytes"] == nil || batch["max_wait"] == nil {
		t.Errorf("printed batch = %v, want its defaults shown", batch)
	}
	if b := cfg.Observers[0].Actions[0].Batch; b.MaxBytes != nil || b.MaxWait != nil {
		t.Errorf("the configuration's batch was written: max_bytes %v, max_wait %v", b.MaxBytes, b.MaxWait)
	}
}

// A misspelt FRAISEQL_* variable is reported; the test suites' own
// (FRAISEQL_TEST_*, often set in a developer's shell) and the variables a
// key or an *_env key names are not.
func TestUnknownEnv(t *testing.T) {
	t.Parallel()
	got := config.UnknownEnv(config.Defaults(), []string{
		"FRAISEQL_DATABSE_URL=x", "FRAISEQL_DATABASE_URL=x", "FRAISEQL_ADMIN_TOKEN=t",
		"FRAISEQL_TEST_DATABASE_URL=postgres://127.0.0.1/x", "FRAISEQL_CONFIG=c.toml", "HOME=/root",
	})
	if strings.Join(got, ",") != "FRAISEQL_DATABSE_URL" {
		t.Errorf("UnknownEnv = %v, want [FRAISEQL_DATABSE_URL]", got)
	}
}

// Observer and action names with a control character or a space at an
// end are refused: they go into metrics labels, dedup keys and dead
// letters, where nobody sees them.
func TestNamesWithHiddenCharacters(t *testing.T) {
	t.Parallel()
	none := func(string) (string, bool) { return "", false }
	for _, c := range []struct {
		obs, act string
		want     []string
	}{
		{"orders\t", "", []string{"name:", "control character"}},
		{" orders", "", []string{"name:", "begins or ends with a space"}},
		{"orders", "audit ", []string{"actions[0]", "name:", "begins or ends with a space"}},
	} {
		_, err := config.BuildObservers([]config.ObserverConfig{{Name: c.obs, Entity: "Order", Events: []string{"INSERT"},
			Actions: []config.ActionConfig{{Type: "log", Name: c.act}}}}, none, config.Checks{})
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("observer %q, action %q: error %v, want it to mention %q", c.obs, c.act, err, w)
			}
		}
	}
}
