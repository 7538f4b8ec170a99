package application_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// fakeDedup is an in-test Deduplicator whose failures are injectable.
type fakeDedup struct {
	mu      sync.Mutex
	holders map[string]string // event id -> token, or "done"
	fail    atomic.Bool
	calls   atomic.Int32 // claims, one per event
	// manyCalls counts ClaimMany calls
	manyCalls atomic.Int32
}

var _ ports.Deduplicator = (*fakeDedup)(nil)

var errRedisDown = errors.New("redis down")

func newFakeDedup() *fakeDedup { return &fakeDedup{holders: map[string]string{}} }

func (f *fakeDedup) Claim(_ context.Context, id, token string, _ time.Duration) (ports.ClaimResult, error) {
	f.calls.Add(1)
	if f.fail.Load() {
		return 0, errRedisDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch v := f.holders[id]; v {
	case "", token:
		f.holders[id] = token
		return ports.ClaimAcquired, nil
	case "done":
		return ports.ClaimDone, nil
	default:
		return ports.ClaimBusy, nil
	}
}

func (f *fakeDedup) MarkDone(_ context.Context, id string, _ time.Duration) error {
	if f.fail.Load() {
		return errRedisDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holders[id] = "done"
	return nil
}

func (f *fakeDedup) Release(_ context.Context, id, token string) error {
	if f.fail.Load() {
		return errRedisDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holders[id] == token {
		delete(f.holders, id)
	}
	return nil
}

func (f *fakeDedup) ClaimMany(ctx context.Context, ids []string, token string, lease time.Duration) ([]ports.ClaimResult, error) {
	f.manyCalls.Add(1)
	res := make([]ports.ClaimResult, len(ids))
	for i, id := range ids {
		r, err := f.Claim(ctx, id, token, lease)
		if err != nil {
			return nil, err
		}
		res[i] = r
	}
	return res, nil
}

func (f *fakeDedup) MarkDoneMany(ctx context.Context, ids []string, window time.Duration) error {
	for _, id := range ids {
		if err := f.MarkDone(ctx, id, window); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeDedup) state(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holders[id]
}

type fakeCache struct {
	mu   sync.Mutex
	keys map[string]bool
	fail atomic.Bool
	gets atomic.Int32 // GetMany calls
}

func (c *fakeCache) Get(_ context.Context, key string) (bool, error) {
	if c.fail.Load() {
		return false, errRedisDown
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys[key], nil
}

func (c *fakeCache) Put(_ context.Context, key string, _ time.Duration) error {
	if c.fail.Load() {
		return errRedisDown
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys[key] = true
	return nil
}

func (c *fakeCache) GetMany(ctx context.Context, keys []string) ([]bool, error) {
	c.gets.Add(1)
	hits := make([]bool, len(keys))
	for i, key := range keys {
		hit, err := c.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		hits[i] = hit
	}
	return hits, nil
}

func (c *fakeCache) PutMany(ctx context.Context, keys []string, ttl time.Duration) error {
	for _, key := range keys {
		if err := c.Put(ctx, key, ttl); err != nil {
			return err
		}
	}
	return nil
}

// countingMetrics counts what the decorators report.
type countingMetrics struct {
	ports.NopMetrics
	duplicates, hits, misses, failOpen atomic.Int32
}

func (m *countingMetrics) DuplicateSkipped() { m.duplicates.Add(1) }
func (m *countingMetrics) FailOpen(string)   { m.failOpen.Add(1) }
func (m *countingMetrics) CacheResult(h bool) {
	if h {
		m.hits.Add(1)
	} else {
		m.misses.Add(1)
	}
}

type decoratorBundle struct {
	paired  bool
	dedup   *fakeDedup
	cache   *fakeCache
	metrics *countingMetrics
	calls   map[string]*atomic.Int32 // action name -> executions
	failB   atomic.Int32             // how many times action b fails before succeeding
	proc    application.RunProcessor
}

// forDecoratorModes runs test over a fresh bundle with the cache's
// traffic separate from the claim's (Dedup without DedupConfig.Cache) and
// paired with it.
func forDecoratorModes(t *testing.T, test func(t *testing.T, b *decoratorBundle)) {
	t.Helper()
	for _, paired := range []bool{false, true} {
		name := map[bool]string{false: "separate", true: "paired"}[paired]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, setupDecorators(t, paired))
		})
	}
}

// setupDecorators stacks Dedup(Processor(CachingExecutor(executor))) over
// one observer with two actions, a and b; paired gives Dedup the caching
// executor (DedupConfig.Cache).
func setupDecorators(t *testing.T, paired bool) *decoratorBundle {
	t.Helper()
	dedup, cache := newFakeDedup(), &fakeCache{keys: map[string]bool{}}
	b := buildDecorators(t, dedup, cache, paired)
	b.dedup, b.cache = dedup, cache
	return b
}

// buildDecorators is setupDecorators over the given stores.
func buildDecorators(t *testing.T, dedup ports.Deduplicator, cache ports.ResultCache, paired bool) *decoratorBundle {
	t.Helper()
	return buildDecoratorsAt(t, dedup, cache, paired, nil)
}

// buildDecoratorsAt is buildDecorators with Dedup on the clock now (nil:
// time.Now).
func buildDecoratorsAt(t *testing.T, dedup ports.Deduplicator, cache ports.ResultCache, paired bool, now func() time.Time) *decoratorBundle {
	t.Helper()
	return buildDecoratorsWith(t, dedup, cache, decoratorOpts{paired: paired, now: now})
}

// decoratorOpts tunes buildDecoratorsWith.
type decoratorOpts struct {
	paired   bool             // Dedup given the caching executor
	now      func() time.Time // Dedup's clock (nil: time.Now)
	cacheTTL time.Duration    // the cache's TTL (zero: the default, equal to the dedup window)
}

// buildDecoratorsWith is buildDecorators with opts.
func buildDecoratorsWith(t *testing.T, dedup ports.Deduplicator, cache ports.ResultCache, opts decoratorOpts) *decoratorBundle {
	t.Helper()
	paired, now := opts.paired, opts.now
	b := &decoratorBundle{
		paired:  paired,
		metrics: &countingMetrics{},
		calls:   map[string]*atomic.Int32{"a": {}, "b": {}},
	}
	exec := ports.ActionExecutorFunc(func(_ context.Context, _ *domain.Event, _ *domain.Observer, act *domain.Action) error {
		b.calls[act.Name].Add(1)
		if act.Name == "b" && b.failB.Load() > 0 {
			b.failB.Add(-1)
			return domain.Transient(errors.New("503"), 0)
		}
		return nil
	})
	logger := discardLogger()
	cached, err := application.NewCachingExecutor(exec, cache, application.CacheConfig{Logger: logger, Metrics: b.metrics, TTL: opts.cacheTTL})
	if err != nil {
		t.Fatal(err)
	}
	obs := []domain.Observer{{
		Name: "o", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, OnFailure: domain.FailureDLQ,
		Retry: domain.RetryPolicy{MaxAttempts: 5, InitialDelay: time.Millisecond, MaxDelay: time.Millisecond, Backoff: domain.BackoffFixed},
		Actions: []domain.Action{
			{Name: "a", Type: domain.ActionLog, Log: &domain.LogAction{Level: "info"}},
			{Name: "b", Type: domain.ActionLog, Log: &domain.LogAction{Level: "info"}},
		},
	}}
	proc, err := application.NewProcessor(domain.NewMatcher(obs), application.ProcessorConfig{
		Executor: cached, DeadLetters: &deadLetterSink{}, Logger: logger, Metrics: b.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := application.DedupConfig{Token: "me", Logger: logger, Metrics: b.metrics, Now: now}
	if paired {
		cfg.Cache = cached
	}
	b.proc, err = application.NewDedup(proc, dedup, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decoratorRecord(id string) ports.Record {
	return ports.Record{Event: domain.Event{ID: id, EventType: domain.EventInsert, EntityType: "Order", EntityID: "o-" + id, Data: map[string]any{}}}
}

// runToEnd drives a run like the scheduler does, stepping until done.
func runToEnd(t *testing.T, p application.RunProcessor, rec ports.Record) *application.Run {
	t.Helper()
	ctx := t.Context()
	run := p.Start(ctx, rec)
	for range 100 {
		next, done := p.Step(ctx, run)
		if done {
			p.Finish(ctx, run)
			return run
		}
		time.Sleep(max(time.Until(next), 0))
	}
	t.Fatal("run did not finish in 100 steps")
	return nil
}

func TestDedupRunsActionsOncePerEvent(t *testing.T) {
	t.Parallel()
	forDecoratorModes(t, func(t *testing.T, b *decoratorBundle) {
		first := runToEnd(t, b.proc, decoratorRecord("e1"))
		second := runToEnd(t, b.proc, decoratorRecord("e1")) // delivered again
		if got := b.calls["a"].Load() + b.calls["b"].Load(); got != 2 {
			t.Fatalf("actions ran %d times over two deliveries, want 2", got)
		}
		if first.Summary.DuplicateSkipped || !second.Summary.DuplicateSkipped {
			t.Errorf("DuplicateSkipped first=%v second=%v", first.Summary.DuplicateSkipped, second.Summary.DuplicateSkipped)
		}
		if b.metrics.duplicates.Load() != 1 {
			t.Errorf("duplicate metric = %d", b.metrics.duplicates.Load())
		}
		if b.dedup.state("e1") != "done" {
			t.Errorf("event not marked done: %q", b.dedup.state("e1"))
		}
	})
}

func TestDedupBusyClaimWaitsAndAbandonReleases(t *testing.T) {
	t.Parallel()
	forDecoratorModes(t, func(t *testing.T, b *decoratorBundle) {
		ctx := t.Context()
		// Another process holds the claim: no action runs, a later step is due.
		if _, err := b.dedup.Claim(ctx, "e2", "other", time.Minute); err != nil {
			t.Fatal(err)
		}
		run := b.proc.Start(ctx, decoratorRecord("e2"))
		next, done := b.proc.Step(ctx, run)
		if done || next.IsZero() || b.calls["a"].Load() != 0 {
			t.Fatalf("busy claim: done=%v next=%v calls=%d", done, next, b.calls["a"].Load())
		}
		// The other holder releases; this process claims, and when abandoned
		// releases its own claim, never marking the event done.
		if err := b.dedup.Release(ctx, "e2", "other"); err != nil {
			t.Fatal(err)
		}
		b.failB.Store(100)
		if _, done := b.proc.Step(ctx, run); done {
			t.Fatal("done although b keeps failing")
		}
		if b.dedup.state("e2") != "me" {
			t.Fatalf("claim holder = %q, want me", b.dedup.state("e2"))
		}
		b.proc.Abandon(ctx, run)
		if s := b.dedup.state("e2"); s != "" {
			t.Fatalf("after abandon the claim is %q, want released", s)
		}
	})
}

func TestCacheSkipsActionsThatAlreadySucceeded(t *testing.T) {
	t.Parallel()
	forDecoratorModes(t, func(t *testing.T, b *decoratorBundle) {
		ctx := t.Context()
		// First delivery: a succeeds, b fails; the run is abandoned (a crash or
		// a NATS nak) before b's retry.
		b.failB.Store(1)
		run := b.proc.Start(ctx, decoratorRecord("e3"))
		if _, done := b.proc.Step(ctx, run); done {
			t.Fatal("done although b failed")
		}
		b.proc.Abandon(ctx, run)
		// Redelivery: a is served from the cache, b runs and succeeds.
		again := runToEnd(t, b.proc, decoratorRecord("e3"))
		if a := b.calls["a"].Load(); a != 1 {
			t.Errorf("action a ran %d times, want 1", a)
		}
		if bb := b.calls["b"].Load(); bb != 2 {
			t.Errorf("action b ran %d times, want 2", bb)
		}
		if again.Summary.CacheHits != 1 || again.Summary.CacheMisses != 1 {
			t.Errorf("summary hits=%d misses=%d, want 1 and 1", again.Summary.CacheHits, again.Summary.CacheMisses)
		}
		if b.metrics.hits.Load() != 1 || b.metrics.misses.Load() != 3 {
			t.Errorf("metrics hits=%d misses=%d, want 1 and 3", b.metrics.hits.Load(), b.metrics.misses.Load())
		}
		// Paired, the last step's success (b) is covered by the done mark
		// and not stored.
		want := map[bool]int{false: 2, true: 1}[b.paired]
		b.cache.mu.Lock()
		defer b.cache.mu.Unlock()
		if len(b.cache.keys) != want {
			t.Errorf("cache holds %d results, want %d", len(b.cache.keys), want)
		}
	})
}

func TestDecoratorsFailOpen(t *testing.T) {
	t.Parallel()
	forDecoratorModes(t, func(t *testing.T, b *decoratorBundle) {
		b.dedup.fail.Store(true)
		b.cache.fail.Store(true)
		run := runToEnd(t, b.proc, decoratorRecord("e4"))
		if run.Summary.SuccessfulActions != 2 || b.calls["a"].Load() != 1 || b.calls["b"].Load() != 1 {
			t.Fatalf("with Redis down the actions must still run: %+v", run.Summary)
		}
		if b.metrics.failOpen.Load() < 3 {
			t.Errorf("fail-open metric = %d, want at least claim + cache get/put", b.metrics.failOpen.Load())
		}
		// Redis back: dedup resumes.
		b.dedup.fail.Store(false)
		b.cache.fail.Store(false)
		runToEnd(t, b.proc, decoratorRecord("e5"))
		dup := runToEnd(t, b.proc, decoratorRecord("e5"))
		if !dup.Summary.DuplicateSkipped {
			t.Error("dedup did not resume after Redis came back")
		}
	})
}

// TestSummaryLoggedAtDebug checks the per-event summary line carries the
// dedup and cache counters.
func TestSummaryLoggedAtDebug(t *testing.T) {
	t.Parallel()
	var buf testsupport.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cache := &fakeCache{keys: map[string]bool{}}
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	cached, err := application.NewCachingExecutor(exec, cache, application.CacheConfig{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	obs := []domain.Observer{{
		Name: "o", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, OnFailure: domain.FailureDLQ,
		Retry:   domain.DefaultRetryPolicy,
		Actions: []domain.Action{{Name: "a", Type: domain.ActionLog, Log: &domain.LogAction{Level: "info"}}},
	}}
	proc, err := application.NewProcessor(domain.NewMatcher(obs), application.ProcessorConfig{Executor: cached, DeadLetters: &deadLetterSink{}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	dedup, err := application.NewDedup(proc, newFakeDedup(), application.DedupConfig{Token: "me", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	runToEnd(t, dedup, decoratorRecord("s1"))
	runToEnd(t, dedup, decoratorRecord("s1"))
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "event processed" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("got %d summary lines, want 2: %s", len(lines), buf.String())
	}
	first, second := lines[0], lines[1]
	if first["level"] != "DEBUG" || first["cache_misses"] != float64(1) || first["cache_hits"] != float64(0) || first["duplicate_skipped"] != false || first["successful_actions"] != float64(1) {
		t.Errorf("first summary = %v", first)
	}
	if second["duplicate_skipped"] != true || second["outcome"] != "duplicate" {
		t.Errorf("second summary = %v", second)
	}
}

// TestFailOpenWarnsOncePerIntervalOfItsClock drives the dedup decorator's
// fail-open warnings with an injected clock: one warning per 10s of that
// clock, however many failures, the next one counting those held back.
func TestFailOpenWarnsOncePerIntervalOfItsClock(t *testing.T) {
	t.Parallel()
	const warning = "dedup unavailable, continuing without it (fail-open)"
	clock := newClock()
	logs := &testsupport.Logs{}
	store := newFakeDedup()
	store.fail.Store(true)
	metrics := &countingMetrics{}
	proc, err := application.NewProcessor(domain.NewMatcher([]domain.Observer{{
		Name: "o", Entity: "Order", Events: []domain.EventType{domain.EventInsert},
		Actions: []domain.Action{{Name: "a", Type: domain.ActionLog, Log: &domain.LogAction{Level: "info"}}},
	}}), application.ProcessorConfig{
		Executor:    ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil }),
		DeadLetters: &deadLetterSink{}, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	dedup, err := application.NewDedup(proc, store, application.DedupConfig{
		Token: "me", Logger: slog.New(logs), Metrics: metrics, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		runToEnd(t, dedup, decoratorRecord(fmt.Sprint("e", i)))
	}
	heldBack := int64(metrics.failOpen.Load()) - 1
	if n := len(logs.Find(warning)); n != 1 || heldBack < 3 {
		t.Fatalf("%d warnings for %d fail-open reports within one interval, want 1", n, heldBack+1)
	}
	clock.Advance(10*time.Second - time.Nanosecond)
	runToEnd(t, dedup, decoratorRecord("e4"))
	heldBack = int64(metrics.failOpen.Load()) - 1
	if n := len(logs.Find(warning)); n != 1 {
		t.Fatalf("%d warnings before the interval passed, want 1", n)
	}
	clock.Advance(time.Nanosecond)
	runToEnd(t, dedup, decoratorRecord("e5"))
	warnings := logs.Find(warning)
	if len(warnings) != 2 {
		t.Fatalf("%d warnings once the interval passed, want 2", len(warnings))
	}
	if got := warnings[1].Attrs["suppressed_since_last_warning"]; got != heldBack {
		t.Errorf("suppressed_since_last_warning = %v, want the %d held back", got, heldBack)
	}
}

// TestDedupClaimHeartbeatsWhileAnActionRuns: an action longer than the
// dedup lease keeps its event claimed, so a second processor (another
// replica, or the same event delivered twice) finds the claim busy and
// does not run the action concurrently. Before, the claim was renewed
// only between steps and expired under a long action.
func TestDedupClaimHeartbeatsWhileAnActionRuns(t *testing.T) {
	t.Parallel()
	// In a bubble (fake time): the heartbeat is never late, however loaded
	// the machine; a claim that is not renewed still expires.
	synctest.Test(t, func(t *testing.T) {
		const lease = 200 * time.Millisecond
		store := memory.NewDeduplicator(time.Now)
		var calls atomic.Int32
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		exec := ports.ActionExecutorFunc(func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
			if calls.Add(1) > 1 {
				return nil // a concurrent run: counted, and over at once
			}
			started <- struct{}{}
			return untilReleased(ctx, release) // an action far longer than the lease
		})
		replica := func(token string) application.RunProcessor {
			proc := newProcessor(t, []domain.Observer{observer("obs", "*", "act")}, exec, memory.NewDeadLetters(nil), application.ProcessorConfig{})
			d, err := application.NewDedup(proc, store, application.DedupConfig{Token: token, Lease: lease, Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		a, b := replica("a"), replica("b")
		rec := record(1, event("e-1", "Order", "o-1", nil))

		stepped := make(chan bool, 1)
		go func() {
			run := a.Start(t.Context(), rec)
			_, done := a.Step(t.Context(), run)
			stepped <- done
		}()
		<-started
		// Well past the lease (five of them) while the action still runs: the
		// second replica must find the claim busy.
		deadline := time.Now().Add(5 * lease)
		for time.Now().Before(deadline) {
			run := b.Start(t.Context(), rec)
			if next, done := b.Step(t.Context(), run); done || next.IsZero() {
				t.Fatalf("the second replica's step: done=%v next=%v, want busy", done, next)
			}
			time.Sleep(lease / 4)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("the action ran %d times at once, want once", n)
		}
		close(release)
		if done := <-stepped; !done {
			t.Fatal("the first replica's step did not finish")
		}
	})
}

// ctxHonouringDedup is a fakeDedup that refuses calls under an ended
// context, as the Redis and memory stores do.
type ctxHonouringDedup struct{ *fakeDedup }

func (f ctxHonouringDedup) MarkDoneMany(ctx context.Context, ids []string, window time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.fakeDedup.MarkDoneMany(ctx, ids, window)
}

func (f ctxHonouringDedup) Release(ctx context.Context, id, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.fakeDedup.Release(ctx, id, token)
}

// TestDedupSettlesUnderAnEndedContext: a run finished or abandoned after
// the caller's context ended (a lost lease cancels the scheduler's work at
// once) is still marked done, or its claim released. Before, the done
// mark and the release failed, and the next holder found the claim busy
// until it expired, then ran the event again, successful webhooks
// included.
func TestDedupSettlesUnderAnEndedContext(t *testing.T) {
	t.Parallel()
	store := ctxHonouringDedup{newFakeDedup()}
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	base, _ := hookProcessor(t, exec, 3)
	proc, err := application.NewDedup(base, store, application.DedupConfig{Token: "me", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(t.Context())
	cancel()

	done := proc.Start(t.Context(), decoratorRecord("done"))
	if _, ok := proc.Step(t.Context(), done); !ok {
		t.Fatal("the run did not finish in one step")
	}
	proc.Finish(ended, done)
	if got := store.state("done"); got != "done" {
		t.Errorf("finished under an ended context: dedup state %q, want done", got)
	}

	held := proc.Start(t.Context(), decoratorRecord("held"))
	proc.Prepare(t.Context(), held)
	if got := store.state("held"); got != "me" {
		t.Fatalf("prepared: dedup state %q, want claimed by me", got)
	}
	proc.Abandon(ended, held)
	if got := store.state("held"); got != "" {
		t.Errorf("abandoned under an ended context: dedup state %q, want the claim released", got)
	}
}

// Two observer/action pairs whose names joined by ':' read the same keep
// their results apart: a success of one no longer skips the other as
// cached on a redelivery.
func TestResultKeysOfDifferentActionsDiffer(t *testing.T) {
	t.Parallel()
	ev := &domain.Event{ID: "e1"}
	a := application.ResultKey(ev, &domain.Observer{Name: "orders:shipped"}, &domain.Action{Name: "notify"})
	b := application.ResultKey(ev, &domain.Observer{Name: "orders"}, &domain.Action{Name: "shipped:notify"})
	if a == b {
		t.Errorf("both pairs have the key %q", a)
	}
	if got := application.ResultKey(ev, &domain.Observer{Name: "hooks"}, &domain.Action{Name: "notify"}); got != "e1:hooks:notify" {
		t.Errorf("plain names: key %q, want e1:hooks:notify as before", got)
	}
}
