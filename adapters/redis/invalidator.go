package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// scanCount is the COUNT hint of each SCAN round, and so the size of each
// UNLINK batch.
const scanCount = 500

// DefaultInvalidateTimeout bounds one cache action: the UNLINK, or the
// whole SCAN+UNLINK walk of a pattern.
const DefaultInvalidateTimeout = 30 * time.Second

// InvalidatorConfig tunes the cache action.
type InvalidatorConfig struct {
	// Timeout bounds one invalidation, UNLINK or the whole SCAN+UNLINK
	// walk over every master (default 30s). One that runs out is a
	// transient failure; keys removed before it stay removed, and the
	// retry walks again.
	Timeout time.Duration
}

func (c InvalidatorConfig) withDefaults() InvalidatorConfig {
	c.Timeout = cmp.Or(c.Timeout, DefaultInvalidateTimeout)
	return c
}

// Validate reports invalid settings, naming the key.
func (c InvalidatorConfig) Validate() error {
	if c.Timeout <= 0 {
		return fmt.Errorf("timeout: %s is not positive", c.Timeout)
	}
	return nil
}

// Invalidator runs the `cache` action: it renders the action's key pattern
// with the event's values glob-escaped (so they match only themselves),
// prepends the action's own key_prefix (the keys are the application's:
// the client's KeyPrefix, the observer's namespace, is not used) and
// UNLINKs the single key, or every key matching a pattern with wildcards
// (SCAN MATCH over every master), within a timeout. Safe for concurrent
// use.
type Invalidator struct {
	c       *Client
	logger  *slog.Logger
	timeout time.Duration
}

var _ ports.ActionExecutor = (*Invalidator)(nil)

// NewInvalidator returns the cache action executor with the default
// timeout (30s); a nil logger discards.
func NewInvalidator(c *Client, logger *slog.Logger) *Invalidator {
	inv, _ := NewInvalidatorConfig(c, logger, InvalidatorConfig{}) // the defaults are valid
	return inv
}

// NewInvalidatorConfig returns the cache action executor tuned by cfg; a
// nil logger discards.
func NewInvalidatorConfig(c *Client, logger *slog.Logger, cfg InvalidatorConfig) (*Invalidator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redis: new invalidator: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Invalidator{c: c, logger: logger, timeout: cfg.Timeout}, nil
}

// Execute invalidates the keys act names for ev. A bad action (no pattern,
// an unsupported operation, a placeholder the event lacks) is a permanent
// failure; Redis being unreachable, or slower than the timeout, is a
// transient one.
func (inv *Invalidator) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	if act == nil || act.Cache == nil || act.Cache.KeyPattern.IsZero() {
		return domain.Permanent(errors.New("redis: invalidate: action has no key_pattern"))
	}
	if op := act.Cache.Operation; op != "" && op != "invalidate" {
		return domain.Permanent(fmt.Errorf("redis: invalidate: cache operation %q is not supported (only invalidate)", op))
	}
	src := act.Cache.KeyPattern.Source()
	rendered, missing := act.Cache.KeyPattern.Render(ev, domain.EscapeGlob)
	if len(missing) > 0 {
		// Rendering them empty could widen a glob to unrelated keys.
		return domain.Permanent(fmt.Errorf("redis: invalidate %q: event has no value for %s", src, strings.Join(missing, ", ")))
	}
	if domain.HasGlob(rendered) {
		if empty := emptyPlaceholders(act.Cache.KeyPattern, ev); len(empty) > 0 {
			return domain.Permanent(fmt.Errorf("redis: invalidate %q: %s empty (null or \"\"), which would widen the pattern", src, strings.Join(empty, ", ")))
		}
	}
	if rendered == "" {
		return domain.Permanent(fmt.Errorf("redis: invalidate %q: the pattern renders empty", src))
	}
	pattern := domain.GlobEscape(act.Cache.KeyPrefix) + rendered

	timeout := inv.timeout
	if act.Cache.Timeout > 0 {
		timeout = act.Cache.Timeout
	}
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n, err := inv.unlink(callCtx, pattern)
	if err != nil {
		op := fmt.Sprintf("invalidate %q", pattern)
		if ctx.Err() == nil && callCtx.Err() != nil {
			op += fmt.Sprintf(" (timeout %s, %d keys unlinked)", timeout, n)
		}
		werr := inv.c.wrap(ctx, op, err)
		if refusedForGood(err) {
			return domain.Permanent(werr)
		}
		return domain.Transient(werr, 0)
	}
	attrs := []slog.Attr{slog.String("pattern", pattern), slog.Int64("keys_unlinked", n)}
	if ev != nil {
		attrs = append(attrs, slog.String("event_id", ev.ID))
	}
	if obs != nil {
		attrs = append(attrs, slog.String("observer", obs.Name))
	}
	inv.logger.LogAttrs(ctx, slog.LevelDebug, "cache keys invalidated", append(attrs, slog.String("action", act.Name))...)
	return nil
}

