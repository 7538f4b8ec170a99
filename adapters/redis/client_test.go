package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestOpenRefusesBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantMsg string
	}{
		{"nothing", Config{}, "set url or addrs"},
		{"wrong scheme", Config{URL: "http://127.0.0.1:6379"}, "invalid URL scheme: http"},
		{"bad port", Config{URL: "redis://user:s3cret@127.0.0.1:notaport/0"}, "url is not valid"},
		{"bad database", Config{URL: "redis://127.0.0.1:6379/zero"}, "invalid database number"},
		{"url and addrs", Config{URL: "redis://127.0.0.1:6379", Addrs: []string{"127.0.0.1:6379"}}, "not both"},
		{"url with sentinel", Config{URL: "redis://127.0.0.1:6379", MasterName: "mymaster"}, "need addrs"},
		{"url with credentials", Config{URL: "redis://127.0.0.1:6379", Password: "x"}, "put credentials in the url"},
		{"several addrs without mode", Config{Addrs: []string{"a:1", "b:2"}}, "sentinel master name or cluster"},
		{"cluster and sentinel", Config{Addrs: []string{"a:1"}, Cluster: true, MasterName: "m"}, "not both"},
		{"addr without port", Config{Addrs: []string{"localhost"}}, `addrs[0] "localhost" is not host:port`},
		{"negative pool", Config{URL: "redis://127.0.0.1:6379", PoolSize: -1}, "pool size -1 is negative"},
		{"negative timeout", Config{URL: "redis://127.0.0.1:6379", CommandTimeout: -time.Second}, "command timeout -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Open(t.Context(), tt.cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Open error %q does not name the problem %q", err, tt.wantMsg)
			}
			if errors.Is(err, ports.ErrUnavailable) {
				t.Fatalf("a bad configuration reported as an outage: %v", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("Open error leaks the password: %v", err)
			}
		})
	}
}

func TestOpenUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
	tests := []struct {
		name string
		cfg  Config
	}{
		{"url", Config{URL: "redis://user:s3cret@" + addr + "/0"}},
		{"addrs", Config{Addrs: []string{addr}, Password: "s3cret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // correctness bound: Open must not hang
			defer cancel()
			c, err := Open(ctx, tt.cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("Open succeeded against a closed port")
			}
			if !errors.Is(err, ports.ErrUnavailable) {
				t.Fatalf("Open error %v does not wrap ports.ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("Open error %q should name %s and hide the password", err, addr)
			}
		})
	}
}

// TestAddrsSingleNode connects through the Addrs form the way a Sentinel
// or Cluster configuration would, with one plain node.
func TestAddrsSingleNode(t *testing.T) {
	t.Parallel()
	opts, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatalf("parse test redis url: %v", err)
	}
	addr, username, password := opts.Addr, opts.Username, opts.Password
	if opts.DB != 0 {
		// The Addrs form has no database number: it always uses database
		// 0, which the test Redis's URL keeps out of the tests' way. A
		// private server (with a password, for the credentials of this
		// form) serves instead.
		addr, _ = privateRedis(t, "--requirepass", redisPassword)
		username, password = "", redisPassword
	}
	c, err := Open(t.Context(), Config{Addrs: []string{addr}, Username: username, Password: password, KeyPrefix: newPrefix()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	r := NewResultCache(c)
	if err := r.Put(t.Context(), "k", 5*time.Second); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if hit, err := r.Get(t.Context(), "k"); err != nil || !hit {
		t.Fatalf("Get = %v, %v; want a hit", hit, err)
	}
}

// operations calls every I/O method of the adapters once.
func operations(c *Client) map[string]func(ctx context.Context) error {
	d, r, inv := NewDeduplicator(c), NewResultCache(c), NewInvalidator(c, nil)
	glob := cacheAction(c.prefix, "user:{{ id }}:*")
	exact := cacheAction(c.prefix, "user:{{ id }}")
	ev := &domain.Event{ID: "ev-1", Data: map[string]any{"id": "42"}}
	obs := &domain.Observer{Name: "o"}
	return map[string]func(ctx context.Context) error{
		"ping":     c.Ping,
		"claim":    func(ctx context.Context) error { _, err := d.Claim(ctx, "ev-1", "a", time.Minute); return err },
		"markdone": func(ctx context.Context) error { return d.MarkDone(ctx, "ev-1", time.Minute) },
		"release":  func(ctx context.Context) error { return d.Release(ctx, "ev-1", "a") },
		"get":      func(ctx context.Context) error { _, err := r.Get(ctx, "k"); return err },
		"put":      func(ctx context.Context) error { return r.Put(ctx, "k", time.Minute) },
		"unlink":   func(ctx context.Context) error { return inv.Execute(ctx, ev, obs, exact) },
		"scan":     func(ctx context.Context) error { return inv.Execute(ctx, ev, obs, glob) },
	}
}

func TestStoppedRedisIsUnavailable(t *testing.T) {
	t.Parallel()
	addr, server := privateRedis(t)
	redisURL := "redis://" + addr + "/0"
	c, err := Open(t.Context(), Config{URL: redisURL, CommandTimeout: 2 * time.Second, ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ops := operations(c)
	for name, op := range ops {
		if err := op(t.Context()); err != nil {
			t.Fatalf("%s while Redis runs: %v", name, err)
		}
	}
	server.Kill(t)
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // correctness bound: no hang
			defer cancel()
			err := op(ctx)
			if !errors.Is(err, ports.ErrUnavailable) {
				t.Fatalf("%s with Redis stopped = %v, want ports.ErrUnavailable", name, err)
			}
			if domain.IsPermanent(err) {
				t.Fatalf("%s: an outage reported as permanent: %v", name, err)
			}
			if !strings.HasPrefix(err.Error(), "redis: ") && !strings.HasPrefix(err.Error(), "transient: redis: ") {
				t.Fatalf("%s error %q does not name the adapter", name, err)
			}
		})
	}
}

func TestClosedClientIsUnavailable(t *testing.T) {
	t.Parallel()
	c, err := Open(t.Context(), Config{URL: testenv.RedisURL(t), KeyPrefix: newPrefix()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, op := range operations(c) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := op(t.Context()); !errors.Is(err, ports.ErrUnavailable) {
				t.Fatalf("%s on a closed client = %v, want ports.ErrUnavailable", name, err)
			}
		})
	}
}

func TestCanceledContextIsNotAnOutage(t *testing.T) {
	t.Parallel()
	c := openClient(t, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, op := range operations(c) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := op(ctx)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with a canceled context = %v, want context.Canceled", name, err)
			}
			if errors.Is(err, ports.ErrUnavailable) {
				t.Fatalf("%s: the caller's cancellation reported as an outage: %v", name, err)
			}
		})
	}
}
