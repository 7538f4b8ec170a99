package application

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
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

// ResultKey is the cache key of one action's result for one event: its
// parts joined by ':' unambiguously (domain.JoinNames), so that observer
// "orders:shipped" with action "notify" and observer "orders" with action
// "shipped:notify" keep results apart.
func ResultKey(ev *domain.Event, obs *domain.Observer, act *domain.Action) string {
	return domain.JoinNames(':', ev.ID, obs.Name, act.Name)
}

// Execute runs act unless the cache holds its success. Within a step that
// Dedup opened (stepCache in ctx) the lookup may already be answered and
// the success is kept for Dedup to store when the step ends (a last step:
// together with the done mark).
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
		sc.put(key)
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

// storeMany records the successes of keys in one call; a failure is
// reported and fails open.
func (c *CachingExecutor) storeMany(ctx context.Context, keys []string) {
	if len(keys) == 0 {
		return
	}
	if err := c.cache.PutMany(ctx, keys, c.cfg.TTL); err != nil {
		c.open.report(ctx, "put", err)
	}
}

// stepCache is the result-cache traffic of one Dedup step: the lookups of
// the step's due actions, made together with the claim (for a prepared
// run, together with the claims of its whole batch), and the writes of its
// successes, kept until the step ends and then sent in one call (with the
// done marks of its batch, when the step was the run's last). Every lookup
// keeps its own result and fail-open report.
type stepCache struct {
	owner *CachingExecutor

	mu sync.Mutex
	// lookups pairs each distinct key with its lookup, until a get takes
	// it; a slice, searched in order, since a step has a few due actions
	// (a map per event was a twentieth of a Redis drain's allocations).
	lookups []keyedLookup
	puts    []string
	putsBuf [2]string // puts' first backing array: most steps run one or two actions
}

// keyedLookup is a step's lookup of key.
type keyedLookup struct {
	key string
	l   *cacheLookup
}

// cacheLookup is one key's answer, valid once done is closed.
type cacheLookup struct {
	done <-chan struct{}
	hit  bool
	err  error
}

type stepCacheKey struct{}

// newStepCache returns the step cache whose lookup of keys[i] is ls[i].
func (c *CachingExecutor) newStepCache(keys []string, ls []cacheLookup) *stepCache {
	sc := &stepCache{owner: c, lookups: make([]keyedLookup, 0, len(keys))}
	sc.puts = sc.putsBuf[:0]
	for i, k := range keys {
		if !slices.ContainsFunc(sc.lookups, func(kl keyedLookup) bool { return kl.key == k }) {
			sc.lookups = append(sc.lookups, keyedLookup{key: k, l: &ls[i]})
		}
	}
	return sc
}

// in returns ctx carrying sc for Execute.
func (sc *stepCache) in(ctx context.Context) context.Context {
	return context.WithValue(ctx, stepCacheKey{}, sc)
}

// closedDone is the done channel of lookups answered before they were
// handed out.
var closedDone = func() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// lookedUp returns answered lookups of n keys: hits[i], or err for each.
func lookedUp(n int, hits []bool, err error) []cacheLookup {
	ls := newLookups(n, closedDone)
	answer(ls, hits, err)
	return ls
}

// lookUp starts one GetMany for keys and returns a lookup per key, each
// answered when the call returned.
func (c *CachingExecutor) lookUp(ctx context.Context, keys []string) []cacheLookup {
	done := make(chan struct{})
	ls := newLookups(len(keys), done)
	go func() {
		defer close(done)
		hits, err := c.cache.GetMany(ctx, keys)
		answer(ls, hits, err)
	}()
	return ls
}

// newLookups returns n lookups, valid once done is closed.
func newLookups(n int, done <-chan struct{}) []cacheLookup {
	ls := make([]cacheLookup, n)
	for i := range ls {
		ls[i].done = done
	}
	return ls
}

// answer gives ls[i] the answer hits[i], or err to each.
func answer(ls []cacheLookup, hits []bool, err error) {
	for i := range ls {
		if err != nil {
			ls[i].err = err
		} else {
			ls[i].hit = hits[i]
		}
	}
}

// get returns the prefetched answer for key (once; a second call looks up
// afresh), or looks it up now.
func (sc *stepCache) get(ctx context.Context, cache ports.ResultCache, key string) (bool, error) {
	if sc == nil {
		return cache.Get(ctx, key)
	}
	var l *cacheLookup
	sc.mu.Lock()
	if i := slices.IndexFunc(sc.lookups, func(kl keyedLookup) bool { return kl.key == key }); i >= 0 {
		l = sc.lookups[i].l
		sc.lookups = slices.Delete(sc.lookups, i, i+1)
	}
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

// put keeps key's success to be stored when the step ends.
func (sc *stepCache) put(key string) {
	sc.mu.Lock()
	sc.puts = append(sc.puts, key)
	sc.mu.Unlock()
}

// takePuts returns (and forgets) the successes not stored yet; nil-safe.
func (sc *stepCache) takePuts() []string {
	if sc == nil {
		return nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	keys := sc.puts
	sc.puts = nil
	return keys
}

// flush stores the successes not stored yet; nil-safe.
func (sc *stepCache) flush(ctx context.Context) {
	if keys := sc.takePuts(); len(keys) > 0 {
		sc.owner.storeMany(ctx, keys)
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
