package application_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

type schedBundle struct {
	sched    *application.Scheduler
	proc     *recordingProc
	dlq      *memory.DeadLetters
	finished *finishLog
}

type schedSetup struct {
	retry domain.RetryPolicy // zero: fixedRetry(3, 5ms)
	exec  ports.ActionExecutor
	cfg   application.SchedulerConfig
}

// setupScheduler builds a scheduler over a real Processor with one
// observer of every entity ("obs", action "act").
func setupScheduler(t testing.TB, s schedSetup) *schedBundle {
	t.Helper()
	obs := observer("obs", "*", "act")
	obs.Retry = fixedRetry(3, 5*time.Millisecond)
	if s.retry != (domain.RetryPolicy{}) {
		obs.Retry = s.retry
	}
	b := &schedBundle{dlq: memory.NewDeadLetters(nil), finished: newFinishLog()}
	b.proc = &recordingProc{RunProcessor: newProcessor(t, []domain.Observer{obs}, s.exec, b.dlq, application.ProcessorConfig{})}
	if s.cfg.Logger == nil {
		s.cfg.Logger = discardLogger()
	}
	sched, err := application.NewScheduler(b.proc, s.cfg)
	if err != nil {
		t.Fatalf("new scheduler: %v", err)
	}
	b.sched = sched
	return b
}

func (b *schedBundle) handle(rec ports.Record) {
	b.sched.Handle(rec, b.finished.finisher(rec.Event.ID))
}

// seqEvent is event n of an entity, with ID "<entity>-<n>" and data n.
func seqEvent(entity string, n int) domain.Event {
	return event(fmt.Sprintf("%s-%d", entity, n), "order", entity, map[string]any{"n": n})
}

func TestSchedulerKeepsEntityOrder(t *testing.T) {
	t.Parallel()
	const entities, perEntity = 20, 15
	tests := []struct {
		name          string
		maxConcurrent int
		failSome      bool
		waves         bool // each entity's queue empties (and is reused) between its events
		batch         int
	}{
		{name: "one worker", maxConcurrent: 1},
		{name: "many workers", maxConcurrent: 8},
		{name: "many workers with retries", maxConcurrent: 8, failSome: true},
		{name: "queues emptied between events", maxConcurrent: 8, failSome: true, waves: true},
		{name: "one worker, batched", maxConcurrent: 1, batch: 4},
		{name: "many workers with retries, batched", maxConcurrent: 8, failSome: true, batch: 4},
		{name: "queues emptied between events, batched", maxConcurrent: 8, failSome: true, waves: true, batch: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu       sync.Mutex
				done     = map[string][]int{} // entity → n of succeeded events, in execution order
				failed   = map[string]bool{}  // event IDs that failed once
				running  = map[string]*atomic.Int32{}
				overlaps atomic.Int32
			)
			for e := range entities {
				running[fmt.Sprint("ent", e)] = &atomic.Int32{}
			}
			exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
				r := running[ev.EntityID]
				if r.Add(1) > 1 {
					overlaps.Add(1)
				}
				defer r.Add(-1)
				n := ev.Data["n"].(int)
				mu.Lock()
				defer mu.Unlock()
				if tt.failSome && n%4 == 1 && !failed[ev.ID] {
					failed[ev.ID] = true
					return domain.Transient(errBoom, 0)
				}
				done[ev.EntityID] = append(done[ev.EntityID], n)
				return nil
			})
			b := setupScheduler(t, schedSetup{exec: exec, retry: fixedRetry(3, time.Millisecond), cfg: application.SchedulerConfig{MaxConcurrent: tt.maxConcurrent, Batch: tt.batch}})
			runInBackground(t, b.sched.Run)
			seq := int64(0)
			for n := range perEntity {
				for e := range entities {
					seq++
					b.handle(record(seq, seqEvent(fmt.Sprint("ent", e), n)))
				}
				if tt.waves {
					eventually(t, "the wave finished", func() bool { return b.finished.len() == (n+1)*entities && b.sched.Pending() == 0 })
				}
			}
			eventually(t, "every event finished", func() bool { return b.finished.len() == entities*perEntity })

			if n := overlaps.Load(); n != 0 {
				t.Errorf("%d executions overlapped another of the same entity", n)
			}
			want := make([]int, perEntity)
			for i := range want {
				want[i] = i
			}
			mu.Lock()
			defer mu.Unlock()
			for e := range entities {
				key := fmt.Sprint("ent", e)
				if got := done[key]; !slices.Equal(got, want) {
					t.Errorf("entity %s ran events %v, want %v", key, got, want)
				}
			}
			for e := range entities {
				for n := range perEntity {
					if id := seqEvent(fmt.Sprint("ent", e), n).ID; b.finished.times(id) != 1 {
						t.Errorf("event %s finished %d times, want 1", id, b.finished.times(id))
					}
				}
			}
			if b.sched.Pending() != 0 {
				t.Errorf("Pending() = %d after every event finished, want 0", b.sched.Pending())
			}
		})
	}
}

