package application_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// pairWait bounds how long a gated call waits for its partner: long
// enough never to expire when the calls are paired, short enough to fail
// the test quickly when they are sent one after the other.
const pairWait = 2 * time.Second

// gatedDedup is a fakeDedup whose Claim waits for a cache lookup to have
// started, and whose MarkDoneMany signals: it proves the calls travel
// together.
type gatedDedup struct {
	*fakeDedup
	lookupStarted chan struct{}
	markSent      chan struct{}
	claimAlone    atomic.Bool // a claim gave up waiting for the lookup
}

func (g *gatedDedup) Claim(ctx context.Context, id, token string, lease time.Duration) (ports.ClaimResult, error) {
	g.awaitLookup()
	return g.fakeDedup.Claim(ctx, id, token, lease)
}

func (g *gatedDedup) ClaimMany(ctx context.Context, ids []string, token string, lease time.Duration) ([]ports.ClaimResult, error) {
	g.awaitLookup()
	return g.fakeDedup.ClaimMany(ctx, ids, token, lease)
}

// awaitLookup waits for a cache lookup to have started, at most pairWait.
func (g *gatedDedup) awaitLookup() {
	select {
	case <-g.lookupStarted:
	case <-time.After(pairWait):
		g.claimAlone.Store(true)
	}
}

func (g *gatedDedup) MarkDoneMany(ctx context.Context, ids []string, window time.Duration) error {
	close(g.markSent)
	return g.fakeDedup.MarkDoneMany(ctx, ids, window)
}

// gatedCache is a fakeCache whose GetMany signals and whose PutMany waits
// for the done mark (or a slow store's delay) before storing.
type gatedCache struct {
	*fakeCache
	lookupStarted chan struct{}
	markSent      chan struct{} // nil: Put takes putDelay instead
	putDelay      time.Duration
	putAlone      atomic.Bool // a put gave up waiting for the done mark
	once          atomic.Bool
}

func (g *gatedCache) GetMany(ctx context.Context, keys []string) ([]bool, error) {
	if g.once.CompareAndSwap(false, true) {
		close(g.lookupStarted)
	}
	return g.fakeCache.GetMany(ctx, keys)
}

func (g *gatedCache) PutMany(ctx context.Context, keys []string, ttl time.Duration) error {
	if g.markSent != nil {
		select {
		case <-g.markSent:
		case <-time.After(pairWait):
			g.putAlone.Store(true)
		}
	} else {
		time.Sleep(g.putDelay)
	}
	return g.fakeCache.PutMany(ctx, keys, ttl)
}

func (g *gatedCache) stored(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.keys[key]
}

// pairedBundle stacks Dedup(Processor(CachingExecutor)) with the gated
// stores over one observer with actions a and b, Dedup given the cache
// (whose TTL outlives the dedup window).
func pairedBundle(t *testing.T, putDelay time.Duration) (*decoratorBundle, *gatedDedup, *gatedCache) {
	t.Helper()
	lookup, mark := make(chan struct{}), make(chan struct{})
	d := &gatedDedup{fakeDedup: newFakeDedup(), lookupStarted: lookup, markSent: mark}
	c := &gatedCache{fakeCache: &fakeCache{keys: map[string]bool{}}, lookupStarted: lookup, putDelay: putDelay}
	if putDelay == 0 {
		c.markSent = mark
	}
	// A cache TTL longer than the dedup window: the done mark does not
	// cover the successes, Finish stores them.
	return buildDecoratorsWith(t, d, c, decoratorOpts{paired: true, cacheTTL: 2 * time.Hour}), d, c
}

func TestDedupSendsLookupsWithTheClaimAndWritesWithTheDoneMark(t *testing.T) {
	t.Parallel()
	b, d, c := pairedBundle(t, 0)
	ctx := t.Context()
	run := b.proc.Start(ctx, decoratorRecord("p1"))
	if _, done := b.proc.Step(ctx, run); !done {
		t.Fatal("step not done")
	}
	if d.claimAlone.Load() {
		t.Error("the claim went out before any cache lookup of the step had started")
	}
	b.proc.Finish(ctx, run)
	if c.putAlone.Load() {
		t.Error("the result writes were awaited before the done mark was sent")
	}
	// Finish returns only once the writes are stored.
	for _, act := range []string{"a", "b"} {
		if !c.stored("p1:o:" + act) {
			t.Errorf("Finish returned before the success of %s was stored", act)
		}
	}
	if d.state("p1") != "done" || b.calls["a"].Load() != 1 || b.calls["b"].Load() != 1 {
		t.Fatalf("state %q, calls a=%d b=%d", d.state("p1"), b.calls["a"].Load(), b.calls["b"].Load())
	}
}

