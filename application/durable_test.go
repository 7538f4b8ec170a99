package application_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// durableBundle is a processor and a retry runner over one memory retry
// store, on a settable clock.
type durableBundle struct {
	clock   *testsupport.Clock
	dead    *memory.DeadLetters
	store   *parkLog
	blocked *application.BlockedKeys
	proc    *application.Processor
	runner  *application.RetryRunner
	calls   *callLog
	fail    *switchable
}

// switchable answers every attempt with its current error (nil: success).
type switchable struct {
	mu  sync.Mutex
	err error
}

func (s *switchable) set(err error) { s.mu.Lock(); s.err = err; s.mu.Unlock() }
func (s *switchable) get() error    { s.mu.Lock(); defer s.mu.Unlock(); return s.err }

// parkLog is the memory retry store recording what the runner settles.
type parkLog struct {
	*memory.Retries
	mu          sync.Mutex
	rescheduled []ports.RetryAction
	// loseAnswer makes the next Park commit and report an error (its
	// answer lost), as a connection that drops after the commit does.
	loseAnswer atomic.Bool
	// refuse makes Park of this event id fail for good, storing nothing
	// (a value the store cannot hold).
	refuse atomic.Value
}

func (p *parkLog) Park(ctx context.Context, it ports.RetryItem) (ports.RetryItem, bool, error) {
	if id, _ := p.refuse.Load().(string); id != "" && id == it.Event.ID {
		return ports.RetryItem{}, false, domain.Permanent(errors.New("park: unsupported Unicode escape sequence (22P05)"))
	}
	stored, created, err := p.Retries.Park(ctx, it)
	if err == nil && p.loseAnswer.CompareAndSwap(true, false) {
		return ports.RetryItem{}, false, fmt.Errorf("park: connection lost after the commit: %w", ports.ErrUnavailable)
	}
	if err == nil {
		p.mu.Lock()
		p.rescheduled = append(p.rescheduled, ports.RetryAction{Due: stored.Due})
		p.mu.Unlock()
	}
	return stored, created, err
}

func (p *parkLog) Reschedule(ctx context.Context, id int64, holder string, actions []ports.RetryAction, dead []ports.DeadLetter) error {
	p.mu.Lock()
	p.rescheduled = append(p.rescheduled, actions...)
	p.mu.Unlock()
	return p.Retries.Reschedule(ctx, id, holder, actions, dead)
}

func (p *parkLog) lastDue(t testing.TB) time.Time {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.rescheduled) == 0 {
		t.Fatal("nothing rescheduled")
	}
	return p.rescheduled[len(p.rescheduled)-1].Due
}

func newDurable(t testing.TB, obs []domain.Observer) *durableBundle {
	t.Helper()
	return newDurableWith(t, obs, application.NewBlockedKeys())
}

