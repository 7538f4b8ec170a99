package application

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// A beat fires between interval/2 and interval after it started and after
// each fire ended; stop waits for a fire that is running and none starts
// after it; an ended context fires nothing; beats stopped before their
// first fire (nearly all) never fire, and the timer stops once no beat is
// left.
func TestPulse(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const interval = 10 * time.Millisecond
		var (
			mu      sync.Mutex
			at      = map[string][]time.Duration{}
			release = make(chan struct{})
		)
		start := time.Now()
		p := newPulse(interval, func(_ context.Context, key string) {
			mu.Lock()
			at[key] = append(at[key], time.Since(start))
			n := len(at[key])
			mu.Unlock()
			if key == "slow" && n == 3 {
				<-release // the third fire is running when stop is called
			}
			time.Sleep(2 * time.Millisecond)
		})

		slow := p.start(t.Context(), "slow")
		time.Sleep(3 * time.Millisecond)
		late := p.start(t.Context(), "late") // between two ticks
		short := p.start(t.Context(), "short")
		time.Sleep(4 * time.Millisecond)
		p.stop(short) // before its first fire
		time.Sleep(30 * time.Millisecond)
		synctest.Wait()

		stopped := make(chan struct{})
		go func() { p.stop(slow); close(stopped) }()
		synctest.Wait()
		select {
		case <-stopped:
			t.Fatal("stop returned while a fire was running")
		default:
		}
		close(release)
		<-stopped
		p.stop(late)
		time.Sleep(100 * time.Millisecond)

		mu.Lock()
		defer mu.Unlock()
		if len(at["short"]) != 0 {
			t.Errorf("a beat stopped before its first fire fired at %v", at["short"])
		}
		for _, key := range []string{"slow", "late"} {
			times := at[key]
			if len(times) < 2 {
				t.Fatalf("%s fired at %v, want at least twice in 37ms", key, times)
			}
			begin := time.Duration(0)
			if key == "late" {
				begin = 3 * time.Millisecond
			}
			if d := times[0] - begin; d < interval/2 || d > interval {
				t.Errorf("%s: first fire %v after the start, want between %v and %v", key, d, interval/2, interval)
			}
			for i := 1; i < len(times); i++ {
				// each fire lasts 2ms (the blocked third of slow's longer)
				if d := times[i] - times[i-1] - 2*time.Millisecond; d < interval/2 || d > interval {
					t.Errorf("%s: fire %d came %v after the last ended, want between %v and %v (%v)", key, i, d, interval/2, interval, times)
				}
			}
		}
		if n := len(at["slow"]); n != 3 {
			t.Errorf("slow fired %d times, want 3 (none after stop): %v", n, at["slow"])
		}
		p.mu.Lock()
		if p.timer != nil || len(p.beats) != 0 {
			t.Errorf("timer %v and %d beats left after every beat stopped", p.timer, len(p.beats))
		}
		p.mu.Unlock()

		ctx, cancel := context.WithCancel(t.Context())
		var n atomic.Int32
		q := newPulse(interval, func(context.Context, int) { n.Add(1) })
		b := q.start(ctx, 1)
		cancel()
		time.Sleep(50 * time.Millisecond)
		q.stop(b)
		if n.Load() != 0 {
			t.Fatalf("fired %d times after its context ended", n.Load())
		}
	})
}

// BenchmarkPulse is the cost of a heartbeat for a step that ends before
// its first beat (nearly all): start and stop.
func BenchmarkPulse(b *testing.B) {
	ctx := context.Background()
	p := newPulse(time.Minute, func(context.Context, int) {})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.stop(p.start(ctx, 1))
		}
	})
}