func TestSchedulerEntitiesRunConcurrently(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	exec, calls := recording(func(ctx context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		if ev.EntityID == "A" {
			return untilReleased(ctx, release)
		}
		return nil
	})
	b := setupScheduler(t, schedSetup{exec: exec, cfg: application.SchedulerConfig{MaxConcurrent: 2}})
	runInBackground(t, b.sched.Run)
	b.handle(record(1, seqEvent("A", 0)))
	b.handle(record(2, seqEvent("A", 1)))
	for n := range 5 {
		b.handle(record(int64(3+n), seqEvent("B", n)))
	}
	eventually(t, "entity B finished", func() bool {
		for n := range 5 {
			if !b.finished.has(seqEvent("B", n).ID) {
				return false
			}
		}
		return true
	})
	if b.finished.has("A-0") || b.finished.has("A-1") || calls.count("A-1") != 0 {
		t.Fatalf("entity A progressed while its first action was blocked")
	}
	close(release)
	eventually(t, "entity A finished", func() bool { return b.finished.has("A-0") && b.finished.has("A-1") })
}

func TestSchedulerRetryWaitDoesNotHoldTheWorker(t *testing.T) {
	t.Parallel()
	exec, calls := recording(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		if ev.ID == "A-0" {
			return domain.Transient(errBoom, time.Hour)
		}
		return nil
	})
	// One worker: if it waited for A-0's retry, B could not run.
	b := setupScheduler(t, schedSetup{exec: exec, cfg: application.SchedulerConfig{MaxConcurrent: 1}})
	runInBackground(t, b.sched.Run)
	b.handle(record(1, seqEvent("A", 0)))
	b.handle(record(2, seqEvent("A", 1)))
	for n := range 5 {
		b.handle(record(int64(3+n), seqEvent("B", n)))
	}
	eventually(t, "entity B finished", func() bool { return b.finished.has("B-4") })
	if calls.count("A-0") != 1 || calls.count("A-1") != 0 || b.finished.has("A-0") {
		t.Errorf("A-0 ran %d times, A-1 %d times, A-0 finished %v; want 1, 0, false", calls.count("A-0"), calls.count("A-1"), b.finished.has("A-0"))
	}
	if b.sched.Pending() != 1 {
		t.Errorf("Pending() = %d, want 1 (entity A)", b.sched.Pending())
	}
}

func TestSchedulerRetryingEntityDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		finalErr     error // what A-0 answers once released
		wantDeadLets int
	}{
		{name: "A-0 finally succeeds"},
		{name: "A-0 finally dead-lettered", finalErr: domain.Permanent(errBoom), wantDeadLets: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var released atomic.Bool
			exec, calls := recording(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
				if ev.ID != "A-0" {
					return nil
				}
				if !released.Load() {
					return domain.Transient(errBoom, 0)
				}
				return tt.finalErr
			})
			// One worker, shared by both entities.
			b := setupScheduler(t, schedSetup{
				exec:  exec,
				retry: fixedRetry(1_000_000, 2*time.Millisecond),
				cfg:   application.SchedulerConfig{MaxConcurrent: 1},
			})
			runInBackground(t, b.sched.Run)
			b.handle(record(1, seqEvent("A", 0)))
			b.handle(record(2, seqEvent("A", 1)))
			for n := range 5 {
				b.handle(record(int64(3+n), seqEvent("B", n)))
			}
			eventually(t, "entity B finished and A-0 retried", func() bool {
				return b.finished.has("B-4") && calls.count("A-0") >= 3
			})
			if b.finished.has("A-0") || calls.count("A-1") != 0 {
				t.Fatalf("A-1 ran (%d calls) or A-0 finished while A-0 was failing", calls.count("A-1"))
			}
			released.Store(true)
			eventually(t, "entity A finished", func() bool { return b.finished.has("A-1") })

			all := calls.all()
			lastA0 := -1
			for i, c := range all {
				if c.EventID == "A-0" {
					lastA0 = i
				}
			}
			firstA1 := slices.IndexFunc(all, func(c execCall) bool { return c.EventID == "A-1" })
			if firstA1 < lastA0 {
				t.Errorf("A-1 ran (call %d) before A-0's last attempt (call %d)", firstA1, lastA0)
			}
			items, err := b.dlq.List(t.Context(), ports.DeadLetterFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != tt.wantDeadLets {
				t.Errorf("%d dead letters, want %d", len(items), tt.wantDeadLets)
			}
		})
	}
}

func TestSchedulerMaxConcurrent(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{1, 3} {
		t.Run(fmt.Sprint("max ", limit), func(t *testing.T) {
			t.Parallel()
			var running, peak atomic.Int32
			release := make(chan struct{})
			exec := ports.ActionExecutorFunc(func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
				n := running.Add(1)
				defer running.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				return untilReleased(ctx, release)
			})
			b := setupScheduler(t, schedSetup{exec: exec, cfg: application.SchedulerConfig{MaxConcurrent: limit}})
			runInBackground(t, b.sched.Run)
			const events = 12
			for n := range events {
				b.handle(record(int64(n+1), seqEvent(fmt.Sprint("ent", n), 0)))
			}
			eventually(t, "the limit reached", func() bool { return running.Load() == int32(limit) })
			time.Sleep(20 * time.Millisecond) // room for a wrong extra execution to start
			if got := running.Load(); got != int32(limit) {
				t.Errorf("%d actions running, want %d", got, limit)
			}
			close(release)
			eventually(t, "every event finished", func() bool { return b.finished.len() == events })
			if got := peak.Load(); got != int32(limit) {
				t.Errorf("at most %d actions ran at once, want %d", got, limit)
			}
		})
	}
}

func TestSchedulerShutdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// entities each get two events; the first of each is started
		// before shutdown, the second stays queued.
		entities      []string
		grace         time.Duration
		wantFinished  []string
		wantAbandoned []string
	}{
		{
			name:          "in-flight action completes within the grace period, retry wait is abandoned",
			entities:      []string{"A", "B"},
			grace:         waitTimeout,
			wantFinished:  []string{"A-0"},
			wantAbandoned: []string{"B-0"},
		},
		{
			name:          "in-flight action past the grace period is abandoned",
			entities:      []string{"C"},
			grace:         50 * time.Millisecond,
			wantAbandoned: []string{"C-0"},
		},
	}
	for _, tt := range tests {
		for _, batch := range []int{0, 4} {
			t.Run(fmt.Sprintf("%s/batch=%d", tt.name, batch), func(t *testing.T) {
				t.Parallel()
				testSchedulerShutdown(t, tt.entities, tt.grace, batch, tt.wantFinished, tt.wantAbandoned)
			})
		}
	}
}

