package application

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
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

// Execute runs act unless the cache holds its success. Within a step that
// Dedup opened (stepCache in ctx) the lookup may already be under way and
// the success is stored without waiting; Dedup waits for it before the
// step ends or the event is marked done.
func (c *CachingExecutor) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	key := ResultKey(ev, obs, act)
	sc, _ := ctx.Value(stepCacheKey{}).(*stepCache)
	if sc != nil && sc.owner != c {
		sc = nil
	}
	hit, err := sc.get(ctx, c.cache, key)
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
	if sc != nil {
		sc.put(ctx, key)
		return nil
	}
	c.store(ctx, key)
	return nil
}

// store records key's success; a failure is reported and fails open.
func (c *CachingExecutor) store(ctx context.Context, key string) {
	if err := c.cache.Put(ctx, key, c.cfg.TTL); err != nil {
		c.open.report(ctx, "put", err)
	}
}

// stepCache is the result-cache traffic of one Dedup step: the lookups of
// the step's due actions, started together with the claim, and the writes
// of its successes, sent together with the done mark. With a batching
// store (the Redis adapter pipelines concurrent calls) each pair shares a
// round trip instead of following one another. Every call keeps its own
// context, result and fail-open report; wait returns once every write
// returned, so nothing is finished before its success is stored.
type stepCache struct {
	owner *CachingExecutor

	mu      sync.Mutex
	lookups map[string]*cacheLookup
	puts    sync.WaitGroup
}

type cacheLookup struct {
	done chan struct{}
	hit  bool
	err  error
}

type stepCacheKey struct{}

// prefetch starts a lookup for each key and returns ctx carrying them for
// Execute. A lookup nobody takes ends on its own (bounded by the store's
// timeout); len(keys) is the number of the event's due actions.
func (c *CachingExecutor) prefetch(ctx context.Context, keys []string) (context.Context, *stepCache) {
	sc := &stepCache{owner: c, lookups: make(map[string]*cacheLookup, len(keys))}
	for _, k := range keys {
		if _, dup := sc.lookups[k]; dup {
			continue
		}
		l := &cacheLookup{done: make(chan struct{})}
		sc.lookups[k] = l
		go func() {
			defer close(l.done)
			l.hit, l.err = c.cache.Get(ctx, k)
		}()
	}
	return context.WithValue(ctx, stepCacheKey{}, sc), sc
}

// get returns the prefetched answer for key (once; a second call looks up
// afresh), or looks it up now.
func (sc *stepCache) get(ctx context.Context, cache ports.ResultCache, key string) (bool, error) {
	if sc == nil {
		return cache.Get(ctx, key)
	}
	sc.mu.Lock()
	l := sc.lookups[key]
	delete(sc.lookups, key)
	sc.mu.Unlock()
	if l == nil {
		return cache.Get(ctx, key)
	}
	select {
	case <-l.done:
		return l.hit, l.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// put stores key's success without making the caller wait; wait waits.
func (sc *stepCache) put(ctx context.Context, key string) {
	sc.puts.Go(func() { sc.owner.store(ctx, key) })
}

// wait returns once every put of the step returned; nil-safe.
func (sc *stepCache) wait() {
	if sc != nil {
		sc.puts.Wait()
	}
}

// dueResultKeys lists the result-cache keys of the actions the next Step
// of run would attempt at now (a superset does no harm: a lookup nobody
// takes is only wasted).
func dueResultKeys(run *Run, now time.Time) []string {
	if run.Skipped || run.invalid || run.Record.Err != nil {
		return nil
	}
	var keys []string
	for _, t := range run.tasks {
		if !t.dueAt(now) || t.lastErr != nil {
			continue // not taken up, or taken up to be dead-lettered
		}
		keys = append(keys, ResultKey(run.Event(), t.obs, t.act))
	}
	return keys
}
