package redis

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// cacheAction is a cache action on pattern with the action key prefix
// prefix (the tests pass their client's prefix, to stay in their own keys).
func cacheAction(prefix, pattern string) *domain.Action {
	return &domain.Action{
		Name:  "cache-1",
		Type:  domain.ActionCache,
		Cache: &domain.CacheAction{KeyPattern: domain.MustCompileTemplate(pattern), Operation: "invalidate", KeyPrefix: prefix},
	}
}

// remainingKeys lists the keys under c's prefix, without the prefix, sorted.
func remainingKeys(t *testing.T, c *Client) []string {
	t.Helper()
	// Not t.Context(): this also runs in cleanups, after it is canceled.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	iter := c.rdb.Scan(ctx, 0, domain.GlobEscape(c.prefix)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, strings.TrimPrefix(iter.Val(), c.prefix))
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func setKeys(t *testing.T, c *Client, keys ...string) {
	t.Helper()
	pipe := c.rdb.Pipeline()
	for _, k := range keys {
		pipe.Set(t.Context(), c.prefix+k, "v", 0)
	}
	if _, err := pipe.Exec(t.Context()); err != nil {
		t.Fatalf("set keys: %v", err)
	}
}

func TestInvalidatorRemovesOnlyMatchingKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prefix  string // "" means a fresh ordinary one
		keys    []string
		pattern string
		data    map[string]any
		want    []string // keys left, sorted
	}{
		{
			name:    "exact key",
			keys:    []string{"user:1", "user:10", "user:1:profile", "user:2"},
			pattern: "user:{{ id }}",
			data:    map[string]any{"id": "1"},
			want:    []string{"user:10", "user:1:profile", "user:2"},
		},
		{
			name:    "glob from the template",
			keys:    []string{"user:1", "user:1:profile", "user:1:orders", "user:10:profile", "user:2:profile"},
			pattern: "user:{{ id }}:*",
			data:    map[string]any{"id": "1"},
			want:    []string{"user:1", "user:10:profile", "user:2:profile"},
		},
		{
			name:    "event value with a star matches only itself",
			keys:    []string{"user:a*", "user:abc", "user:a", "user:a*:x", "user:ab:x"},
			pattern: "user:{{ name }}",
			data:    map[string]any{"name": "a*"},
			want:    []string{"user:a", "user:a*:x", "user:ab:x", "user:abc"},
		},
		{
			name:    "event value with a star inside a glob",
			keys:    []string{"user:a*:x", "user:a*:y", "user:ab:x", "user:a:x", "user:a*"},
			pattern: "user:{{ name }}:*",
			data:    map[string]any{"name": "a*"},
			want:    []string{"user:a*", "user:a:x", "user:ab:x"},
		},
		{
			name:    "event value with brackets inside a glob",
			keys:    []string{"user:[ab]:1", "user:a:1", "user:b:1", "user:[ab]"},
			pattern: "user:{{ name }}:*",
			data:    map[string]any{"name": "[ab]"},
			want:    []string{"user:[ab]", "user:a:1", "user:b:1"},
		},
		{
			name:    "event value with question mark and backslash",
			keys:    []string{`q:a?\b`, `q:ax\b`, `q:a?b`},
			pattern: "q:{{ v }}",
			data:    map[string]any{"v": `a?\b`},
			want:    []string{`q:a?b`, `q:ax\b`},
		},
		{
			name:    "prefix with glob characters is literal",
			prefix:  "[x]*" + newPrefix(),
			keys:    []string{"user:1:a", "user:1:b", "user:2:a"},
			pattern: "user:1:*",
			want:    []string{"user:2:a"},
		},
		{
			name:    "no match removes nothing",
			keys:    []string{"user:1"},
			pattern: "order:*",
			want:    []string{"user:1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := openClient(t, tt.prefix)
			// A neighbour sharing the prefix's first characters must survive.
			neighbour := openClient(t, strings.TrimSuffix(c.prefix, ":")+"x:")
			setKeys(t, neighbour, tt.keys...)
			setKeys(t, c, tt.keys...)
			var logs bytes.Buffer
			inv := NewInvalidator(c, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			ev := &domain.Event{ID: "ev-1", EntityType: "User", Data: tt.data}
			if err := inv.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, cacheAction(c.prefix, tt.pattern)); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if got := remainingKeys(t, c); !slices.Equal(got, tt.want) {
				t.Fatalf("keys left = %q, want %q", got, tt.want)
			}
			if got := remainingKeys(t, neighbour); len(got) != len(slices.Compact(slices.Sorted(slices.Values(tt.keys)))) {
				t.Fatalf("neighbour prefix lost keys: %q left of %q", got, tt.keys)
			}
			removed := len(tt.keys) - len(tt.want)
			if !strings.Contains(logs.String(), fmt.Sprintf("keys_unlinked=%d", removed)) {
				t.Fatalf("debug log does not report %d keys unlinked: %s", removed, logs.String())
			}
		})
	}
}