// testSchedulerShutdown gives entities two events each, shuts down while
// the first of each runs and checks which were finished and abandoned.
func testSchedulerShutdown(t *testing.T, entities []string, grace time.Duration, batch int, wantFinished, wantAbandoned []string) {
	t.Helper()
	release := make(chan struct{})
	exec, calls := recording(func(ctx context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		switch ev.EntityID {
		case "A": // in flight at shutdown, completes once released
			return untilReleased(ctx, release)
		case "B": // waiting for a retry at shutdown
			return domain.Transient(errBoom, 0)
		case "C": // in flight at shutdown, never completes by itself
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	b := setupScheduler(t, schedSetup{
		exec:  exec,
		retry: fixedRetry(3, time.Hour),
		cfg:   application.SchedulerConfig{MaxConcurrent: 4, ShutdownGrace: grace, Batch: batch},
	})
	run := runInBackground(t, b.sched.Run)
	seq := int64(0)
	for n := range 2 {
		for _, e := range entities {
			seq++
			b.handle(record(seq, seqEvent(e, n)))
		}
	}
	eventually(t, "the first events started", func() bool {
		for _, e := range entities {
			if calls.count(e+"-0") != 1 {
				return false
			}
		}
		return true
	})
	run.Cancel()
	// Room for a shutdown that wrongly cuts the grace period short
	// to end A-0's context before it is released.
	time.Sleep(20 * time.Millisecond)
	close(release)
	if err := run.Wait(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}

	finished, abandoned := b.proc.state()
	if !slices.Equal(finished, wantFinished) {
		t.Errorf("Finish called for %v, want %v", finished, wantFinished)
	}
	slices.Sort(abandoned)
	if !slices.Equal(abandoned, wantAbandoned) {
		t.Errorf("Abandon called for %v, want %v", abandoned, wantAbandoned)
	}
	if b.finished.len() != len(wantFinished) {
		t.Errorf("%d finish callbacks, want %d (%v)", b.finished.len(), len(wantFinished), wantFinished)
	}
	for _, id := range wantFinished {
		if b.finished.times(id) != 1 {
			t.Errorf("finish callback for %s called %d times, want 1", id, b.finished.times(id))
		}
	}
	for _, e := range entities {
		if calls.count(e+"-0") != 1 || calls.count(e+"-1") != 0 {
			t.Errorf("entity %s: first event executed %d times, queued one %d times; want 1 and 0", e, calls.count(e+"-0"), calls.count(e+"-1"))
		}
	}

	// After shutdown, records are dropped: they are re-read after a restart.
	b.handle(record(seq+1, seqEvent("D", 0)))
	if b.sched.Pending() != 0 {
		t.Errorf("Pending() = %d after shutdown, want 0", b.sched.Pending())
	}
}

func TestNewSchedulerValidates(t *testing.T) {
	t.Parallel()
	proc := newProcessor(t, nil, ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil }),
		memory.NewDeadLetters(nil), application.ProcessorConfig{})
	tests := []struct {
		name string
		proc application.RunProcessor
		cfg  application.SchedulerConfig
		ok   bool
	}{
		{name: "defaults", proc: proc, cfg: application.SchedulerConfig{Logger: discardLogger()}, ok: true},
		{name: "no processor", cfg: application.SchedulerConfig{Logger: discardLogger()}},
		{name: "no logger", proc: proc},
		{name: "negative max concurrent", proc: proc, cfg: application.SchedulerConfig{Logger: discardLogger(), MaxConcurrent: -1}},
		{name: "negative batch", proc: proc, cfg: application.SchedulerConfig{Logger: discardLogger(), Batch: -1}},
		{name: "batch", proc: proc, cfg: application.SchedulerConfig{Logger: discardLogger(), Batch: 64}, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := application.NewScheduler(tt.proc, tt.cfg)
			if (err == nil) != tt.ok || (s != nil) != tt.ok {
				t.Errorf("NewScheduler = %v, %v; want ok=%v", s, err, tt.ok)
			}
		})
	}
}

