package application

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// CacheConfig tunes the result-cache decorator.
type CacheConfig struct {
	// TTL is how long a success is remembered (default 1h).
	TTL     time.Duration
	Logger  *slog.Logger
	Metrics ports.Metrics
	// Now is the clock of the fail-open warnings' rate limit (default
	// time.Now).
	Now func() time.Time
}

// CachingExecutor is an ActionExecutor decorator: an action that already
// succeeded for an event (key per event, observer and action) is not run
// again; only successes are stored. When the cache is unreachable it fails
// open: the action runs, a warning is logged (rate-limited) and the
// fail-open metric counts it.
type CachingExecutor struct {
	next  ports.ActionExecutor
	cache ports.ResultCache
	cfg   CacheConfig
	open  *failOpen
}

var _ ports.ActionExecutor = (*CachingExecutor)(nil)

// NewCachingExecutor wraps next.
func NewCachingExecutor(next ports.ActionExecutor, cache ports.ResultCache, cfg CacheConfig) (*CachingExecutor, error) {
	if next == nil || cache == nil || cfg.Logger == nil {
		return nil, errors.New("cache: executor, cache and logger are required")
	}
	cfg.TTL = cmp.Or(cfg.TTL, time.Hour)
	cfg.Metrics = cmp.Or[ports.Metrics](cfg.Metrics, ports.NopMetrics{})
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &CachingExecutor{next: next, cache: cache, cfg: cfg, open: newFailOpen("cache", cfg.Logger, cfg.Metrics, cfg.Now)}, nil
}

// ResultKey is the cache key of one action's result for one event.
func ResultKey(ev *domain.Event, obs *domain.Observer, act *domain.Action) string {
	return ev.ID + ":" + obs.Name + ":" + act.Name
}

// Execute runs act unless the cache holds its success.
func (c *CachingExecutor) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	key := ResultKey(ev, obs, act)
	hit, err := c.cache.Get(ctx, key)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.open.report(ctx, "get", err)
	case hit:
		MarkCached(ctx)
		c.cfg.Metrics.CacheResult(true)
		return nil
	default:
		MarkCacheMiss(ctx)
		c.cfg.Metrics.CacheResult(false)
	}
	if err := c.next.Execute(ctx, ev, obs, act); err != nil {
		return err
	}
	if err := c.cache.Put(ctx, key, c.cfg.TTL); err != nil {
		c.open.report(ctx, "put", err)
	}
	return nil
}
