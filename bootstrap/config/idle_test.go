package config_test

import (
	"reflect"
	"testing"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// TestIdleKeys: keys set to no effect are named with the reason, from the
// file and from the environment; the same keys where they work are not.
func TestIdleKeys(t *testing.T) {
	t.Parallel()
	const redis = "[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n"
	cases := []struct {
		name    string
		file    string
		environ []string
		want    []config.IdleKeys
	}{
		{"nothing idle", "", nil, nil},
		{"[nats] in postgres-only", "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[nats.stream]\nname = \"S\"\n", []string{"FRAISEQL_NATS_STORE_DIR=/data"},
			[]config.IdleKeys{{Keys: []string{"nats.stream.name", "nats.url"},
				Why: "only the NATS topologies (nats-distributed, multi-database) use [nats]; this is postgres-only"}}},
		{"[nats] in nats-distributed", "topology = \"nats-distributed\"\n" + redis + "[nats]\nurl = \"nats://127.0.0.1:4222\"\n", nil, nil},
		{"log_retention with the log off", "[delivery]\nlog = \"off\"\nlog_retention = \"48h\"\n", nil,
			[]config.IdleKeys{{Keys: []string{"delivery.log_retention"}, Why: `the delivery log is off (delivery.log = "off")`}}},
		{"dedup and cache keys with both off, one from the environment", "[redis]\ndedup_window = \"2h\"\n",
			[]string{"FRAISEQL_REDIS_CACHE_TTL=5m"},
			[]config.IdleKeys{{Keys: []string{"redis.dedup_window"}, Why: "dedup is off (performance.enable_dedup)"},
				{Keys: []string{"redis.cache_ttl"}, Why: "caching is off (performance.enable_caching)"}}},
		{"dedup keys with dedup on", "topology = \"postgres-redis\"\n" + redis + "dedup_window = \"2h\"\ncache_ttl = \"5m\"\n", nil, nil},
		{"[database] in memory", "topology = \"memory\"\n[database]\nurl = \"postgres://prod/db\"\nwake = \"poll\"\n", nil,
			[]config.IdleKeys{{Keys: []string{"database.url", "database.wake"},
				Why: "the memory topology has no database (its events come from the admin API or memory.events_file)"}}},
		{"max_concurrent_actions with concurrency off", "[performance]\nenable_concurrent = false\nmax_concurrent_actions = 64\n", nil,
			[]config.IdleKeys{{Keys: []string{"performance.max_concurrent_actions"},
				Why: "concurrency is off (performance.enable_concurrent = false: one action at a time)"}}},
		{"Redis connection keys without a server", "[redis]\nkey_prefix = \"a:\"\npool_size = 4\ncommand_timeout = \"1s\"\n",
			[]string{"FRAISEQL_REDIS_CONNECT_TIMEOUT=3s"},
			[]config.IdleKeys{{Keys: []string{"redis.key_prefix", "redis.pool_size", "redis.connect_timeout", "redis.command_timeout"},
				Why: "no Redis server is configured (redis.url or redis.addrs)"}}},
		{"Redis connection keys with a server", redis + "key_prefix = \"a:\"\npool_size = 4\n", nil, nil},
		{"pprof without the admin API", "[http]\nlisten = \"\"\npprof = true\n", nil,
			[]config.IdleKeys{{Keys: []string{"http.pprof"}, Why: "the admin API is off (http.listen is empty)"}}},
		{"pprof with the admin API", "[http]\nlisten = \"127.0.0.1:0\"\npprof = true\n", nil, nil},
		{"nats.url with nats.embedded", "topology = \"nats-distributed\"\n" + redis + "[nats]\nembedded = true\nstore_dir = \"/tmp/x\"\nurl = \"nats://127.0.0.1:4222\"\n", nil,
			[]config.IdleKeys{{Keys: []string{"nats.url"}, Why: "nats.embedded runs a server inside the service on a free port: the service does not dial nats.url (only a command-line dlq retry of a nats action does)"}}},
		{"bursts without a rate limit", "[delivery]\nrate_burst = 5\n[[delivery.endpoints]]\nendpoint = \"http://127.0.0.1:1\"\nrate_burst = 3\n" +
			"[[delivery.endpoints]]\nendpoint = \"http://127.0.0.1:2\"\nrate_limit = 10\nrate_burst = 3\n", nil,
			[]config.IdleKeys{{Keys: []string{"delivery.rate_burst", "delivery.endpoints[0].rate_burst"},
				Why: "no rate limit applies (rate_limit = 0: unlimited), so there is no burst to shape"}}},
		{"the default burst shapes an endpoint's own limit", "[delivery]\nrate_burst = 5\n[[delivery.endpoints]]\nendpoint = \"http://127.0.0.1:1\"\nrate_limit = 10\n", nil, nil},
		{"bursts with a rate limit, or 0", "[delivery]\nrate_limit = 10\nrate_burst = 5\n[[delivery.endpoints]]\nendpoint = \"http://127.0.0.1:1\"\nrate_burst = 3\n" +
			"[[delivery.endpoints]]\nendpoint = \"http://127.0.0.1:2\"\nrate_limit = 0\nrate_burst = 0\n", nil, nil},
	}
	for _, c := range cases {
		cfg, err := config.Load(writeConfig(t, c.file), c.environ)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := cfg.IdleKeys(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: IdleKeys = %+v, want %+v", c.name, got, c.want)
		}
	}
}
