package application

import (
	"context"
	"fmt"
	"sync"
	"testing"
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