// unlink removes the key pattern names, or every key matching it, and
// returns how many keys it removed, as soon as ctx ends: then the count
// is of the commands answered so far (one in flight may remove more).
// go-redis honours a deadline but not a cancellation in the middle of a
// read, so the calls run aside; abandoned, they end on their own within
// the command timeout.
func (inv *Invalidator) unlink(ctx context.Context, pattern string) (int64, error) {
	var total atomic.Int64
	done := make(chan error, 1)
	go func() {
		if domain.HasGlob(pattern) {
			done <- inv.c.unlinkMatching(ctx, pattern, &total)
			return
		}
		n, err := inv.c.rdb.Unlink(ctx, domain.GlobUnescape(pattern)).Result()
		total.Add(n)
		done <- err
	}()
	select {
	case err := <-done:
		return total.Load(), err
	case <-ctx.Done():
		return total.Load(), ctx.Err()
	}
}

// unlinkMatching SCANs for pattern and UNLINKs each batch found, on every
// master in Cluster mode, adding to total the keys it removes.
func (c *Client) unlinkMatching(ctx context.Context, pattern string, total *atomic.Int64) error {
	if c.cluster != nil {
		// A node refuses a multi-key UNLINK across hash slots: one key per
		// command, pipelined.
		return c.cluster.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			return scanUnlink(ctx, node, pattern, true, total)
		})
	}
	return scanUnlink(ctx, c.rdb, pattern, false, total)
}

func scanUnlink(ctx context.Context, node goredis.Cmdable, pattern string, perKey bool, total *atomic.Int64) error {
	var cursor uint64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		keys, next, err := node.Scan(ctx, cursor, pattern, scanCount).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			n, err := unlink(ctx, node, keys, perKey)
			total.Add(n)
			if err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

func unlink(ctx context.Context, node goredis.Cmdable, keys []string, perKey bool) (int64, error) {
	if !perKey {
		return node.Unlink(ctx, keys...).Result()
	}
	pipe := node.Pipeline()
	cmds := make([]*goredis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Unlink(ctx, k)
	}
	_, err := pipe.Exec(ctx)
	var n int64
	for _, cmd := range cmds {
		n += cmd.Val()
	}
	return n, err
}

// emptyPlaceholders lists the placeholders of t whose value in ev renders
// empty (null or ""). Template keeps its parts private, so its source is
// scanned the way CompileTemplate reads it; a compiled template's source is
// known to be well-formed.
func emptyPlaceholders(t *domain.Template, ev *domain.Event) []string {
	var empty []string
	rest := t.Source()
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			return empty
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return empty
		}
		if p, err := domain.ParsePath(strings.TrimSpace(rest[i+2 : i+j])); err == nil {
			if v, ok := p.Resolve(ev); ok && domain.FormatValue(v) == "" {
				empty = append(empty, p.String())
			}
		}
		rest = rest[i+j+2:]
	}
}

// refusedForGood reports a server's error reply that a retry would get
// again: NOPERM (the ACL forbids the key or the command), WRONGTYPE, an
// unknown command. Every other failure is retried: a server that cannot
// serve right now (LOADING, READONLY, BUSY, OOM, CLUSTERDOWN, TRYAGAIN,
// MASTERDOWN, max clients) or the network.
func refusedForGood(err error) bool {
	var reply goredis.Error
	if !errors.As(err, &reply) || errors.Is(err, goredis.Nil) {
		return false
	}
	msg := reply.Error()
	return strings.HasPrefix(msg, "NOPERM") || strings.HasPrefix(msg, "WRONGTYPE") ||
		strings.HasPrefix(msg, "ERR unknown command") || strings.HasPrefix(msg, "ERR unknown subcommand")
}