// newDurableWith is newDurable over blocked.
func newDurableWith(t testing.TB, obs []domain.Observer, blocked *application.BlockedKeys) *durableBundle {
	t.Helper()
	b := &durableBundle{clock: newClock(), blocked: blocked, fail: &switchable{}}
	b.dead = memory.NewDeadLetters(b.clock.Now)
	b.store = &parkLog{Retries: memory.NewRetries(b.dead, b.clock.Now)}
	var exec ports.ActionExecutorFunc
	exec, b.calls = recording(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return b.fail.get() })
	b.proc = newProcessor(t, obs, exec, b.dead, application.ProcessorConfig{
		Now: b.clock.Now, Jitter: func() float64 { return 0 }, Retries: b.store, Blocked: b.blocked,
	})
	var err error
	b.runner, err = application.NewRetryRunner(b.store, exec, b.proc.Matcher, application.RetryRunnerConfig{
		Holder: "test", Blocked: b.blocked, Logger: discardLogger(), Now: b.clock.Now, Jitter: func() float64 { return 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// process runs ev through the processor to the end, moving the clock to
// each step's due time; it returns the run and the number of steps.
func (b *durableBundle) process(t testing.TB, ev domain.Event) *application.Run {
	t.Helper()
	run := b.proc.Start(t.Context(), record(1, ev))
	for range 100 {
		next, done := b.proc.Step(t.Context(), run)
		if done {
			b.proc.Finish(t.Context(), run)
			return run
		}
		b.clock.Set(next)
	}
	t.Fatalf("event %s not finished after 100 steps", ev.ID)
	return nil
}

func (b *durableBundle) counts(t testing.TB) ports.RetryCounts {
	t.Helper()
	c, err := b.store.Counts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (b *durableBundle) runDue(t testing.TB) int {
	t.Helper()
	n, err := b.runner.RunDue(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func durableObserver(name, entity string, inMemory int, actions ...string) domain.Observer {
	o := observer(name, entity, actions...)
	o.Retry = domain.RetryPolicy{MaxAge: time.Hour, InitialDelay: time.Second, MaxDelay: time.Minute,
		Backoff: domain.BackoffExponential, InMemoryAttempts: inMemory}
	return o
}

// orderKey is the entity key of Order id.
func orderKey(id string) string { return event("", "Order", id, nil).EntityKey() }

var errDown = domain.Transient(errors.New("connection refused"), 0)

func TestProcessorParksAfterInMemoryAttempts(t *testing.T) {
	t.Parallel()
	b := newDurable(t, []domain.Observer{durableObserver("hooks", "Order", 3, "a", "b")})
	b.fail.set(errDown)
	start := b.clock.Now()
	run := b.process(t, event("e1", "Order", "1", nil))

	if n := b.calls.len(); n != 6 {
		t.Errorf("%d attempts before parking, want 3 per action (in_memory_attempts)", n)
	}
	if run.Summary.ParkedActions != 2 || run.Pending() != 0 {
		t.Errorf("summary %+v, pending %d: want both actions parked and the event finished", run.Summary, run.Pending())
	}
	c := b.counts(t)
	if c.Due != 1 || c.Waiting != 0 || c.ByObserver["hooks"] != 1 {
		t.Fatalf("store %+v, want one due item for hooks", c)
	}
	if !b.blocked.Has("hooks", orderKey("1")) {
		t.Error("the parked key is not blocked")
	}
	// The item carries each action's attempts, error, first failure and
	// the policy's due time for the fourth attempt.
	retry := durableObserver("hooks", "Order", 3).Retry
	wantDue := start.Add(retry.Delay(1, 0) + retry.Delay(2, 0) + retry.Delay(3, 0))
	got, err := b.store.ClaimDue(t.Context(), ports.RetryClaim{Holder: "x", Now: b.clock.Now().Add(time.Hour), TTL: time.Minute}, 10, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("ClaimDue = %v, %v", got, err)
	}
	for _, a := range got[0].Actions {
		if a.Attempts != 3 || a.LastError == "" || !a.FirstFailure.Equal(start) || !a.Due.Equal(wantDue) {
			t.Errorf("parked action %+v: want 3 attempts, the error, first failure %v, due %v", a, start, wantDue)
		}
	}
}

func TestProcessorHoldsLaterEventsOfAParkedKey(t *testing.T) {
	t.Parallel()
	b := newDurable(t, []domain.Observer{durableObserver("hooks", "Order", 1, "a"), durableObserver("audit", "Order", 1, "a")})
	b.fail.set(errDown)
	b.process(t, event("e1", "Order", "1", nil)) // both observers park e1 after one attempt
	b.fail.set(nil)
	before := b.calls.len()

	run := b.process(t, event("e2", "Order", "1", nil))
	if n := b.calls.len() - before; n != 0 {
		t.Fatalf("e2 of a parked entity made %d attempts, want none (held behind e1)", n)
	}
	if run.Summary.ParkedActions != 2 {
		t.Errorf("e2 summary %+v, want both observers' actions parked", run.Summary)
	}
	if c := b.counts(t); c.Due != 2 || c.Waiting != 2 {
		t.Fatalf("store %+v, want e1 due and e2 waiting for each observer", c)
	}
	b.process(t, event("e3", "Order", "2", nil)) // another entity is not held back
	if n := b.calls.len() - before; n != 2 {
		t.Fatalf("e3 of another entity made %d attempts, want 2", n)
	}

	// The runner delivers e1 then e2 per observer, and releases the key.
	b.clock.Advance(time.Minute)
	if n := b.runDue(t); n != 4 {
		t.Errorf("runner ran %d items, want 4", n)
	}
	var order []string
	for _, c := range b.calls.all()[before+2:] {
		order = append(order, c.Observer+"@"+c.EventID)
	}
	for _, obs := range []string{"hooks", "audit"} {
		if i, j := slices.Index(order, obs+"@e1"), slices.Index(order, obs+"@e2"); i < 0 || j < i {
			t.Errorf("runner order %v: %s's e1 must run before its e2", order, obs)
		}
	}
	if b.blocked.Has("hooks", orderKey("1")) || b.blocked.Has("audit", orderKey("1")) {
		t.Error("keys still blocked after their items completed")
	}
	before = b.calls.len()
	b.process(t, event("e4", "Order", "1", nil))
	if n := b.calls.len() - before; n != 2 {
		t.Errorf("e4 after the key was released made %d attempts, want 2 (run directly)", n)
	}
}

func TestProcessorParksWithoutAnAttemptWhenTheEndpointIsDown(t *testing.T) {
	t.Parallel()
	b := newDurable(t, []domain.Observer{durableObserver("hooks", "Order", 3, "a")})
	b.fail.set(&domain.DeferredError{Endpoint: "https://x:443", Reason: domain.DeferOpen, Until: b.clock.Now().Add(30 * time.Second)})
	run := b.process(t, event("e1", "Order", "1", nil))
	if run.Summary.ParkedActions != 1 || run.Summary.FailedActions != 0 {
		t.Fatalf("summary %+v, want the action parked, no failure", run.Summary)
	}
	got, err := b.store.ClaimDue(t.Context(), ports.RetryClaim{Holder: "x", Now: b.clock.Now().Add(30 * time.Second), TTL: time.Minute}, 10, nil)
	if err != nil || len(got) != 1 || got[0].Actions[0].Attempts != 0 {
		t.Fatalf("parked %+v, %v: want one item with no attempt counted, due at the next probe", got, err)
	}
}

func TestProcessorDeferredByRateStaysInMemoryWithoutAnAttempt(t *testing.T) {
	t.Parallel()
	b := newDurable(t, []domain.Observer{durableObserver("hooks", "Order", 1, "a")})
	until := b.clock.Now().Add(200 * time.Millisecond)
	b.fail.set(&domain.DeferredError{Endpoint: "https://x:443", Reason: domain.DeferRate, Until: until})
	run := b.proc.Start(t.Context(), record(1, event("e1", "Order", "1", nil)))
	next, done := b.proc.Step(t.Context(), run)
	if done || !next.Equal(until) {
		t.Fatalf("Step = %v, %v; want not done, next at the deferral %v", next, done, until)
	}
	b.fail.set(nil)
	b.clock.Set(until)
	if _, done := b.proc.Step(t.Context(), run); !done {
		t.Fatal("not done after the deferral passed")
	}
	if run.Summary.Actions[len(run.Summary.Actions)-1].Attempt != 1 {
		t.Errorf("summary %+v: the deferral counted as an attempt", run.Summary.Actions)
	}
	if c := b.counts(t); c.Due+c.Waiting != 0 {
		t.Errorf("a rate deferral parked an item: %+v", c)
	}
}

// failingPark is a retry store whose Park fails.
type failingPark struct{ ports.RetryStore }

func (failingPark) Park(context.Context, ports.RetryItem) (ports.RetryItem, bool, error) {
	return ports.RetryItem{}, false, fmt.Errorf("park: %w", ports.ErrUnavailable)
}

func TestProcessorRetriesInMemoryWhenParkingFails(t *testing.T) {
	t.Parallel()
	clock := newClock()
	fail := &switchable{err: errDown}
	exec, calls := recording(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return fail.get() })
	p := newProcessor(t, []domain.Observer{durableObserver("hooks", "Order", 1, "a")}, exec, memory.NewDeadLetters(clock.Now),
		application.ProcessorConfig{Now: clock.Now, Jitter: func() float64 { return 0 }, Retries: failingPark{}, Blocked: application.NewBlockedKeys()})
	run := p.Start(t.Context(), record(1, event("e1", "Order", "1", nil)))
	next, done := p.Step(t.Context(), run)
	if done {
		t.Fatal("the event finished although parking failed: it would be lost")
	}
	fail.set(nil)
	clock.Set(next)
	if _, done := p.Step(t.Context(), run); !done || calls.len() != 2 {
		t.Fatalf("done %v after %d attempts, want the in-memory retry to deliver it", done, calls.len())
	}
}

func TestRetryRunnerDeadLettersWhenThePolicyEnds(t *testing.T) {
	t.Parallel()
	obs := durableObserver("hooks", "Order", 1, "a")
	obs.Retry.MaxAge = 10 * time.Minute
	b := newDurable(t, []domain.Observer{obs})
	b.fail.set(errDown)
	b.process(t, event("e1", "Order", "1", nil))
	b.process(t, event("e2", "Order", "1", nil)) // held behind e1
	for i := 0; b.counts(t).Due+b.counts(t).Waiting > 1 && i < 100; i++ {
		b.clock.Advance(time.Minute)
		b.runDue(t)
	}
	dls, err := b.dead.List(t.Context(), ports.DeadLetterFilter{})
	if err != nil || len(dls) != 1 || dls[0].Event.ID != "e1" || dls[0].Observer != "hooks" || dls[0].Action != "a" || dls[0].Attempts < 5 {
		t.Fatalf("dead letters %+v, %v: want e1's action after its attempts", dls, err)
	}
	c := b.counts(t)
	if c.Due != 1 || c.Waiting != 0 {
		t.Fatalf("store %+v: e2 should be the key's due head now", c)
	}
}

// TestRetryScheduleOverADayThroughTheRunner runs the default policy end to
// end on a settable clock: three quick attempts in memory, then parked
// attempts at the policy's times until a day has passed since the first
// failure, then the dead-letter queue. No gap exceeds an hour.
func TestRetryScheduleOverADayThroughTheRunner(t *testing.T) {
	t.Parallel()
	obs := observer("hooks", "Order", "a")
	obs.Retry = domain.DefaultRetryPolicy
	b := newDurable(t, []domain.Observer{obs})
	b.fail.set(errDown)
	start := b.clock.Now()
	times := []time.Time{}
	b.process(t, event("e1", "Order", "1", nil))
	if n := b.calls.len(); n != 3 {
		t.Fatalf("%d attempts in memory, want 3", n)
	}
	times = append(times, start)
	for range 200 {
		c := b.counts(t)
		if c.Due == 0 {
			break
		}
		b.clock.Set(b.store.lastDue(t)) // parked, then rescheduled at the policy's times
		before := b.calls.len()
		if b.runDue(t) != 1 || b.calls.len() != before+1 {
			t.Fatalf("at %v the runner made %d attempts, want 1", b.clock.Now().Sub(start), b.calls.len()-before)
		}
		times = append(times, b.clock.Now())
	}
	if c := b.counts(t); c.Due+c.Waiting != 0 {
		t.Fatalf("still parked after the schedule: %+v", c)
	}
	last := times[len(times)-1].Sub(start)
	if last < 24*time.Hour || last >= 25*time.Hour {
		t.Errorf("last attempt %v after the first failure, want within [24h, 25h)", last)
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap > time.Hour {
			t.Errorf("gap %d = %v exceeds max_delay", i, gap)
		}
	}
	dls, err := b.dead.List(t.Context(), ports.DeadLetterFilter{})
	if err != nil || len(dls) != 1 || dls[0].Attempts != b.calls.len() {
		t.Fatalf("dead letters %+v, %v: want one with all %d attempts", dls, err, b.calls.len())
	}
	if b.blocked.Has("hooks", orderKey("1")) {
		t.Error("the key stays blocked after its item was dead-lettered")
	}
}

func TestRetryRunnerDeadLettersActionsNoLongerConfigured(t *testing.T) {
	t.Parallel()
	b := newDurable(t, []domain.Observer{durableObserver("hooks", "Order", 1, "a")})
	b.fail.set(errDown)
	b.process(t, event("e1", "Order", "1", nil))
	b.proc.SetMatcher(domain.NewMatcher([]domain.Observer{durableObserver("hooks", "Order", 1, "renamed")}))
	b.clock.Advance(time.Hour)
	before := b.calls.len()
	b.runDue(t)
	if b.calls.len() != before {
		t.Error("the runner ran an action that is no longer configured")
	}
	dls, err := b.dead.List(t.Context(), ports.DeadLetterFilter{})
	if err != nil || len(dls) != 1 || dls[0].Action != "a" {
		t.Fatalf("dead letters %+v, %v: want the orphaned action", dls, err)
	}
}

// TestProcessorHoldsParkedKeysPastTheExactBound: with more parked keys
// than the exact bound, counted by the processor and then loaded from
// the store at a new term, every key's later events are still held
// behind its parked ones, and delivered in order once the receiver is
// back; afterwards nothing is blocked.
func TestProcessorHoldsParkedKeysPastTheExactBound(t *testing.T) {
	t.Parallel()
	const entities = 50
	for _, load := range []bool{false, true} {
		t.Run(fmt.Sprintf("loaded=%v", load), func(t *testing.T) {
			t.Parallel()
			blocked := application.NewBlockedKeysWithLimits(application.BlockedKeysLimits{MaxKeys: 3, Counters: 1 << 12})
			b := newDurableWith(t, []domain.Observer{durableObserver("hooks", "Order", 1, "a")}, blocked)
			b.fail.set(errDown)
			for k := range entities {
				b.process(t, event(fmt.Sprintf("e%d-0", k), "Order", fmt.Sprint(k), nil))
			}
			if load {
				if err := blocked.Load(t.Context(), b.store); err != nil {
					t.Fatal(err)
				}
			}
			if n := blocked.Spilled(); n != entities-3 {
				t.Fatalf("%d items counted past the bound, want %d", n, entities-3)
			}
			b.fail.set(nil)
			before := b.calls.len()
			for k := range entities {
				b.process(t, event(fmt.Sprintf("e%d-1", k), "Order", fmt.Sprint(k), nil))
			}
			if n := b.calls.len() - before; n != 0 {
				t.Fatalf("later events of parked entities made %d attempts, want none (held)", n)
			}
			b.clock.Advance(time.Minute)
			for range 10 {
				if b.runDue(t) == 0 {
					break
				}
			}
			first := map[string]int{}
			for i, c := range b.calls.all()[before:] {
				first[c.EventID] = i + 1
			}
			for k := range entities {
				e0, e1 := first[fmt.Sprintf("e%d-0", k)], first[fmt.Sprintf("e%d-1", k)]
				if e0 == 0 || e1 == 0 || e1 < e0 {
					t.Fatalf("entity %d: e0 delivered at %d, e1 at %d (0: never); want both, e0 first", k, e0, e1)
				}
			}
			if n := blocked.Len(); n != 0 {
				t.Errorf("%d keys or items still blocked after every item completed", n)
			}
			before = b.calls.len()
			b.process(t, event("later", "Order", "7", nil))
			if n := b.calls.len() - before; n != 1 {
				t.Errorf("an event after the keys were released made %d attempts, want 1 (run directly)", n)
			}
		})
	}
}

// TestProcessorKeepsTheCountOfAParkWhoseAnswerWasLost: a park that
// committed but answered with an error leaves its key counted, so the
// entity's later events wait behind the parked item; parking the event
// again (the store already has it) takes no second count, and once the
// runner completes the item the key is free.
func TestProcessorKeepsTheCountOfAParkWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	b := newDurable(t, []domain.Observer{durableObserver("hooks", "Order", 1, "a")})
	b.fail.set(errDown)
	b.store.loseAnswer.Store(true)
	run := b.proc.Start(t.Context(), record(1, event("e1", "Order", "1", nil)))
	next, done := b.proc.Step(t.Context(), run) // one attempt, then the park whose answer is lost
	if done {
		t.Fatal("e1 finished although its park reported an error")
	}
	if c := b.counts(t); c.Due != 1 {
		t.Fatalf("store %+v, want e1 parked (the park committed)", c)
	}
	if !b.blocked.Has("hooks", orderKey("1")) {
		t.Fatal("the key of an item parked by a park that reported an error is not blocked: later events would pass it")
	}
	b.fail.set(nil)
	before := b.calls.len()
	b.process(t, event("e2", "Order", "1", nil))
	if n := b.calls.len() - before; n != 0 {
		t.Fatalf("e2 made %d attempts, want none (held behind e1)", n)
	}
	b.fail.set(errDown)
	b.clock.Set(next)
	if _, done := b.proc.Step(t.Context(), run); !done { // fails again and parks again: the store has it
		t.Fatal("e1 not finished by its second park")
	}
	b.fail.set(nil)
	b.clock.Advance(time.Hour)
	for range 5 {
		if b.runDue(t) == 0 {
			break
		}
	}
	if c := b.counts(t); c.Due+c.Waiting != 0 {
		t.Fatalf("store %+v after the runner, want empty", c)
	}
	if b.blocked.Has("hooks", orderKey("1")) {
		t.Error("the key is still blocked after its items completed (counted twice)")
	}
}

// TestProcessorDeadLettersWhatTheRetryStoreRefuses: an event held behind
// a parked one whose own item the store refuses for good (a NUL in a jsonb
// column) is dead-lettered, not re-parked without end; the parked event
// keeps its key blocked, and the key is free once it completes.
func TestProcessorDeadLettersWhatTheRetryStoreRefuses(t *testing.T) {
	t.Parallel()
	b := newDurable(t, []domain.Observer{durableObserver("hooks", "Order", 1, "a")})
	b.fail.set(errDown)
	b.process(t, event("e1", "Order", "1", nil)) // parked
	b.fail.set(nil)
	b.store.refuse.Store("e2")
	before := b.calls.len()
	run := b.process(t, event("e2", "Order", "1", nil)) // held, refused, dead-lettered: process fails after 100 steps otherwise
	if n := b.calls.len() - before; n != 0 {
		t.Errorf("e2 made %d attempts, want none (held behind e1)", n)
	}
	if run.Summary.FinalFailures != 1 || len(run.Summary.Actions) == 0 || run.Summary.Actions[len(run.Summary.Actions)-1].Outcome != domain.OutcomeDeadLettered {
		t.Errorf("e2 summary %+v, want its action reported dead-lettered", run.Summary)
	}
	if n, err := b.dead.Count(t.Context()); err != nil || n != 1 {
		t.Errorf("dead letters %d (%v), want e2's", n, err)
	}
	if !b.blocked.Has("hooks", orderKey("1")) {
		t.Fatal("the key is free while e1 is parked")
	}
	b.clock.Advance(time.Hour)
	b.runDue(t)
	if b.blocked.Has("hooks", orderKey("1")) || b.blocked.Len() != 0 {
		t.Errorf("the key is still blocked (Len %d) after e1 completed", b.blocked.Len())
	}
}

// TestProcessorCountsAReparkAfterTheRunnerCompletedTheLostOne: a park
// whose answer was lost stored the item; the runner completes it (its
// count spent) while the event is retried in memory, fails, and is parked
// again as a new item: that item is counted, so the entity's later events
// wait behind it.
func TestProcessorCountsAReparkAfterTheRunnerCompletedTheLostOne(t *testing.T) {
	t.Parallel()
	b := newDurable(t, []domain.Observer{durableObserver("hooks", "Order", 1, "a")})
	b.fail.set(errDown)
	b.store.loseAnswer.Store(true)
	run := b.proc.Start(t.Context(), record(1, event("e1", "Order", "1", nil)))
	next, done := b.proc.Step(t.Context(), run) // the park's answer is lost; back to memory
	if done {
		t.Fatal("e1 finished although its park reported an error")
	}
	b.fail.set(nil)
	b.clock.Advance(time.Minute)  // within the policy's max_age of an hour
	if n := b.runDue(t); n != 1 { // the runner delivers the stored item and completes it
		t.Fatalf("runner ran %d items, want the lost park's", n)
	}
	b.fail.set(errDown)
	b.clock.Set(later(next, b.clock.Now()))
	if _, done := b.proc.Step(t.Context(), run); !done { // fails again, parked anew
		t.Fatal("e1 not finished by its second park")
	}
	if c := b.counts(t); c.Due+c.Waiting != 1 {
		t.Fatalf("store %+v, want the new item", c)
	}
	if !b.blocked.Has("hooks", orderKey("1")) {
		t.Fatal("the new item's key is free: the entity's later events would pass it")
	}
}

// TestProcessorSendsAFalsePositiveThroughTheStore: an entity the spill
// table takes for a blocked one (with 4 counters every key is) is parked
// behind nothing, due at once, and delivered by the runner without waiting
// for the blocked entity.
func TestProcessorSendsAFalsePositiveThroughTheStore(t *testing.T) {
	t.Parallel()
	blocked := application.NewBlockedKeysWithLimits(application.BlockedKeysLimits{MaxKeys: 1, Counters: 4})
	b := newDurableWith(t, []domain.Observer{durableObserver("hooks", "Order", 1, "a")}, blocked)
	b.fail.set(errDown)
	b.process(t, event("a", "Order", "1", nil)) // counted exactly
	b.process(t, event("b", "Order", "2", nil)) // spilled
	b.fail.set(nil)
	before := b.calls.len()
	if !blocked.Has("hooks", orderKey("3")) {
		t.Fatal("with 4 counters every key should be taken for a blocked one")
	}
	run := b.process(t, event("c", "Order", "3", nil))
	if n := b.calls.len() - before; n != 0 || run.Summary.ParkedActions != 1 {
		t.Fatalf("c made %d attempts, summary %+v; want it held (parked)", n, run.Summary)
	}
	if n := blocked.Spilled(); n != 2 {
		t.Fatalf("%d items counted in the table, want b and c", n)
	}
	if c := b.counts(t); c.Due != 3 || c.Waiting != 0 {
		t.Fatalf("store %+v, want a, b and c due (c waits behind nothing)", c)
	}
	b.runDue(t) // without moving the clock: c is due now
	if got := b.calls.all()[before:]; len(got) != 1 || got[0].EventID != "c" {
		t.Fatalf("the runner at once delivered %v, want c alone (a and b wait for their backoff)", got)
	}
	if !blocked.Has("hooks", orderKey("2")) || blocked.Spilled() != 1 {
		t.Fatalf("after c completed: Order:2 blocked %v, %d items in the table; want b still counted there alone",
			blocked.Has("hooks", orderKey("2")), blocked.Spilled())
	}
	b.clock.Advance(time.Minute)
	if n := b.runDue(t); n != 2 {
		t.Fatalf("runner ran %d items after the backoff, want a and b", n)
	}
	if blocked.Len() != 0 || blocked.Has("hooks", orderKey("3")) {
		t.Errorf("Len %d after every item completed, want 0 and nothing blocked", blocked.Len())
	}
}

// TestRetryRunnerRunsConcurrentlyAndWakes runs the runner for real: items
// parked for several keys are delivered once the receiver is back.
func TestRetryRunnerRunsConcurrentlyAndWakes(t *testing.T) {
	t.Parallel()
	dead := memory.NewDeadLetters(nil)
	store := memory.NewRetries(dead, nil)
	var mu sync.Mutex
	delivered := map[string][]string{}
	exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		mu.Lock()
		delivered[ev.EntityID] = append(delivered[ev.EntityID], ev.ID)
		mu.Unlock()
		return nil
	})
	obs := []domain.Observer{durableObserver("hooks", "Order", 1, "a")}
	m := domain.NewMatcher(obs)
	blocked := application.NewBlockedKeys()
	r, err := application.NewRetryRunner(store, exec, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "h", Logger: discardLogger(), PollInterval: time.Hour, Concurrency: 3, BatchSize: 2, Blocked: blocked,
	})
	if err != nil {
		t.Fatal(err)
	}
	bg := runInBackground(t, r.Run)
	const keys, per = 5, 4
	for k := range keys {
		for i := range per {
			ev := event(fmt.Sprintf("k%d-%d", k, i), "Order", fmt.Sprint(k), nil)
			blocked.Add("hooks", ev.EntityKey()) // before the store, as the processor does: the runner may complete it at once
			parkNow(t, store, ev)
		}
	}
	r.Wake()
	eventually(t, "every parked item delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, ids := range delivered {
			n += len(ids)
		}
		return n == keys*per
	})
	for k := range keys {
		want := []string{}
		for i := range per {
			want = append(want, fmt.Sprintf("k%d-%d", k, i))
		}
		mu.Lock()
		got := delivered[fmt.Sprint(k)]
		mu.Unlock()
		if !slices.Equal(got, want) {
			t.Errorf("entity %d delivered %v, want %v in order", k, got, want)
		}
	}
	// A key is unblocked once its last item is completed in the store,
	// just after its action returned: wait for it.
	eventually(t, "every key unblocked", func() bool { return blocked.Len() == 0 })
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
}

