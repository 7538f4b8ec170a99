package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
)

// ---------------------------------------------------------------- Redis

// redisEnv is one test's share of a Redis server: its own key prefix and a
// direct client to look at (and seed) the keys the service writes. The
// prefix's keys are deleted when the test ends.
type redisEnv struct {
	url    string
	prefix string
	rdb    *goredis.Client
}

// newRedisEnv uses the Redis server at url ("" for the shared test server
// of testenv) with a fresh key prefix.
func newRedisEnv(t testing.TB, url string) *redisEnv {
	t.Helper()
	if url == "" {
		url = testenv.RedisURL(t)
	}
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	// A test client gives up quickly while a private server is down.
	opts.MaxRetries = -1
	opts.DialTimeout = time.Second
	e := &redisEnv{url: url, prefix: testenv.Name("t") + ":", rdb: goredis.NewClient(opts)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.deleteKeys(ctx); err != nil && e.rdb.Ping(ctx).Err() == nil {
			t.Errorf("delete test keys %s*: %v", e.prefix, err)
		}
		_ = e.rdb.Close()
	})
	return e
}

// deleteKeys unlinks every key under the prefix (the prefix holds no glob
// characters: testenv.Name is [a-z0-9_]).
func (e *redisEnv) deleteKeys(ctx context.Context) error {
	var cursor uint64
	for {
		keys, next, err := e.rdb.Scan(ctx, cursor, e.prefix+"*", 1000).Result()
		if err != nil {
			return fmt.Errorf("scan %s*: %w", e.prefix, err)
		}
		if len(keys) > 0 {
			if err := e.rdb.Unlink(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("unlink %d keys: %w", len(keys), err)
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// configure turns cfg into a postgres-redis configuration on this server
// and prefix, with dedup and caching on.
func (e *redisEnv) configure(cfg *config.Config) {
	cfg.Topology = config.TopologyPostgresRedis
	cfg.Redis.URL = e.url
	cfg.Redis.KeyPrefix = e.prefix
	cfg.Performance.EnableDedup = true
	cfg.Performance.EnableCaching = true
}

// exists reports whether key (without the prefix) exists.
func (e *redisEnv) exists(t testing.TB, key string) bool {
	t.Helper()
	n, err := e.rdb.Exists(t.Context(), e.prefix+key).Result()
	if err != nil {
		t.Fatalf("redis EXISTS %s%s: %v", e.prefix, key, err)
	}
	return n == 1
}

// value returns key's string value (without the prefix), "" when absent.
func (e *redisEnv) value(t testing.TB, key string) string {
	t.Helper()
	v, err := e.rdb.Get(t.Context(), e.prefix+key).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		t.Fatalf("redis GET %s%s: %v", e.prefix, key, err)
	}
	return v
}

// set creates key (without the prefix).
func (e *redisEnv) set(t testing.TB, key, value string) {
	t.Helper()
	if err := e.rdb.Set(t.Context(), e.prefix+key, value, 0).Err(); err != nil {
		t.Fatalf("redis SET %s%s: %v", e.prefix, key, err)
	}
}

// dedupKey and resultKey are the keys of the service's dedup mark and
// result cache, without the prefix.
func dedupKey(eventID string) string { return "dedup:v1:event:" + eventID }

func resultKey(eventID, observer, action string) string {
	return "cache:v1:result:" + eventID + ":" + observer + ":" + action
}

// privateRedis is a redis-server the test owns, without persistence, so a
// test can stop and restart it on the same port.
type privateRedis struct {
	bin  string
	port int
	dir  string
	proc *testsupport.Process // nil while stopped
}

// startPrivateRedis starts redis-server on a free loopback port. Without
// the binary the test is skipped, except under CI=true where it fails.
func startPrivateRedis(t testing.TB) *privateRedis {
	t.Helper()
	p := &privateRedis{bin: testsupport.Binary(t, "redis-server"), port: testsupport.FreePort(t), dir: t.TempDir()}
	p.start(t)
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *privateRedis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", p.port) }

func (p *privateRedis) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// start runs the server and waits until it accepts connections.
func (p *privateRedis) start(t testing.TB) {
	t.Helper()
	p.proc = testsupport.StartProcess(t, exec.Command(p.bin, "--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", p.dir))
	p.proc.WaitListening(t, p.addr(), waitTimeout)
}

// stop kills the server (SIGKILL: no goodbye to the clients) and waits for
// it to exit. Safe to call when it is not running.
func (p *privateRedis) stop(t testing.TB) {
	t.Helper()
	if p.proc == nil || p.proc.Exited() { // stopped, or killed by its own cleanup
		p.proc = nil
		return
	}
	p.proc.Kill(t)
	p.proc = nil
}

// redisState is what the App's /readyz reports for Redis: "ok", or
// "unreachable (the service log has the error), failing open".
func (r *runningApp) redisState(t testing.TB) string {
	t.Helper()
	_, body := httpGet(t, "http://"+r.app.HTTPAddr()+"/readyz")
	var detail map[string]string
	if err := json.Unmarshal([]byte(body), &detail); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	return detail["redis"]
}

// ---------------------------------------------------------------- database

// setCheckpoint overwrites the default reader's saved checkpoint, as an
// operator rewinding the reader would.
func (b *testBundle) setCheckpoint(t testing.TB, p position) {
	t.Helper()
	tag, err := b.pool.Exec(t.Context(), `UPDATE observer.checkpoints SET txid = $1, seq = $2 WHERE name = 'default'`, p.TxID, p.Seq)
	if err != nil {
		t.Fatalf("set checkpoint: %v", err)
	}
	if tag.RowsAffected() != 1 {
		t.Fatalf("set checkpoint: %d rows updated, want 1 (no checkpoint saved yet?)", tag.RowsAffected())
	}
}

// insertKeyed inserts one INSERT change whose entity key is key (the
// object_key column, which need not be a uuid) and returns its event id.
func (b *testBundle) insertKeyed(t testing.TB, entity, key string) string {
	t.Helper()
	var id string
	if err := b.pool.QueryRow(t.Context(), `INSERT INTO core.tb_entity_change_log
		(object_type, modification_type, object_key, object_data)
		VALUES ($1, 'INSERT', $2, '{}'::jsonb) RETURNING id::text`, entity, key).Scan(&id); err != nil {
		t.Fatalf("insert change of %s %q: %v", entity, key, err)
	}
	return id
}

// ---------------------------------------------------------------- subprocess

// redisServiceConfig writes a postgres-redis config file for `run`; the
// database and Redis addresses and the key prefix come from FRAISEQL_*
// variables. One webhook observer for entity Order sends to url.
func redisServiceConfig(t testing.TB, url string, maxConcurrent int, dedupLease time.Duration) string {
	t.Helper()
	body := fmt.Sprintf(`
topology = "postgres-redis"

[database]
migrate_on_start = true
max_connections = 4
poll_interval = "200ms"

[redis]
dedup_lease = %q

[performance]
enable_dedup = true
enable_caching = true
enable_concurrent = true
max_concurrent_actions = %d

[reader]
checkpoint_interval = "100ms"
lease_ttl = "3s"

[http]
listen = "127.0.0.1:0"

[logging]
format = "json"

[security]
allowed_networks = ["127.0.0.1/32"]

[[observers]]
name = "orders"
entity = "Order"
events = ["INSERT", "UPDATE", "DELETE"]
[[observers.actions]]
type = "webhook"
url = %q
`, dedupLease.String(), maxConcurrent, url)
	return writeFile(t, "postgres-redis.toml", body)
}

// startRedisService runs `fraiseql-observer run` and waits until its
// reader is active.
func startRedisService(t testing.TB, env []string, file string) *service {
	t.Helper()
	s := startService(t, env, file)
	waitFor(t, "service reading", func() bool {
		if s.Exited() {
			t.Fatalf("service exited early: %v\n%s", s.Err(), s.stderr.tail(4000))
		}
		return s.stderr.count("reader started") >= 1
	})
	return s
}
