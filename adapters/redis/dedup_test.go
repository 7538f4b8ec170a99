package redis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// redisFeatures: two clients on one key prefix are two processes sharing
// the state; Redis judges expiry by its own clock.
var redisFeatures = porttest.StoreFeatures{SharedAcrossInstances: true}

// dedupHarness and cacheHarness give the suites two clients (two
// processes) on one fresh key prefix; open connects one client.
func dedupHarness(open func(t *testing.T, prefix string) *Client) func(t *testing.T) porttest.DedupHarness {
	return func(t *testing.T) porttest.DedupHarness {
		prefix := newPrefix()
		return porttest.DedupHarness{Dedup: NewDeduplicator(open(t, prefix)), Other: NewDeduplicator(open(t, prefix))}
	}
}

func cacheHarness(open func(t *testing.T, prefix string) *Client) func(t *testing.T) porttest.CacheHarness {
	return func(t *testing.T) porttest.CacheHarness {
		prefix := newPrefix()
		return porttest.CacheHarness{Cache: NewResultCache(open(t, prefix)), Other: NewResultCache(open(t, prefix))}
	}
}

// claimLookUpHarness gives the suite a deduplicator and a result cache on
// one client, and a result cache on a second client (another store, to
// the adapter) on the same prefix.
func claimLookUpHarness(open func(t *testing.T, prefix string) *Client) func(t *testing.T) porttest.ClaimLookUpHarness {
	return func(t *testing.T) porttest.ClaimLookUpHarness {
		prefix := newPrefix()
		c := open(t, prefix)
		return porttest.ClaimLookUpHarness{Dedup: NewDeduplicator(c), Cache: NewResultCache(c), Foreign: NewResultCache(open(t, prefix))}
	}
}

func openSingle(t *testing.T, prefix string) *Client { return openClient(t, prefix) }

func TestClaimLookUpConformance(t *testing.T) {
	t.Parallel()
	porttest.RunClaimLookUp(t, claimLookUpHarness(openSingle))
}