// TestInvalidatorGlobOverManyKeys needs several SCAN rounds (COUNT 500).
func TestInvalidatorGlobOverManyKeys(t *testing.T) {
	t.Parallel()
	c := openClient(t, "")
	const n = 2000
	keys := make([]string, 0, n+300)
	for i := range n {
		keys = append(keys, fmt.Sprintf("product:%d:detail", i))
	}
	var keep []string
	for i := range 100 {
		keep = append(keep, fmt.Sprintf("product:%d", i), fmt.Sprintf("products:%d:detail", i), fmt.Sprintf("order:%d:detail", i))
	}
	setKeys(t, c, append(keys, keep...)...)
	var logs bytes.Buffer
	inv := NewInvalidator(c, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ev := &domain.Event{ID: "ev-1", Data: map[string]any{}}
	if err := inv.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, cacheAction(c.prefix, "product:*:detail")); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	slices.Sort(keep)
	if got := remainingKeys(t, c); !slices.Equal(got, keep) {
		t.Fatalf("%d keys left, want the %d non-matching ones", len(got), len(keep))
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("keys_unlinked=%d", n)) {
		t.Fatalf("debug log does not report %d keys unlinked: %s", n, logs.String())
	}
}

func TestInvalidatorPermanentFailures(t *testing.T) {
	t.Parallel()
	c := openClient(t, "")
	keys := []string{"user:1", "user:2", "user::x", "user:"}
	setKeys(t, c, keys...)
	slices.Sort(keys)
	unsupported := cacheAction(c.prefix, "user:*")
	unsupported.Cache.Operation = "refresh"
	tests := []struct {
		name    string
		act     *domain.Action
		data    map[string]any
		wantMsg string
	}{
		{"missing placeholder in a glob", cacheAction(c.prefix, "user:{{ id }}*"), map[string]any{}, "no value for id"},
		{"missing placeholder in an exact key", cacheAction(c.prefix, "user:{{ id }}"), map[string]any{"other": "1"}, "no value for id"},
		{"missing nested placeholder", cacheAction(c.prefix, "user:{{ data.customer.id }}:*"), map[string]any{"customer": map[string]any{}}, "no value for customer.id"},
		{"null value in a glob", cacheAction(c.prefix, "user:{{ id }}*"), map[string]any{"id": nil}, "id empty"},
		{"empty value in a glob", cacheAction(c.prefix, "user:{{ id }}:*"), map[string]any{"id": ""}, "id empty"},
		{"unsupported operation", unsupported, map[string]any{}, `"refresh" is not supported`},
		{"no config", &domain.Action{Name: "cache-1", Type: domain.ActionCache}, map[string]any{}, "no key_pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := NewInvalidator(c, nil)
			ev := &domain.Event{ID: "ev-1", Data: tt.data}
			err := inv.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, tt.act)
			if !domain.IsPermanent(err) {
				t.Fatalf("Execute = %v, want a permanent error", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Execute error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
	t.Cleanup(func() {
		// Runs after the parallel subtests: nothing may have been removed.
		if got := remainingKeys(t, c); !slices.Equal(got, keys) {
			t.Errorf("keys left = %q, want all of %q", got, keys)
		}
	})
}

// redisPassword protects the private server of the conformance suite.
const redisPassword = "REDISPASSWORD-83f2a6"

func TestInvalidatorConformance(t *testing.T) {
	t.Parallel()
	addr, _ := privateRedis(t, "--requirepass", redisPassword)
	// target invalidates pattern through a client of its own, via a proxy
	// the test can freeze or cut, with the password in the URL.
	target := func(t *testing.T, pattern string, commandTimeout time.Duration) (porttest.ActionTarget, *Client, *testsupport.Proxy) {
		t.Helper()
		proxy := testsupport.StartProxy(t, addr)
		c, err := Open(t.Context(), Config{
			URL:            "redis://:" + redisPassword + "@" + proxy.Addr() + "/0",
			KeyPrefix:      newPrefix(),
			CommandTimeout: commandTimeout,
		})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return porttest.ActionTarget{Executor: NewInvalidator(c, nil), Action: cacheAction(c.prefix, pattern)}, c, proxy
	}
	invalidate := func(pattern string) func(t *testing.T) porttest.ActionTarget {
		return func(t *testing.T) porttest.ActionTarget {
			tg, _, _ := target(t, pattern, 0)
			return tg
		}
	}
	porttest.RunActionExecutor(t, porttest.ActionHarness{
		Features: porttest.ActionFeatures{TransientFailures: true, PermanentFailures: true, Blocks: true},
		Success: func(t *testing.T) porttest.ActionTarget {
			tg, c, _ := target(t, "order:{{ event.entity_id }}:*", 0)
			keys := func(ev *domain.Event) []string {
				return []string{c.prefix + "order:" + ev.EntityID + ":detail", c.prefix + "order:" + ev.EntityID + ":lines"}
			}
			tg.Prepare = func(ctx context.Context, ev *domain.Event) error {
				for _, k := range keys(ev) {
					if err := c.rdb.Set(ctx, k, "v", time.Hour).Err(); err != nil {
						return err
					}
				}
				return nil
			}
			tg.Took = func(ctx context.Context, ev *domain.Event) (bool, error) {
				n, err := c.rdb.Exists(ctx, keys(ev)...).Result()
				return n == 0, err
			}
			return tg
		},
		Transient: map[string]func(t *testing.T) porttest.ActionTarget{
			"redis unreachable": func(t *testing.T) porttest.ActionTarget {
				tg, _, proxy := target(t, "order:{{ event.entity_id }}", 0)
				proxy.Cut()
				return tg
			},
			"redis silent past the command timeout": func(t *testing.T) porttest.ActionTarget {
				tg, _, proxy := target(t, "order:{{ event.entity_id }}:*", 200*time.Millisecond)
				proxy.Freeze()
				return tg
			},
		},
		Permanent: map[string]func(t *testing.T) porttest.ActionTarget{
			"pattern renders empty":        invalidate("{{ note }}"),
			"empty value widens a glob":    invalidate("order:{{ note }}*"),
			"value missing from the event": invalidate("order:{{ nope }}"),
		},
		Blocking: func(t *testing.T) porttest.ActionTarget {
			tg, _, proxy := target(t, "order:{{ event.entity_id }}:*", time.Hour)
			proxy.Freeze()
			tg.Reached = porttest.ReachedWhen(proxy.Held())
			return tg
		},
		Secrets: []string{redisPassword},
	})
}

// A server's error reply that a retry would get again (NOPERM, an unknown
// command) fails the action for good; one of a server that cannot serve
// right now (LOADING) is retried.
func TestInvalidatorClassifiesErrorReplies(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		reply     string
		permanent bool
	}{
		{"-NOPERM this user has no permissions to run the 'unlink' command\r\n", true},
		{"-ERR unknown command 'UNLINK', with args beginning with: \r\n", true},
		{"-LOADING Redis is loading the dataset in memory\r\n", false},
		{"-READONLY You can't write against a read only replica.\r\n", false},
		{"-BUSY Redis is busy running a script.\r\n", false},
		{"-OOM command not allowed when used memory > 'maxmemory'.\r\n", false},
	} {
		url := fakeRedis(t, func(args []string) string {
			switch strings.ToLower(args[0]) {
			case "unlink":
				return tt.reply
			case "hello":
				return "-ERR unknown command 'HELLO'\r\n"
			}
			return "+OK\r\n"
		})
		inv := NewInvalidator(openURL(t, url), nil)
		err := inv.Execute(t.Context(), &domain.Event{ID: "ev-1", Data: map[string]any{"id": "7"}}, &domain.Observer{Name: "o"},
			cacheAction("", "user:{{ id }}"))
		if err == nil || domain.IsPermanent(err) != tt.permanent {
			t.Errorf("reply %q: Execute = %v, want permanent %v", strings.TrimSpace(tt.reply), err, tt.permanent)
		}
	}
}