// claimCutOff is a retry store whose ClaimDue commits its claim even when
// the caller's context ends while it is in flight, as PostgreSQL's does
// (the UPDATE commits, the client stops reading the answer): it waits a
// little, or for the context, claims, and reports the context's error if
// it ended.
type claimCutOff struct {
	ports.RetryStore
	inFlight chan struct{}
}

func (s *claimCutOff) ClaimDue(ctx context.Context, c ports.RetryClaim, limit int, skip []string) ([]ports.RetryItem, error) {
	select {
	case s.inFlight <- struct{}{}:
	default:
	}
	select {
	case <-ctx.Done():
	case <-time.After(100 * time.Millisecond):
	}
	items, err := s.RetryStore.ClaimDue(context.WithoutCancel(ctx), c, limit, skip)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return items, err
}

// TestRetryRunnerStoppedDuringAClaimLeavesNothingClaimed: a runner
// stopped while a claim is in flight leaves no item claimed: another
// runner (the restarted process) takes them at once, not after the claim
// TTL, which would hold the keys' later events back for as long.
func TestRetryRunnerStoppedDuringAClaimLeavesNothingClaimed(t *testing.T) {
	t.Parallel()
	dead := memory.NewDeadLetters(nil)
	mem := memory.NewRetries(dead, nil)
	store := &claimCutOff{RetryStore: mem, inFlight: make(chan struct{}, 1)}
	exec, calls := recording(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	obs := []domain.Observer{durableObserver("hooks", "Order", 1, "a")}
	m := domain.NewMatcher(obs)
	const n = 3
	for i := range n {
		ev := event(fmt.Sprintf("e%d", i), "Order", fmt.Sprint(i), nil)
		parkNow(t, mem, ev)
	}
	r, err := application.NewRetryRunner(store, exec, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "stopped", Logger: discardLogger(), PollInterval: time.Hour, ClaimTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	bg := runInBackground(t, r.Run)
	<-store.inFlight
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
	got, err := mem.ClaimDue(t.Context(), ports.RetryClaim{Holder: "restarted", Now: time.Now(), TTL: time.Minute}, 10, nil)
	if err != nil || len(got) != n {
		t.Fatalf("after the runner stopped during a claim, another runner claimed %d items (%v), want all %d: none may stay claimed by the stopped runner", len(got), err, n)
	}
	if c := calls.all(); len(c) != 0 {
		t.Errorf("the stopped runner ran %d actions, want none", len(c))
	}
}

// claimAnswerLost is a retry store whose ClaimDue calls that claim
// something, numbered in lose (from 1), commit their claim and then fail,
// as a PostgreSQL ClaimDue does when the connection drops after the UPDATE
// committed and before its answer was read.
type claimAnswerLost struct {
	ports.RetryStore
	mu    sync.Mutex
	calls int // that claimed something
	lose  map[int]bool
	lost  []string // the holders of the calls that failed
}

func (s *claimAnswerLost) ClaimDue(ctx context.Context, c ports.RetryClaim, limit int, skip []string) ([]ports.RetryItem, error) {
	items, err := s.RetryStore.ClaimDue(ctx, c, limit, skip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(items) == 0 {
		return items, err
	}
	s.calls++
	if s.lose[s.calls] {
		s.lost = append(s.lost, c.Holder)
		return nil, errors.New("read claimed retries: connection reset by peer")
	}
	return items, err
}

// TestRetryRunnerReleasesAClaimWhoseAnswerWasLost: when ClaimDue fails
// after the store committed its claim, the runner releases what that call
// claimed, so the items run at the next look (not after ClaimTTL, an hour
// here, holding their keys back as long), while an item claimed by an
// earlier call and still running keeps its claim and settles.
func TestRetryRunnerReleasesAClaimWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	mem := memory.NewRetries(memory.NewDeadLetters(nil), nil)
	store := &claimAnswerLost{RetryStore: mem, lose: map[int]bool{2: true}}
	running, finish := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var delivered []string
	exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		if ev.ID == "slow" {
			close(running)
			<-finish
		}
		mu.Lock()
		delivered = append(delivered, ev.ID)
		mu.Unlock()
		return nil
	})
	obs := []domain.Observer{durableObserver("hooks", "Order", 1, "a")}
	m := domain.NewMatcher(obs)
	parkNow(t, mem, event("slow", "Order", "1", nil))
	r, err := application.NewRetryRunner(store, exec, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "p", Logger: discardLogger(), PollInterval: 20 * time.Millisecond, ClaimTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	bg := runInBackground(t, r.Run)
	<-running // call 1 claimed "slow", which now runs
	parkNow(t, mem, event("lost", "Order", "2", nil))
	r.Wake() // call 2 claims "lost" and loses the answer
	eventually(t, `"lost" delivered while "slow" still runs`, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Equal(delivered, []string{"lost"})
	})
	close(finish)
	eventually(t, "every item completed", func() bool {
		keys, err := countKeys(t.Context(), mem)
		return err == nil && keys == 0
	})
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.lost) != 1 || !strings.HasPrefix(store.lost[0], "p/") {
		t.Errorf("holders of the failed claims = %q, want one of the runner's own (p/...)", store.lost)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"lost", "slow"}; !slices.Equal(delivered, want) {
		t.Errorf("delivered %v, want %v, each once", delivered, want)
	}
}