// BenchmarkSchedulerThroughput runs 10k events over 1k entities through
// the scheduler and the real processor with a no-op executor.
func BenchmarkSchedulerThroughput(b *testing.B) {
	const events, entities = 10_000, 1_000
	recs := make([]ports.Record, events)
	for i := range recs {
		recs[i] = record(int64(i+1), seqEvent(fmt.Sprint("ent", i%entities), i/entities))
	}
	noop := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	obs := []domain.Observer{observer("obs", "*", "act")}
	var total int
	b.ReportAllocs()
	for b.Loop() {
		proc := newProcessor(b, obs, noop, memory.NewDeadLetters(nil), application.ProcessorConfig{})
		sched, err := application.NewScheduler(proc, application.SchedulerConfig{Logger: discardLogger()})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		stopped := make(chan error, 1)
		go func() { stopped <- sched.Run(ctx) }()
		var wg sync.WaitGroup
		wg.Add(events)
		for _, r := range recs {
			sched.Handle(r, wg.Done)
		}
		wg.Wait()
		cancel()
		if err := <-stopped; err != nil {
			b.Fatal(err)
		}
		total += events
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// batchProbe wraps a RunProcessor and records the calls of a batching
// scheduler: the size of every Prepare and Finish and the order of the
// phases. Its first Prepare waits for firstPrepare and its first Finish
// for firstFinish, so that the next ones find several runs waiting.
type batchProbe struct {
	application.RunProcessor
	firstPrepare, firstFinish chan struct{}

	mu       sync.Mutex
	log      []string // "prepare:id", "step:id", "finished:id"
	prepares []int
	finishes []int
}

func (p *batchProbe) note(phase string, runs ...*application.Run) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range runs {
		p.log = append(p.log, phase+":"+r.Event().ID)
	}
}

// enter records a call of n runs in sizes and, for the first call, waits
// for gate.
func (p *batchProbe) enter(sizes *[]int, n int, gate <-chan struct{}) {
	p.mu.Lock()
	first := len(*sizes) == 0
	*sizes = append(*sizes, n)
	p.mu.Unlock()
	if first {
		<-gate
	}
}

func (p *batchProbe) Prepare(ctx context.Context, runs ...*application.Run) {
	p.enter(&p.prepares, len(runs), p.firstPrepare)
	p.note("prepare", runs...)
	p.RunProcessor.Prepare(ctx, runs...)
}

func (p *batchProbe) Step(ctx context.Context, run *application.Run) (time.Time, bool) {
	p.note("step", run)
	return p.RunProcessor.Step(ctx, run)
}

func (p *batchProbe) Finish(ctx context.Context, runs ...*application.Run) {
	p.enter(&p.finishes, len(runs), p.firstFinish)
	p.RunProcessor.Finish(ctx, runs...)
	p.note("finished", runs...)
}

// With Batch set, events are prepared together before their first step and
// finished together after their last, an entity's next event steps only
// after its predecessor was finished, and every event is finished once.
func TestSchedulerBatchPreparesAndFinishesTogether(t *testing.T) {
	t.Parallel()
	const entities, perEntity, batch = 12, 2, 5
	b := setupScheduler(t, schedSetup{exec: ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })})
	probe := &batchProbe{RunProcessor: b.proc, firstPrepare: make(chan struct{}), firstFinish: make(chan struct{})}
	sched, err := application.NewScheduler(probe, application.SchedulerConfig{MaxConcurrent: 4, Batch: batch, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	finished := newFinishLog()
	runInBackground(t, sched.Run)
	handleRounds(sched, finished, "e", entities, perEntity)
	close(probe.firstPrepare) // every event is handed in: the next Prepare finds several
	eventually(t, "the first finish waits while other runs are done", func() bool {
		probe.mu.Lock()
		defer probe.mu.Unlock()
		steps := 0
		for _, l := range probe.log {
			if strings.HasPrefix(l, "step:") {
				steps++
			}
		}
		return steps >= 4
	})
	close(probe.firstFinish)
	eventually(t, "every event finished", func() bool { return finished.len() == entities*perEntity })

	probe.mu.Lock()
	defer probe.mu.Unlock()
	if slices.Max(probe.prepares) < 2 || slices.Max(probe.prepares) > batch {
		t.Errorf("Prepare sizes %v: want some with several runs, none over %d", probe.prepares, batch)
	}
	if slices.Max(probe.finishes) < 2 || slices.Max(probe.finishes) > batch {
		t.Errorf("Finish sizes %v: want some with several runs, none over %d", probe.finishes, batch)
	}
	ahead, maxAhead := 0, 0 // prepared, not yet stepped
	for _, l := range probe.log {
		switch {
		case strings.HasPrefix(l, "prepare:"):
			ahead++
		case strings.HasPrefix(l, "step:"):
			ahead--
		}
		maxAhead = max(maxAhead, ahead)
	}
	// A worker counts its run stepped when it takes it, a moment before
	// the probe notes the step: up to MaxConcurrent (4) runs may be
	// noted late.
	if maxAhead > 2*batch+4 {
		t.Errorf("%d runs prepared ahead of the workers at once, want at most %d (and 4 taken, not yet noted)", maxAhead, 2*batch)
	}
	at := map[string]int{}
	for i, l := range probe.log {
		if _, seen := at[l]; seen {
			t.Errorf("%s twice", l)
		}
		at[l] = i
	}
	for e := range entities {
		for n := range perEntity {
			id := seqEvent(fmt.Sprint("e", e), n).ID
			prep, okP := at["prepare:"+id]
			step, okS := at["step:"+id]
			fin, okF := at["finished:"+id]
			if !okP || !okS || !okF || prep > step || step > fin {
				t.Errorf("%s: prepare at %d (%v), step at %d (%v), finished at %d (%v); want in that order", id, prep, okP, step, okS, fin, okF)
			}
			if finished.times(id) != 1 {
				t.Errorf("%s finish callback called %d times, want 1", id, finished.times(id))
			}
			if n > 0 {
				prev := seqEvent(fmt.Sprint("e", e), n-1).ID
				if at["finished:"+prev] > at["prepare:"+id] {
					t.Errorf("%s was prepared before %s was finished", id, prev)
				}
			}
		}
	}
}

// handleRounds hands sched perEntity rounds of one event for each of
// entities entities (prefix0 …), in order, each finished into finished.
func handleRounds(sched application.Handler, finished *finishLog, prefix string, entities, perEntity int) {
	seq := int64(0)
	for n := range perEntity {
		for e := range entities {
			seq++
			rec := record(seq, seqEvent(fmt.Sprint(prefix, e), n))
			sched.Handle(rec, finished.finisher(rec.Event.ID))
		}
	}
}

// An event SchedulerConfig.Unwanted refuses is finished at once, without a
// run, even while an earlier event of its entity is still running; the
// events around it go through the processor in order.
func TestSchedulerFinishesUnwantedEventsAtOnce(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setupScheduler(t, schedSetup{
		exec: ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
			if ev.ID == "e-0" {
				<-release
			}
			return nil
		}),
		cfg: application.SchedulerConfig{Unwanted: func(rec ports.Record) bool { return rec.Event.ID == "e-1" }},
	})
	runInBackground(t, b.sched.Run)
	b.handle(record(1, seqEvent("e", 0)))
	b.handle(record(2, seqEvent("e", 1)))
	b.handle(record(3, seqEvent("e", 2)))
	if !b.finished.has("e-1") || b.finished.has("e-0") {
		t.Fatalf("finished %v while e-0 runs, want e-1 alone", b.finished.order)
	}
	close(release)
	eventually(t, "e-0 and e-2 finished", func() bool { return b.finished.has("e-0") && b.finished.has("e-2") })
	if finished, _ := b.proc.state(); !slices.Equal(finished, []string{"e-0", "e-2"}) {
		t.Fatalf("runs finished by the processor: %v, want e-0 then e-2 (no run for e-1)", finished)
	}
}
