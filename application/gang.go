package application

import (
	"context"
	"sync"
)

// gang calls fn with the runs of concurrent callers together, up to max
// at a time: the first caller leads, serves one batch (its own run first
// among those waiting) and hands the lead to the first caller still
// waiting, so no caller serves others for long. Every do returns after fn
// returned for a batch holding its run. The Worker prepares and finishes
// its messages' runs through gangs: with Dedup, one ClaimMany and one
// MarkDoneMany for what arrived or finished meanwhile.
//
// With busy set, a leader that finds fewer than lingerRuns waiting lingers
// while busy reports that more callers will come soon: until lingerRuns
// wait, lingerMax passed or busy reports false (as the Scheduler's
// finisher does, see Scheduler.linger). busy is asked again when a caller
// joins and at each poke (call it when busy's answer may have changed).
type gang struct {
	fn   func(ctx context.Context, runs ...*Run)
	max  int
	busy func() bool
	grew chan struct{} // signalled when a caller joins the queue, and by poke

	mu      sync.Mutex
	queue   []gangReq
	leading bool
}

type gangReq struct {
	run *Run
	// done receives false once the run was served, or true to hand the
	// lead to this caller (its run then heads the queue); nil for the
	// caller that took the lead itself.
	done chan bool
}

func newGang(max int, fn func(ctx context.Context, runs ...*Run)) *gang {
	return &gang{fn: fn, max: max, grew: make(chan struct{}, 1)}
}

// poke has a lingering leader ask busy again.
func (g *gang) poke() { signal(g.grew) }

// linger waits, while g.busy reports true, until min(lingerRuns, g.max)
// callers are queued, lingerMax passed or ctx ended.
func (g *gang) linger(ctx context.Context) {
	if g.busy == nil || !g.busy() {
		return
	}
	want := min(lingerRuns, g.max)
	lingerUntil(g.grew, ctx.Done(), func() bool {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		return n >= want || !g.busy()
	})
}

// do returns once fn returned for a batch holding run.
func (g *gang) do(ctx context.Context, run *Run) {
	g.mu.Lock()
	if g.leading {
		r := gangReq{run: run, done: make(chan bool, 1)}
		g.queue = append(g.queue, r)
		g.mu.Unlock()
		signal(g.grew)
		if lead := <-r.done; !lead {
			return
		}
	} else {
		g.leading = true
		g.queue = append(g.queue, gangReq{run: run})
		g.mu.Unlock()
	}
	// Leading, with this caller's run at the head.
	g.linger(ctx)
	g.mu.Lock()
	n := min(len(g.queue), g.max)
	batch := make([]gangReq, n)
	copy(batch, g.queue)
	g.queue = append(g.queue[:0], g.queue[n:]...)
	g.mu.Unlock()

	runs := make([]*Run, n)
	for i, r := range batch {
		runs[i] = r.run
	}
	g.fn(ctx, runs...)
	for _, r := range batch[1:] {
		r.done <- false
	}

	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		g.mu.Unlock()
		next.done <- true
		return
	}
	g.leading = false
	g.mu.Unlock()
}
