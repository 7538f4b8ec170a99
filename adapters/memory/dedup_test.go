package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// The memory adapters run each suite twice: judging expiry by a clock the
// suite moves, and by the real clock (their default). The state lives in
// one process, where every component shares one instance: the second
// instance of the shared cases is the same one.
var memoryClocks = []struct {
	name     string
	features porttest.StoreFeatures
	clock    func() (now func() time.Time, advance func(time.Duration))
}{
	{"InjectedClock", porttest.StoreFeatures{SharedAcrossInstances: true, ExpiryByClock: true}, func() (func() time.Time, func(time.Duration)) {
		c := newClock()
		return c.Now, c.Advance
	}},
	{"RealClock", porttest.StoreFeatures{SharedAcrossInstances: true}, func() (func() time.Time, func(time.Duration)) {
		return nil, nil
	}},
}

func TestDeduplicatorConformance(t *testing.T) {
	t.Parallel()
	for _, v := range memoryClocks {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			porttest.RunDeduplicator(t, v.features, func(*testing.T) porttest.DedupHarness {
				now, advance := v.clock()
				d := memory.NewDeduplicator(now)
				return porttest.DedupHarness{Dedup: d, Other: d, Advance: advance}
			})
		})
	}
}

func TestResultCacheConformance(t *testing.T) {
	t.Parallel()
	for _, v := range memoryClocks {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			porttest.RunResultCache(t, v.features, func(*testing.T) porttest.CacheHarness {
				now, advance := v.clock()
				c := memory.NewResultCache(now)
				return porttest.CacheHarness{Cache: c, Other: c, Advance: advance}
			})
		})
	}
}

func TestDeduplicatorExpiryFollowsInjectedClock(t *testing.T) {
	t.Parallel()
	type step struct {
		advance time.Duration
		token   string
		want    ports.ClaimResult
	}
	tests := []struct {
		name     string
		markDone time.Duration // after the first claim; 0: no mark
		steps    []step
	}{
		{
			name: "claim lives until exactly its lease",
			steps: []step{
				{token: "a", want: ports.ClaimAcquired},
				{advance: 10*time.Second - time.Nanosecond, token: "b", want: ports.ClaimBusy},
				{advance: time.Nanosecond, token: "b", want: ports.ClaimAcquired},
			},
		},
		{
			name: "renewal counts the lease from the renewal",
			steps: []step{
				{token: "a", want: ports.ClaimAcquired},
				{advance: 8 * time.Second, token: "a", want: ports.ClaimAcquired},
				{advance: 8 * time.Second, token: "b", want: ports.ClaimBusy},
				{advance: 2 * time.Second, token: "b", want: ports.ClaimAcquired},
			},
		},
		{
			name:     "done mark lives until exactly its window",
			markDone: time.Minute,
			steps: []step{
				{token: "a", want: ports.ClaimAcquired},
				{advance: time.Minute - time.Nanosecond, token: "b", want: ports.ClaimDone},
				{advance: time.Nanosecond, token: "b", want: ports.ClaimAcquired},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			d := memory.NewDeduplicator(clock.Now)
			for i, s := range tt.steps {
				clock.Advance(s.advance)
				got, err := d.Claim(t.Context(), "ev-1", s.token, 10*time.Second)
				if err != nil {
					t.Fatalf("step %d: Claim: %v", i, err)
				}
				if got != s.want {
					t.Fatalf("step %d: Claim by %q = %v, want %v", i, s.token, got, s.want)
				}
				if i == 0 && tt.markDone > 0 {
					if err := d.MarkDone(t.Context(), "ev-1", tt.markDone); err != nil {
						t.Fatalf("MarkDone: %v", err)
					}
				}
			}
		})
	}
}

func TestResultCacheExpiryFollowsInjectedClock(t *testing.T) {
	t.Parallel()
	clock := newClock()
	c := memory.NewResultCache(clock.Now)
	if err := c.Put(t.Context(), "k", time.Minute); err != nil {
		t.Fatalf("Put: %v", err)
	}
	for _, s := range []struct {
		advance time.Duration
		want    bool
	}{{0, true}, {time.Minute - time.Nanosecond, true}, {time.Nanosecond, false}} {
		clock.Advance(s.advance)
		got, err := c.Get(t.Context(), "k")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got != s.want {
			t.Fatalf("Get after %v = %v, want %v", s.advance, got, s.want)
		}
	}
}

func TestDedupAndCacheRefuseBadArguments(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	d := memory.NewDeduplicator(nil)
	c := memory.NewResultCache(nil)
	tests := []struct {
		name string
		call func(ctx context.Context) error
		ctx  context.Context
	}{
		{"claim empty event id", func(ctx context.Context) error { _, err := d.Claim(ctx, "", "a", time.Second); return err }, nil},
		{"claim empty token", func(ctx context.Context) error { _, err := d.Claim(ctx, "ev", "", time.Second); return err }, nil},
		{"claim zero lease", func(ctx context.Context) error { _, err := d.Claim(ctx, "ev", "a", 0); return err }, nil},
		{"mark done negative window", func(ctx context.Context) error { return d.MarkDone(ctx, "ev", -time.Second) }, nil},
		{"put zero ttl", func(ctx context.Context) error { return c.Put(ctx, "k", 0) }, nil},
		{"claim canceled", func(ctx context.Context) error { _, err := d.Claim(ctx, "ev", "a", time.Second); return err }, canceled},
		{"mark done canceled", func(ctx context.Context) error { return d.MarkDone(ctx, "ev", time.Second) }, canceled},
		{"release canceled", func(ctx context.Context) error { return d.Release(ctx, "ev", "a") }, canceled},
		{"get canceled", func(ctx context.Context) error { _, err := c.Get(ctx, "k"); return err }, canceled},
		{"put canceled", func(ctx context.Context) error { return c.Put(ctx, "k", time.Second) }, canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			if err := tt.call(ctx); err == nil {
				t.Fatal("no error")
			}
		})
	}
	// A refused claim took nothing.
	if got, err := d.Claim(t.Context(), "ev", "b", time.Second); err != nil || got != ports.ClaimAcquired {
		t.Fatalf("Claim after refused calls = %v, %v; want acquired", got, err)
	}
}