// TestClaimLookUpFailsBoth: a round trip that fails fails the claims and
// the lookups alike; on the script path (servers before 7.0) the adapter
// declines, and the caller makes the two calls.
func TestClaimLookUpFailsBoth(t *testing.T) {
	t.Parallel()
	c, err := Open(t.Context(), Config{URL: testenv.RedisURL(t), KeyPrefix: newPrefix()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	d, rc := NewDeduplicator(c), NewResultCache(c)
	d.scriptOnly.Store(true)
	if _, ok := d.ClaimManyLookUp(t.Context(), []string{"e1"}, "a", time.Minute, rc, []string{"e1:o:a"}); ok {
		t.Error("ClaimManyLookUp combined on the script path")
	}
	d.scriptOnly.Store(false)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r, ok := d.ClaimManyLookUp(t.Context(), []string{"e1"}, "a", time.Minute, rc, []string{"e1:o:a"})
	if !ok {
		t.Fatal("ClaimManyLookUp declined")
	}
	if r.ClaimErr == nil || r.LookUpErr == nil || r.Claims != nil || r.Hits != nil {
		t.Errorf("after Close: %+v, want both errors and no answers", r)
	}
}

func TestDeduplicatorConformance(t *testing.T) {
	t.Parallel()
	porttest.RunDeduplicator(t, redisFeatures, dedupHarness(openSingle))
}

// TestDeduplicatorConformanceScriptOnly runs the suite on the claim path
// of servers before Redis 7.0 (which refuse SET with both NX and GET):
// every claim by claimScript.
func TestDeduplicatorConformanceScriptOnly(t *testing.T) {
	t.Parallel()
	porttest.RunDeduplicator(t, redisFeatures, func(t *testing.T) porttest.DedupHarness {
		h := dedupHarness(openSingle)(t)
		for _, d := range []ports.Deduplicator{h.Dedup, h.Other} {
			d.(*Deduplicator).scriptOnly.Store(true)
		}
		return h
	})
}

// TestOldServerSwitchesToTheScript: a server that refuses SET NX GET with
// a syntax error (Redis 6.2's answer; here a fake server speaking RESP)
// turns the deduplicator to claimScript for good, and that claim's answer
// is the script's.
func TestOldServerSwitchesToTheScript(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{} // commands received, by name
	url := fakeRedis(t, func(args []string) string {
		mu.Lock()
		defer mu.Unlock()
		name := strings.ToLower(args[0])
		seen[name]++
		switch {
		case name == "set" && slices.Contains(args, "nx") && slices.Contains(args, "get"):
			return "-ERR syntax error\r\n"
		case name == "evalsha":
			return ":1\r\n" // scriptAcquired
		case name == "ping":
			return "+PONG\r\n"
		case name == "hello": // as a server before 6.0
			return "-ERR unknown command 'HELLO'\r\n"
		}
		return "+OK\r\n"
	})
	d := NewDeduplicator(openURL(t, url))
	for i := range 2 {
		if res, err := d.Claim(t.Context(), "ev", "a", time.Minute); err != nil || res != ports.ClaimAcquired {
			t.Fatalf("claim %d = %v, %v; want acquired by the script", i+1, res, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !d.scriptOnly.Load() || seen["set"] != 1 || seen["evalsha"] != 2 {
		t.Errorf("script only = %v after SET %d times and EVALSHA %d times; want true, 1 and 2",
			d.scriptOnly.Load(), seen["set"], seen["evalsha"])
	}
}

// openURL opens a client on url (a fake server) and closes it when the
// test ends.
func openURL(t *testing.T, url string) *Client {
	t.Helper()
	c, err := Open(t.Context(), Config{URL: url, KeyPrefix: newPrefix()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestUnexplainedReplyGoesToTheScript: a SET NX GET reply that is neither
// a claim nor the done mark (a server that ignores GET and answers OK)
// is not taken for busy: the script decides.
func TestUnexplainedReplyGoesToTheScript(t *testing.T) {
	t.Parallel()
	url := fakeRedis(t, func(args []string) string {
		switch strings.ToLower(args[0]) {
		case "set":
			return "$2\r\nOK\r\n"
		case "evalsha":
			return ":2\r\n" // scriptDone
		case "ping":
			return "+PONG\r\n"
		case "hello":
			return "-ERR unknown command 'HELLO'\r\n"
		}
		return "+OK\r\n"
	})
	d := NewDeduplicator(openURL(t, url))
	if res, err := d.Claim(t.Context(), "ev", "a", time.Minute); err != nil || res != ports.ClaimDone {
		t.Fatalf("Claim = %v, %v; want the script's answer (done)", res, err)
	}
	if d.scriptOnly.Load() {
		t.Error("an unexplained reply switched the deduplicator to the script for good")
	}
}

func TestResultCacheConformance(t *testing.T) {
	t.Parallel()
	porttest.RunResultCache(t, redisFeatures, cacheHarness(openSingle))
}

// TestKeyPrefixIsolates proves two prefixes on one server do not see each
// other's claims, done marks or results, and that keys follow the
// documented layout.
func TestKeyPrefixIsolates(t *testing.T) {
	t.Parallel()
	a, b := openClient(t, ""), openClient(t, "")
	da, db := NewDeduplicator(a), NewDeduplicator(b)
	ca, cb := NewResultCache(a), NewResultCache(b)
	ctx := t.Context()

	if res, err := da.Claim(ctx, "ev-1", "x", time.Minute); err != nil || res != ports.ClaimAcquired {
		t.Fatalf("Claim on a = %v, %v", res, err)
	}
	if res, err := db.Claim(ctx, "ev-1", "y", time.Minute); err != nil || res != ports.ClaimAcquired {
		t.Fatalf("Claim on b = %v, %v; want acquired (other prefix)", res, err)
	}
	if err := ca.Put(ctx, "k", time.Minute); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if hit, err := cb.Get(ctx, "k"); err != nil || hit {
		t.Fatalf("Get on b = %v, %v; want a miss (other prefix)", hit, err)
	}
	for key, want := range map[string]string{
		a.prefix + "dedup:v1:event:ev-1": "claim:x",
		a.prefix + "cache:v1:result:k":   "1",
	} {
		got, err := a.rdb.Get(ctx, key).Result()
		if err != nil || got != want {
			t.Fatalf("GET %s = %q, %v; want %q", key, got, err, want)
		}
		ttl, err := a.rdb.PTTL(ctx, key).Result()
		if err != nil || ttl <= 0 || ttl > time.Minute {
			t.Fatalf("PTTL %s = %v, %v; want within (0, 1m]", key, ttl, err)
		}
	}
}

// TestTokenCannotPassForDone proves a token spelled like the done mark is
// still an ordinary claim.
func TestTokenCannotPassForDone(t *testing.T) {
	t.Parallel()
	d := NewDeduplicator(openClient(t, ""))
	ctx := t.Context()
	if res, err := d.Claim(ctx, "ev-1", "done", time.Minute); err != nil || res != ports.ClaimAcquired {
		t.Fatalf("Claim by %q = %v, %v; want acquired", "done", res, err)
	}
	if res, err := d.Claim(ctx, "ev-1", "other", time.Minute); err != nil || res != ports.ClaimBusy {
		t.Fatalf("Claim by other = %v, %v; want busy, not done", res, err)
	}
}

func TestDedupAndCacheRefuseBadArguments(t *testing.T) {
	t.Parallel()
	c := openClient(t, "")
	d, r := NewDeduplicator(c), NewResultCache(c)
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"claim empty event id", func(ctx context.Context) error { _, err := d.Claim(ctx, "", "a", time.Second); return err }},
		{"claim empty token", func(ctx context.Context) error { _, err := d.Claim(ctx, "ev", "", time.Second); return err }},
		{"claim zero lease", func(ctx context.Context) error { _, err := d.Claim(ctx, "ev", "a", 0); return err }},
		{"mark done negative window", func(ctx context.Context) error { return d.MarkDone(ctx, "ev", -time.Second) }},
		{"put zero ttl", func(ctx context.Context) error { return r.Put(ctx, "k", 0) }},
	}
	t.Run("group", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				if err := tt.call(t.Context()); err == nil {
					t.Fatal("no error")
				}
			})
		}
	})
	if res, err := d.Claim(t.Context(), "ev", "b", time.Minute); err != nil || res != ports.ClaimAcquired {
		t.Fatalf("Claim after refused calls = %v, %v; want acquired", res, err)
	}
}

// BenchmarkClaimMarkDone measures one claim and one done mark per event, as
// the dedup decorator does for every event, from parallel goroutines.
func BenchmarkClaimMarkDone(b *testing.B) {
	d := NewDeduplicator(openClient(b, ""))
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := fmt.Sprintf("ev-%d", seq.Add(1))
			res, err := d.Claim(b.Context(), ev, "bench", time.Minute)
			if err != nil || res != ports.ClaimAcquired {
				b.Errorf("Claim = %v, %v", res, err)
				return
			}
			if err := d.MarkDone(b.Context(), ev, time.Minute); err != nil {
				b.Errorf("MarkDone: %v", err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
