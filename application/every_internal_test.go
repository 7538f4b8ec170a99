package application

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// every runs f one interval after the start and then one interval after
// each f returned; stop waits for an f that is running and no f runs
// after it; an ended context runs no f.
func TestEvery(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var at []time.Duration
		release := make(chan struct{})
		stop := every(t.Context(), 10*time.Millisecond, func() {
			at = append(at, time.Since(start))
			if len(at) == 3 {
				<-release // the third f is running when stop is called
			}
			time.Sleep(5 * time.Millisecond)
		})
		time.Sleep(40 * time.Millisecond) // f at 10 and 25ms, the third from 40ms on
		synctest.Wait()
		stopped := make(chan struct{})
		go func() { stop(); close(stopped) }()
		synctest.Wait()
		select {
		case <-stopped:
			t.Fatal("stop returned while f was running")
		default:
		}
		close(release)
		<-stopped
		time.Sleep(100 * time.Millisecond)
		if want := []time.Duration{10 * time.Millisecond, 25 * time.Millisecond, 40 * time.Millisecond}; len(at) != 3 || at[0] != want[0] || at[1] != want[1] || at[2] != want[2] {
			t.Fatalf("f ran at %v, want %v and none after stop", at, want)
		}

		ctx, cancel := context.WithCancel(t.Context())
		var n atomic.Int32
		stop = every(ctx, 10*time.Millisecond, func() { n.Add(1) })
		cancel()
		time.Sleep(50 * time.Millisecond)
		stop()
		if n.Load() != 0 {
			t.Fatalf("f ran %d times after its context ended", n.Load())
		}
	})
}

// BenchmarkEvery is the cost of a heartbeat for a step that ends before
// its first beat (nearly all): start and stop.
func BenchmarkEvery(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			stop := every(ctx, time.Minute, func() {})
			stop()
		}
	})
}