// completeAnswerLost is a retry store whose first Complete commits and
// then fails, as when the connection drops before its answer is read.
type completeAnswerLost struct {
	ports.RetryStore
	once sync.Once
	lost chan string // the Next of the Complete that failed
}

func (s *completeAnswerLost) Complete(ctx context.Context, item ports.RetryItem, c ports.RetryClaim, dead []ports.DeadLetter) (ports.RetryItem, bool, error) {
	next, claimed, err := s.RetryStore.Complete(ctx, item, c, dead)
	lose := false
	s.once.Do(func() { lose = err == nil })
	if lose {
		s.lost <- c.Next
		return ports.RetryItem{}, false, errors.New("complete retry: connection reset by peer")
	}
	return next, claimed, err
}

// TestRetryRunnerReleasesTheNextItemOfALostComplete: Complete committed
// (the item deleted, its key's next item claimed) and its answer was
// lost. The runner's retry finds the item gone, counts it completed and
// releases the holder the next item was claimed for: the next item runs
// at the next look, not after ClaimTTL (an hour here).
func TestRetryRunnerReleasesTheNextItemOfALostComplete(t *testing.T) {
	t.Parallel()
	mem := memory.NewRetries(memory.NewDeadLetters(nil), nil)
	store := &completeAnswerLost{RetryStore: mem, lost: make(chan string, 1)}
	exec, calls := recording(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	m := domain.NewMatcher([]domain.Observer{durableObserver("hooks", "Order", 1, "a")})
	blocked := application.NewBlockedKeys()
	for _, id := range []string{"first", "second"} {
		ev := event(id, "Order", "1", nil)
		blocked.Add("hooks", ev.EntityKey())
		parkNow(t, mem, ev)
	}
	r, err := application.NewRetryRunner(store, exec, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "p", Logger: discardLogger(), PollInterval: 20 * time.Millisecond, ClaimTTL: time.Hour, Blocked: blocked,
	})
	if err != nil {
		t.Fatal(err)
	}
	bg := runInBackground(t, r.Run)
	if next := <-store.lost; !strings.HasPrefix(next, "p/") {
		t.Errorf("Complete's Next = %q, want a holder of the runner's own (p/...)", next)
	}
	eventually(t, "both items delivered and completed", func() bool {
		keys, err := countKeys(t.Context(), mem)
		return err == nil && keys == 0 && len(calls.all()) == 2
	})
	eventually(t, "the key unblocked", func() bool { return blocked.Len() == 0 })
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range calls.all() {
		got = append(got, c.EventID)
	}
	if want := []string{"first", "second"}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v in order, each once", got, want)
	}
}

