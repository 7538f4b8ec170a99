package application

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Concurrent callers are served together, each exactly once, in batches of
// at most max; a caller returns only after its run was served, and the
// lead passes on (every batch is served by one of its own callers).
func TestGangServesConcurrentCallersTogether(t *testing.T) {
	t.Parallel()
	const callers, maxBatch = 60, 8
	var (
		mu      sync.Mutex
		served  = map[*Run]int{}
		sizes   []int
		release = make(chan struct{})
		first   sync.Once
	)
	g := newGang(maxBatch, func(_ context.Context, runs ...*Run) {
		first.Do(func() { <-release }) // the others queue up meanwhile
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(runs))
		for _, r := range runs {
			served[r]++
		}
	})
	runs := make([]*Run, callers)
	for i := range runs {
		runs[i] = &Run{Attempt: i}
	}
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for _, r := range runs {
		wg.Go(func() {
			g.do(t.Context(), r)
			mu.Lock()
			defer mu.Unlock()
			if served[r] != 1 {
				errs <- fmt.Errorf("run %v returned after being served %d times", r.Attempt, served[r])
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let the callers queue behind the first batch
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total, most := 0, 0
	for _, n := range sizes {
		total += n
		most = max(most, n)
	}
	if total != callers || most > maxBatch || most < 2 {
		t.Fatalf("batch sizes %v: want %d runs in all, some batch of several, none over %d", sizes, callers, maxBatch)
	}
	if g.leading || len(g.queue) != 0 {
		t.Fatalf("gang left leading=%v with %d queued", g.leading, len(g.queue))
	}
}

// While busy reports true, the leader waits for lingerRuns callers or
// lingerMax, whichever comes first, and stops waiting once busy reports
// false (asked again at each arrival and poke); with busy false it serves
// at once.
func TestGangLingersWhileBusy(t *testing.T) {
	t.Parallel()
	const step = 10 * time.Microsecond
	cases := []struct {
		name    string
		busy    func(start time.Time) bool
		poke    time.Duration // when to poke the gang (0: never)
		callers int
		// want is when the first batch is served, and its size.
		want     time.Duration
		wantSize int
	}{
		{name: "idle", busy: func(time.Time) bool { return false }, callers: 3, want: 0, wantSize: 1},
		{name: "busy, one caller", busy: func(time.Time) bool { return true }, callers: 1, want: lingerMax, wantSize: 1},
		{name: "busy, enough callers", busy: func(time.Time) bool { return true }, callers: lingerRuns + 5, want: (lingerRuns - 1) * step, wantSize: lingerRuns},
		{
			name:    "busy until 50µs, poked then",
			busy:    func(start time.Time) bool { return time.Since(start) < 50*time.Microsecond },
			poke:    50 * time.Microsecond,
			callers: 3, want: 50 * time.Microsecond, wantSize: 3,
		},
		{
			name:    "busy until 50µs, not poked",
			busy:    func(start time.Time) bool { return time.Since(start) < 50*time.Microsecond },
			callers: 3, want: lingerMax, wantSize: 3,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var (
					mu    sync.Mutex
					at    []time.Duration
					sizes []int
				)
				g := newGang(128, func(_ context.Context, runs ...*Run) {
					mu.Lock()
					defer mu.Unlock()
					at, sizes = append(at, time.Since(start)), append(sizes, len(runs))
				})
				g.busy = func() bool { return tc.busy(start) }
				if tc.poke > 0 {
					time.AfterFunc(tc.poke, g.poke)
				}
				var wg sync.WaitGroup
				for i := range tc.callers {
					time.Sleep(min(time.Duration(i), 1) * step) // the first at once, then one per step
					wg.Go(func() { g.do(t.Context(), &Run{Attempt: i}) })
					synctest.Wait()
				}
				wg.Wait()
				if len(at) == 0 || at[0] != tc.want || sizes[0] != tc.wantSize {
					t.Fatalf("batches served at %v with sizes %v; want the first at %v with %d runs", at, sizes, tc.want, tc.wantSize)
				}
			})
		})
	}
}
