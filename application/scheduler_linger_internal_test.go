package application

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// The finisher lingers only while the workers have queued work: at once
// when none is queued (or none is left), until lingerRuns runs are done
// (a batch, when smaller), or lingerMax at most; a closed stop ends it.
func TestSchedulerLinger(t *testing.T) {
	t.Parallel()
	newSched := func() *Scheduler {
		return &Scheduler{cfg: SchedulerConfig{Batch: 128}, finWake: make(chan struct{}, 1)}
	}
	cases := []struct {
		name string
		busy func(s *Scheduler)
		// during runs in the background once linger started.
		during func(s *Scheduler, stop chan struct{})
		want   time.Duration
	}{
		{name: "no queued work", busy: func(*Scheduler) {}, want: 0},
		{name: "queued work, nothing done", busy: func(s *Scheduler) { s.ready = []*entityQueue{{}} }, want: lingerMax},
		{name: "runs prepared ahead, nothing done", busy: func(s *Scheduler) { s.ahead = 1 }, want: lingerMax},
		{name: "enough runs done already", busy: func(s *Scheduler) {
			s.ready = []*entityQueue{{}}
			s.finishing = make([]finishing, lingerRuns)
		}, want: 0},
		{
			name: "runs become done",
			busy: func(s *Scheduler) { s.ready = []*entityQueue{{}} },
			during: func(s *Scheduler, _ chan struct{}) {
				for range lingerRuns {
					time.Sleep(10 * time.Microsecond)
					s.mu.Lock()
					s.finishing = append(s.finishing, finishing{})
					s.mu.Unlock()
					signal(s.finWake)
				}
			},
			want: lingerRuns * 10 * time.Microsecond,
		},
		{
			name: "the queued work is taken, a run is done",
			busy: func(s *Scheduler) { s.ready = []*entityQueue{{}} },
			during: func(s *Scheduler, _ chan struct{}) {
				time.Sleep(10 * time.Microsecond)
				s.mu.Lock()
				s.ready = s.ready[:0]
				s.finishing = append(s.finishing, finishing{})
				s.mu.Unlock()
				signal(s.finWake)
			},
			want: 10 * time.Microsecond,
		},
		{name: "a batch smaller than lingerRuns done", busy: func(s *Scheduler) {
			s.cfg.Batch = 4
			s.ready = []*entityQueue{{}}
			s.finishing = make([]finishing, 4)
		}, want: 0},
		{
			name: "stop closed",
			busy: func(s *Scheduler) { s.ready = []*entityQueue{{}} },
			during: func(_ *Scheduler, stop chan struct{}) {
				time.Sleep(100 * time.Microsecond)
				close(stop)
			},
			want: 100 * time.Microsecond,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, stop := newSched(), make(chan struct{})
				tc.busy(s)
				if tc.during != nil {
					go tc.during(s, stop)
				}
				start := time.Now()
				s.linger(stop)
				if got := time.Since(start); got != tc.want {
					t.Errorf("linger returned after %v, want %v", got, tc.want)
				}
				synctest.Wait()
			})
		})
	}
}

// sleepyProc is a RunProcessor whose every step takes step and whose
// Finish takes finish (fake time under synctest); a run whose event id is
// in notDone is due again after retry at its first step, done at the
// second.
type sleepyProc struct {
	step, finish, retry time.Duration
	notDone             map[string]bool
	mu                  sync.Mutex
	steps               map[*Run]int
}

func (p *sleepyProc) Start(_ context.Context, rec ports.Record) *Run { return &Run{Record: rec} }
func (p *sleepyProc) Prepare(context.Context, ...*Run)               {}
func (p *sleepyProc) Step(_ context.Context, run *Run) (time.Time, bool) {
	time.Sleep(p.step)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps[run]++
	if p.notDone[run.Record.Event.ID] && p.steps[run] == 1 {
		return time.Now().Add(p.retry), false
	}
	return time.Time{}, true
}
func (p *sleepyProc) Finish(context.Context, ...*Run)           { time.Sleep(p.finish) }
func (p *sleepyProc) Abandon(context.Context, *Run)             {}
func (p *sleepyProc) GiveUp(context.Context, *Run, string) bool { return true }

// runSleepy runs a batching scheduler with workers over p, hands it
// perEntity events of each of entities (ids "E-I"), and returns when each
// event was finished, from the start.
func runSleepy(t *testing.T, p *sleepyProc, workers, entities, perEntity int) map[string]time.Duration {
	t.Helper()
	s, err := NewScheduler(p, SchedulerConfig{MaxConcurrent: workers, Batch: 128, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s.Begin()
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	var mu sync.Mutex
	var finished sync.WaitGroup
	at := map[string]time.Duration{}
	start := time.Now()
	for i := range perEntity {
		for e := range entities {
			finished.Add(1)
			id := fmt.Sprintf("%d-%d", e, i)
			s.Handle(ports.Record{Event: domain.Event{ID: id, EntityType: "Order", EntityID: fmt.Sprint(e)}}, func() {
				mu.Lock()
				at[id] = time.Since(start)
				mu.Unlock()
				finished.Done()
			})
		}
	}
	finished.Wait()
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	return at
}

// With fewer busy entities than lingerRuns (more than the workers), an
// entity's next event is runnable only once the finisher finished the one
// before: the finisher must not linger once the queued work is gone (it
// did, lingerMax per round of events), and a step that is not done wakes
// it to see that (no run's end may follow for long).
func TestSchedulerLingerFewEntities(t *testing.T) {
	t.Parallel()
	t.Run("every step done", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const entities, perEntity = 8, 20
			p := &sleepyProc{step: 50 * time.Microsecond, finish: 200 * time.Microsecond, steps: map[*Run]int{}}
			at := runSleepy(t, p, 4, entities, perEntity)
			last := slices.Max(slices.Collect(maps.Values(at)))
			// Per round (an event of each entity): two steps per worker
			// and a Finish, 300 µs, against more than lingerMax when the
			// finisher lingers.
			if limit := perEntity * 500 * time.Microsecond; last > limit {
				t.Errorf("%d events of %d entities took %v, want at most %v (the finisher lingered with nothing queued)", entities*perEntity, entities, last, limit)
			}
		})
	})
	t.Run("a step not done wakes the finisher", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// When the last queued step is not done (due again later),
			// no run's end wakes a lingering finisher: the step does, so
			// that it sees nothing queued any more.
			p := &sleepyProc{notDone: map[string]bool{"x": true}, retry: time.Hour, steps: map[*Run]int{}}
			s, err := NewScheduler(p, SchedulerConfig{Batch: 128, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			q := &entityQueue{first: queuedRun{rec: ports.Record{Event: domain.Event{ID: "x"}}}}
			q.runs = []*queuedRun{&q.first}
			s.process(t.Context(), t.Context(), q)
			select {
			case <-s.finWake:
			default:
				t.Error("a step that was not done did not wake the finisher")
			}
			s.mu.Lock()
			if len(s.timers) != 1 {
				t.Errorf("%d retry timers, want 1", len(s.timers))
			}
			for _, tm := range s.timers {
				tm.Stop()
			}
			s.mu.Unlock()
		})
	})
}