// rescheduleAnswerLost is a retry store whose first Reschedule commits
// and then fails, as when the connection drops before its answer is read.
type rescheduleAnswerLost struct {
	ports.RetryStore
	once sync.Once
}

func (s *rescheduleAnswerLost) Reschedule(ctx context.Context, id int64, holder string, actions []ports.RetryAction, dead []ports.DeadLetter) error {
	err := s.RetryStore.Reschedule(ctx, id, holder, actions, dead)
	lose := false
	s.once.Do(func() { lose = err == nil })
	if lose {
		return errors.New("reschedule retry: connection reset by peer")
	}
	return err
}

// settlements counts the retry runner's settlements by outcome.
type settlements struct {
	ports.NopDeliveryMetrics
	mu  sync.Mutex
	got map[string]int
}

func (s *settlements) RetrySettled(outcome string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = map[string]int{}
	}
	s.got[outcome]++
}

func (s *settlements) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.got)
}

// TestRetryRunnerRescheduleWhoseAnswerWasLost: the retried Reschedule
// finds the claim gone (the lost try released it) and says the item was
// most likely settled, as a warning, not that it could not be settled;
// and it counts and logs that settlement (the action it dead-lettered
// included), as it would have had the answer come back.
func TestRetryRunnerRescheduleWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	mem := memory.NewRetries(memory.NewDeadLetters(nil), nil)
	exec, _ := recording(func(_ context.Context, _ *domain.Event, _ *domain.Observer, act *domain.Action) error {
		if act.Name == "gone" {
			return domain.Permanent(errors.New("410 gone"))
		}
		return errDown
	})
	m := domain.NewMatcher([]domain.Observer{durableObserver("hooks", "Order", 1, "a", "gone")})
	ev := event("e1", "Order", "1", nil)
	if _, _, err := mem.Park(t.Context(), ports.RetryItem{Event: ev, Observer: "hooks", EntityKey: ev.EntityKey(),
		Actions: []ports.RetryAction{
			{Action: "a", ActionType: domain.ActionWebhook, Endpoint: "e", Attempts: 1, Due: time.Now()},
			{Action: "gone", ActionType: domain.ActionWebhook, Endpoint: "e", Attempts: 1, Due: time.Now()},
		}}); err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.Logs{}
	counted, settled := newMetrics(), &settlements{}
	r, err := application.NewRetryRunner(&rescheduleAnswerLost{RetryStore: mem}, exec, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "p", Logger: slog.New(logs), ClaimTTL: time.Hour, Metrics: counted, Delivery: settled,
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.RunDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("RunDue = %d, %v; want the one item", n, err)
	}
	if got := logs.Find("cannot settle a parked item; it runs again when its claim expires"); len(got) != 0 {
		t.Errorf("logged %d errors that the item could not be settled; its lost Reschedule had settled it", len(got))
	}
	warned := logs.Find("a parked item's claim was gone when its settlement was retried: the failed try most likely settled it (else its new holder runs it)")
	if len(warned) != 1 || warned[0].Level != slog.LevelWarn {
		t.Errorf("warnings = %+v, want one", warned)
	}
	if got := settled.counts(); got["rescheduled"] != 1 || len(got) != 1 {
		t.Errorf("settlements counted %v, want the one rescheduled", got)
	}
	if _, _, dead, _ := counted.snapshot(); dead != 1 {
		t.Errorf("dead letters counted %d, want 1 (the action the lost Reschedule dead-lettered)", dead)
	}
	if got := logs.Find("action dead-lettered"); len(got) != 1 {
		t.Errorf("logged %d dead letters, want 1", len(got))
	}
	// The item was rescheduled (one more attempt) and nobody holds it.
	got, err := mem.ClaimDue(t.Context(), ports.RetryClaim{Holder: "q", Now: time.Now().Add(time.Hour), TTL: time.Minute}, 10, nil)
	if err != nil || len(got) != 1 || len(got[0].Actions) != 1 || got[0].Actions[0].Attempts != 2 {
		t.Fatalf("after the lost Reschedule, claim = %+v, %v; want the item, rescheduled with 2 attempts of its one action left", got, err)
	}
}

