package redis

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// TestInvalidatorKeysAreTheApplications: the client's KeyPrefix (the
// observer's own namespace) is not put in front of the keys a cache action
// removes; only the action's key_prefix is. The keys removed are exactly
// those the rendered pattern names.
func TestInvalidatorKeysAreTheApplications(t *testing.T) {
	t.Parallel()
	app := testenv.Name("app") + ":" // the application's namespace in the shared Redis
	observer := openClient(t, "")    // with its own KeyPrefix, as configured by redis.key_prefix
	raw := openClient(t, app)        // writes the application's keys (and cleans them up)
	keys := []string{"user:1", "user:1:profile", "user:2", "tenant:acme:user:1", "tenant:acme:user:2"}
	setKeys(t, raw, keys...)
	setKeys(t, observer, keys...) // the same names inside the observer's namespace must survive
	tests := []struct {
		name, prefix, pattern string
		want                  []string // application keys left
	}{
		{name: "exact key", prefix: app, pattern: "user:{{ id }}", want: []string{"tenant:acme:user:1", "tenant:acme:user:2", "user:1:profile", "user:2"}},
		{name: "glob", prefix: app, pattern: "user:{{ id }}*", want: []string{"tenant:acme:user:1", "tenant:acme:user:2", "user:2"}},
		{name: "action prefix", prefix: app + "tenant:acme:", pattern: "user:*", want: []string{"user:1", "user:1:profile", "user:2"}},
		{name: "no prefix: the rendered pattern as it is", prefix: "", pattern: app + "user:{{ id }}", want: []string{"tenant:acme:user:1", "tenant:acme:user:2", "user:1:profile", "user:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the cases share the application's keys.
			setKeys(t, raw, keys...)
			var logs bytes.Buffer
			inv := NewInvalidator(observer, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			ev := &domain.Event{ID: "ev-1", EntityType: "User", Data: map[string]any{"id": "1"}}
			if err := inv.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, cacheAction(tt.prefix, tt.pattern)); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if got := remainingKeys(t, raw); !slices.Equal(got, tt.want) {
				t.Errorf("application keys left = %q, want %q", got, tt.want)
			}
			if got := remainingKeys(t, observer); len(got) != len(keys) {
				t.Errorf("keys in the observer's namespace = %q, want all of %q", got, keys)
			}
			rendered := tt.prefix + strings.ReplaceAll(tt.pattern, "{{ id }}", "1")
			if !strings.Contains(logs.String(), "pattern="+rendered+" ") {
				t.Errorf("debug log does not name the pattern %q: %s", rendered, logs.String())
			}
		})
	}
}

// silentRedis accepts connections and never answers: a Redis that stopped
// answering (stopped process, dead network path behind a live socket).
func silentRedis(t *testing.T) string {
	return fakeRedis(t, func([]string) string { return "" })
}

// endlessScanRedis answers at once, and forever: SCAN always returns one
// key and a next cursor, UNLINK removes it. A walk over it never ends on
// its own; each command is quick, so only a bound on the whole walk stops
// it.
func endlessScanRedis(t *testing.T) string {
	return fakeRedis(t, func(args []string) string {
		switch strings.ToUpper(args[0]) {
		case "SCAN":
			return "*2\r\n$1\r\n7\r\n*1\r\n$3\r\nk:1\r\n"
		case "UNLINK":
			return ":" + strconv.Itoa(len(args)-1) + "\r\n"
		case "PING":
			return "+PONG\r\n"
		}
		return "-ERR unknown command '" + args[0] + "'\r\n"
	})
}

func TestInvalidatorTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name, url, pattern string
		removedSome        bool // the error counts the keys removed before the timeout
	}{
		{"unlink against a silent redis", silentRedis(t), "user:{{ id }}", false},
		{"scan against a silent redis", silentRedis(t), "user:{{ id }}:*", false},
		{"endless scan walk", endlessScanRedis(t), "k:*", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := New(Config{URL: tt.url, CommandTimeout: time.Hour, ConnectTimeout: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			inv, err := NewInvalidatorConfig(c, nil, InvalidatorConfig{Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			ev := &domain.Event{ID: "ev-1", Data: map[string]any{"id": "1"}}
			done := make(chan error, 1)
			go func() { done <- inv.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, cacheAction("", tt.pattern)) }()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second): // correctness bound, far above the timeout
				t.Fatalf("Execute still running 20s after a %s timeout", timeout)
			}
			if err == nil || domain.IsPermanent(err) {
				t.Fatalf("Execute = %v, want a transient failure", err)
			}
			if !errors.Is(err, ports.ErrUnavailable) || !strings.Contains(err.Error(), "timeout 300ms") {
				t.Errorf("Execute = %v, want ErrUnavailable naming the timeout", err)
			}
			if zero := strings.Contains(err.Error(), " 0 keys unlinked"); zero == tt.removedSome || !strings.Contains(err.Error(), "keys unlinked") {
				t.Errorf("Execute = %v, want the count of keys unlinked before the timeout (some: %v)", err, tt.removedSome)
			}
		})
	}
}

func TestInvalidatorConfig(t *testing.T) {
	t.Parallel()
	if inv := NewInvalidator(nil, nil); inv.timeout != DefaultInvalidateTimeout || DefaultInvalidateTimeout != 30*time.Second {
		t.Errorf("default timeout = %s, want 30s", inv.timeout)
	}
	if _, err := NewInvalidatorConfig(nil, nil, InvalidatorConfig{Timeout: -time.Second}); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("negative timeout: err = %v, want one naming timeout", err)
	}
}