func TestDedupStepThatIsNotDoneStoresItsSuccessesBeforeReturning(t *testing.T) {
	t.Parallel()
	b, _, c := pairedBundle(t, 50*time.Millisecond)
	ctx := t.Context()
	b.failB.Store(1)
	run := b.proc.Start(ctx, decoratorRecord("p2"))
	if _, done := b.proc.Step(ctx, run); done {
		t.Fatal("done although b failed")
	}
	// A nak follows at once: a redelivery elsewhere must find a's success.
	if !c.stored("p2:o:a") {
		t.Fatal("the step returned before a's success was stored")
	}
	b.proc.Abandon(ctx, run)
	again := runToEnd(t, b.proc, decoratorRecord("p2"))
	if b.calls["a"].Load() != 1 || again.Summary.CacheHits != 1 {
		t.Fatalf("a ran %d times, cache hits %d", b.calls["a"].Load(), again.Summary.CacheHits)
	}
}

func TestDedupPairedLookupUnusedWhenTheEventIsDone(t *testing.T) {
	t.Parallel()
	b, d, _ := pairedBundle(t, time.Millisecond)
	ctx := t.Context()
	if err := d.MarkDone(ctx, "p3", time.Hour); err != nil {
		t.Fatal(err)
	}
	run := runToEnd(t, b.proc, decoratorRecord("p3"))
	if !run.Summary.DuplicateSkipped || b.calls["a"].Load()+b.calls["b"].Load() != 0 {
		t.Fatalf("done event: skipped=%v calls=%d", run.Summary.DuplicateSkipped, b.calls["a"].Load()+b.calls["b"].Load())
	}
	if b.metrics.hits.Load()+b.metrics.misses.Load() != 0 {
		t.Errorf("cache metrics counted for a skipped event: hits %d misses %d", b.metrics.hits.Load(), b.metrics.misses.Load())
	}
}

// With the cache's TTL within the dedup window (the default), the done mark
// covers the last step's successes: Finish stores none of them, and a
// redelivery is skipped whole. When the done mark cannot be written, they
// are stored so that a redelivery finds them.
func TestDedupDoneMarkCoversTheSuccesses(t *testing.T) {
	t.Parallel()
	b := setupDecorators(t, true)
	ctx := t.Context()
	runToEnd(t, b.proc, decoratorRecord("c1"))
	if got := b.dedup.state("c1"); got != "done" {
		t.Fatalf("c1 is %q, want done", got)
	}
	if n := len(b.cache.keys); n != 0 {
		t.Fatalf("the cache holds %d results although the done mark covers them", n)
	}
	again := runToEnd(t, b.proc, decoratorRecord("c1"))
	if !again.Summary.DuplicateSkipped || b.calls["a"].Load() != 1 || b.calls["b"].Load() != 1 {
		t.Fatalf("redelivery: skipped=%v, a ran %d, b ran %d times", again.Summary.DuplicateSkipped, b.calls["a"].Load(), b.calls["b"].Load())
	}

	run := b.proc.Start(ctx, decoratorRecord("c2"))
	if _, done := b.proc.Step(ctx, run); !done {
		t.Fatal("step not done")
	}
	b.dedup.fail.Store(true) // the done mark fails
	b.proc.Finish(ctx, run)
	b.dedup.fail.Store(false)
	for _, act := range []string{"a", "b"} {
		b.cache.mu.Lock()
		stored := b.cache.keys["c2:o:"+act]
		b.cache.mu.Unlock()
		if !stored {
			t.Errorf("the done mark failed and the success of %s was not stored", act)
		}
	}
	again = runToEnd(t, b.proc, decoratorRecord("c2"))
	if again.Summary.CacheHits != 2 || b.calls["a"].Load() != 2 || b.calls["b"].Load() != 2 {
		t.Fatalf("redelivery after a failed done mark: %d cache hits, a ran %d, b ran %d times; want 2 hits, nothing run again",
			again.Summary.CacheHits, b.calls["a"].Load(), b.calls["b"].Load())
	}
}