// parkNow parks ev for observer "hooks", action "a" (one attempt made),
// due now.
func parkNow(t *testing.T, s ports.RetryStore, ev domain.Event) {
	t.Helper()
	if _, _, err := s.Park(t.Context(), ports.RetryItem{Event: ev, Observer: "hooks", EntityKey: ev.EntityKey(),
		Actions: []ports.RetryAction{{Action: "a", ActionType: domain.ActionWebhook, Endpoint: "e", Attempts: 1, Due: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
}

// countKeys counts the keys with parked items in s.
func countKeys(ctx context.Context, s ports.RetryStore) (int, error) {
	n := 0
	err := s.Keys(ctx, func(ports.RetryKey) error { n++; return nil })
	return n, err
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestRetryRunnerLostLeaseCancelsItsActionsAtOnce: when the term the
// runner runs in ends because its lease was lost, the actions in progress
// are cancelled at once (another holder may take the items over), not
// after ShutdownGrace, and the item is released unchanged for the next
// holder. Before, the actions ran on for the whole grace.
func TestRetryRunnerLostLeaseCancelsItsActionsAtOnce(t *testing.T) {
	t.Parallel()
	dead := memory.NewDeadLetters(nil)
	mem := memory.NewRetries(dead, nil)
	started := make(chan struct{}, 1)
	exec, _ := recording(func(ctx context.Context, _ *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	m := domain.NewMatcher([]domain.Observer{durableObserver("hooks", "Order", 5, "a")})
	parkNow(t, mem, event("e1", "Order", "1", nil))
	r, err := application.NewRetryRunner(mem, exec, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "lost", Logger: discardLogger(), PollInterval: time.Hour, ClaimTTL: time.Hour, ShutdownGrace: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-started
	start := time.Now()
	cancel(fmt.Errorf("lease %q: %w", "default", ports.ErrLeaseLost))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the runner still ran 30s after its lease was lost (ShutdownGrace 1m)")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the runner took %v to stop after its lease was lost", took)
	}
	got, err := mem.ClaimDue(t.Context(), ports.RetryClaim{Holder: "next", Now: time.Now(), TTL: time.Minute}, 10, nil)
	if err != nil || len(got) != 1 || got[0].Actions[0].Attempts != 1 {
		t.Fatalf("the next holder claimed %+v (%v), want the item released unchanged (1 attempt)", got, err)
	}
}

// TestRetryRunnerRenewsTheClaimOfARunningItem: an item whose actions run
// longer than its claim keeps it (renewed every third of it): it runs
// once, and its key's next item after it. Before, the claim ran out, the
// runner claimed the item again while it ran (delivered twice) and the
// next item of the key was delivered before the first run ended.
func TestRetryRunnerRenewsTheClaimOfARunningItem(t *testing.T) {
	t.Parallel()
	store := memory.NewRetries(memory.NewDeadLetters(nil), nil)
	var mu sync.Mutex
	var log []string
	note := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	var slow atomic.Int32
	exec := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		note("start " + ev.ID)
		if ev.ID == "e0" && slow.Add(1) == 1 {
			time.Sleep(600 * time.Millisecond) // a slow receiver, within the action's timeout: three claims long
		}
		note("end " + ev.ID)
		return nil
	})
	m := domain.NewMatcher([]domain.Observer{durableObserver("hooks", "Order", 1, "a")})
	r, err := application.NewRetryRunner(store, exec, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "h", Logger: discardLogger(), PollInterval: 20 * time.Millisecond, ClaimTTL: 200 * time.Millisecond, Concurrency: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	parkNow(t, store, event("e0", "Order", "1", nil))
	parkNow(t, store, event("e1", "Order", "1", nil))
	bg := runInBackground(t, r.Run)
	eventually(t, "both items run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(log, "end e1")
	})
	time.Sleep(300 * time.Millisecond) // room for a second run of e0
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"start e0", "end e0", "start e1", "end e1"}; !slices.Equal(log, want) {
		t.Errorf("ran %v, want %v: each once, in order", log, want)
	}
}

// TestCircuitRecoveryWakesAnActionOnce: two parked events a healthy
// receiver refuses on their own (500) open the circuit; live traffic
// closes it, and the recovery makes them due at once, once: failing
// again, they wait out their backoff. Before, every recovery woke them,
// they failed and opened the circuit again: 48 attempts in 2s, a
// circuit flapping at every probe, against one each by the policy.
func TestCircuitRecoveryWakesAnActionOnce(t *testing.T) {
	t.Parallel()
	store := memory.NewRetries(memory.NewDeadLetters(nil), nil)
	var poison atomic.Int32
	inner := ports.ActionExecutorFunc(func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		if ev.ID != "live" {
			poison.Add(1)
			return domain.Transient(errors.New("500"), 0)
		}
		return nil
	})
	guard, err := application.NewEndpointGuard(inner, application.EndpointGuardConfig{
		Default:   application.EndpointPolicy{BreakerFailures: 2, ProbeInterval: 50 * time.Millisecond},
		Endpoint:  func(*domain.Observer, *domain.Action) string { return "e" },
		OnRecover: func(ctx context.Context, ep string) { _, _ = store.MakeDue(ctx, ep, time.Now()) },
		Logger:    discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	o := durableObserver("hooks", "Order", 1, "a")
	o.Retry = domain.RetryPolicy{MaxAge: 24 * time.Hour, InitialDelay: time.Minute, MaxDelay: time.Hour, Backoff: domain.BackoffExponential, InMemoryAttempts: 1}
	m := domain.NewMatcher([]domain.Observer{o})
	r, err := application.NewRetryRunner(store, guard, func() *domain.Matcher { return m }, application.RetryRunnerConfig{
		Holder: "h", Logger: discardLogger(), PollInterval: 20 * time.Millisecond, Skip: guard.Skip,
	})
	if err != nil {
		t.Fatal(err)
	}
	parkNow(t, store, event("p1", "Order", "1", nil))
	parkNow(t, store, event("p2", "Order", "2", nil))
	bg := runInBackground(t, r.Run)
	live := event("live", "Order", "3", nil)
	obs := m.Observers()[0]
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
		_ = guard.Execute(t.Context(), &live, obs, &obs.Actions[0]) // live traffic to the same, healthy, receiver
		time.Sleep(30 * time.Millisecond)
	}
	if err := bg.Stop(t); err != nil {
		t.Fatal(err)
	}
	if n := poison.Load(); n > 4 {
		t.Errorf("the two refused events were attempted %d times in 1.5s, want at most 4 (each: its due attempt, and one when the circuit recovered)", n)
	}
}
