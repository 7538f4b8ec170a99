package application_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

const dlqRetryDelay = 50 * time.Millisecond

type procBundle struct {
	proc    *application.Processor
	clock   *testsupport.Clock
	dlq     *memory.DeadLetters
	metrics *metrics
	calls   *callLog
}

type procSetup struct {
	observers []domain.Observer
	behave    ports.ActionExecutorFunc // nil: every action succeeds
	// sink wraps the memory dead-letter store (nil: use it directly).
	sink func(ports.DeadLetterSink) ports.DeadLetterSink
}

func setupProcessor(t *testing.T, s procSetup) *procBundle {
	t.Helper()
	b := &procBundle{clock: newClock(), metrics: newMetrics()}
	b.dlq = memory.NewDeadLetters(b.clock.Now)
	var sink ports.DeadLetterSink = b.dlq
	if s.sink != nil {
		sink = s.sink(b.dlq)
	}
	var exec ports.ActionExecutorFunc
	exec, b.calls = recording(s.behave)
	b.proc = newProcessor(t, s.observers, exec, sink, application.ProcessorConfig{
		Metrics:              b.metrics,
		Now:                  b.clock.Now,
		Jitter:               func() float64 { return 0.5 },
		DeadLetterRetryDelay: dlqRetryDelay,
	})
	return b
}

// stepUntilDone steps run until it is done, moving the clock to each
// reported due time, and returns the waits Step asked for. Before moving
// the clock it steps once more to check that no action runs early.
func (b *procBundle) stepUntilDone(t *testing.T, run *application.Run) []time.Duration {
	t.Helper()
	ctx := t.Context()
	var waits []time.Duration
	for range 20 {
		next, done := b.proc.Step(ctx, run)
		if done {
			return waits
		}
		if run.Pending() == 0 && run.Record.Err == nil {
			t.Fatalf("step not done but no action pending")
		}
		waits = append(waits, next.Sub(b.clock.Now()))
		if run.Record.Err != nil {
			// An invalid record has no actions: its dead-letter write is
			// retried whenever Step is called, which the scheduler does
			// only at the due time.
			b.clock.Set(next)
			continue
		}
		calls := b.calls.len()
		again, done := b.proc.Step(ctx, run)
		if done || !again.Equal(next) || b.calls.len() != calls {
			t.Fatalf("step before the due time: done=%v next=%v (want %v), calls %d → %d", done, again, next, calls, b.calls.len())
		}
		b.clock.Set(next)
	}
	t.Fatalf("run not done after 20 steps (waits %v)", waits)
	return nil
}

func (b *procBundle) deadLetters(t *testing.T) []ports.DeadLetter {
	t.Helper()
	items, err := b.dlq.List(t.Context(), ports.DeadLetterFilter{})
	if err != nil {
		t.Fatalf("list dead letters: %v", err)
	}
	return items
}

func outcomes(s domain.ExecutionSummary) []domain.ActionOutcome {
	var out []domain.ActionOutcome
	for _, d := range s.Actions {
		out = append(out, d.Outcome)
	}
	return out
}

func callNames(calls []execCall) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.Observer+"/"+c.Action)
	}
	return out
}

func TestProcessorMatchingAndConditions(t *testing.T) {
	t.Parallel()
	orders := observer("orders", "order", "notify", "audit")
	paid := withCondition(t, observer("paid", "order", "ship"), "status == 'paid'")
	bigPaid := withCondition(t, observer("big", "order", "alert"), "status == 'paid' && total > 100")
	anything := observer("any", "*", "log")
	users := observer("users", "user", "welcome")

	paidOrder := event("e1", "order", "o1", map[string]any{"status": "paid", "total": 50})
	pendingOrder := event("e1", "order", "o1", map[string]any{"status": "pending"})
	deletedUser := event("e1", "user", "u1", nil)
	deletedUser.EventType = domain.EventDelete

	tests := []struct {
		name        string
		observers   []domain.Observer
		ev          domain.Event
		wantCalls   []string
		wantSkipped int
		wantOutcome string
	}{
		{
			name:      "exact entity in configuration order, then wildcard",
			observers: []domain.Observer{anything, orders, paid},
			ev:        paidOrder,
			wantCalls: []string{"orders/notify", "orders/audit", "paid/ship", "any/log"},
			// the wildcard observer is listed first but runs after the exact ones
			wantOutcome: "ok",
		},
		{
			name:        "false condition is skipped and counted",
			observers:   []domain.Observer{orders, paid, bigPaid, anything},
			ev:          pendingOrder,
			wantCalls:   []string{"orders/notify", "orders/audit", "any/log"},
			wantSkipped: 2,
			wantOutcome: "ok",
		},
		{
			name:        "compound condition false on one operand",
			observers:   []domain.Observer{paid, bigPaid},
			ev:          paidOrder,
			wantCalls:   []string{"paid/ship"},
			wantSkipped: 1,
			wantOutcome: "ok",
		},
		{
			name:        "every condition false finishes at once",
			observers:   []domain.Observer{paid},
			ev:          pendingOrder,
			wantSkipped: 1,
			wantOutcome: "no_match",
		},
		{
			name:        "other entity does not match",
			observers:   []domain.Observer{users},
			ev:          paidOrder,
			wantOutcome: "no_match",
		},
		{
			name:        "event type the observer does not handle",
			observers:   []domain.Observer{users, orders},
			ev:          deletedUser,
			wantOutcome: "no_match",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupProcessor(t, procSetup{observers: tt.observers})
			run := b.proc.Start(t.Context(), record(1, tt.ev))
			if got := run.Summary.ConditionsSkipped; got != tt.wantSkipped {
				t.Errorf("Summary.ConditionsSkipped = %d, want %d", got, tt.wantSkipped)
			}
			if b.calls.len() != 0 {
				t.Fatalf("Start executed actions: %v", b.calls.all())
			}
			if got := run.Pending(); got != len(tt.wantCalls) {
				t.Errorf("Pending() after Start = %d, want %d", got, len(tt.wantCalls))
			}
			_, done := b.proc.Step(t.Context(), run)
			if !done {
				t.Fatalf("Step not done although every action succeeds")
			}
			b.proc.Finish(t.Context(), run)
			if got := callNames(b.calls.all()); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("executed %v, want %v", got, tt.wantCalls)
			}
			if got := run.Summary.SuccessfulActions; got != len(tt.wantCalls) {
				t.Errorf("Summary.SuccessfulActions = %d, want %d", got, len(tt.wantCalls))
			}
			if run.Summary.EventID != tt.ev.ID {
				t.Errorf("Summary.EventID = %q, want %q", run.Summary.EventID, tt.ev.ID)
			}
			events, _, _, skipped := b.metrics.snapshot()
			if skipped != tt.wantSkipped {
				t.Errorf("metrics ConditionSkipped = %d, want %d", skipped, tt.wantSkipped)
			}
			if want := map[string]int{tt.wantOutcome: 1}; !mapsEqual(events, want) {
				t.Errorf("metrics EventProcessed = %v, want %v", events, want)
			}

			// Unwanted tells the no_match events without a run, counted
			// as the run counts them; the others it leaves uncounted.
			u := setupProcessor(t, procSetup{observers: tt.observers})
			unwanted := u.proc.Unwanted(record(1, tt.ev))
			if unwanted != (tt.wantOutcome == "no_match") {
				t.Fatalf("Unwanted = %v, want %v (outcome %s)", unwanted, !unwanted, tt.wantOutcome)
			}
			uEvents, _, _, uSkipped := u.metrics.snapshot()
			if unwanted && (uSkipped != tt.wantSkipped || !mapsEqual(uEvents, events)) {
				t.Errorf("Unwanted counted %v and %d false conditions, want %v and %d", uEvents, uSkipped, events, tt.wantSkipped)
			}
			if !unwanted && (uSkipped != 0 || len(uEvents) != 0) {
				t.Errorf("Unwanted of a wanted event counted %v and %d false conditions", uEvents, uSkipped)
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestProcessorFailures(t *testing.T) {
	t.Parallel()
	transient := domain.Transient(errBoom, 0)
	exponential := domain.RetryPolicy{MaxAttempts: 4, InitialDelay: 10 * time.Millisecond, MaxDelay: time.Second, Backoff: domain.BackoffExponential}
	type wantDL struct{ attempts int }
	tests := []struct {
		name       string
		retry      domain.RetryPolicy
		onFailure  domain.FailurePolicy
		runAttempt int     // 0: as Start set it
		errs       []error // the answer of call i; later calls succeed

		wantWaits    []time.Duration
		wantOutcomes []domain.ActionOutcome
		wantAttempts []int
		wantDL       *wantDL
		wantEvent    string
		wantRetries  int
	}{
		{
			name:         "success runs the action once",
			retry:        fixedRetry(3, 10*time.Millisecond),
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeSucceeded},
			wantAttempts: []int{1},
			wantEvent:    "ok",
		},
		{
			name:         "transient failure schedules a retry at the policy delay",
			retry:        fixedRetry(3, 10*time.Millisecond),
			errs:         []error{transient},
			wantWaits:    []time.Duration{10 * time.Millisecond},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeRetrying, domain.OutcomeSucceeded},
			wantAttempts: []int{1, 2},
			wantEvent:    "ok",
			wantRetries:  1,
		},
		{
			name:         "an unclassified error is transient",
			retry:        fixedRetry(2, 10*time.Millisecond),
			errs:         []error{fmt.Errorf("dial: %w", errBoom)},
			wantWaits:    []time.Duration{10 * time.Millisecond},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeRetrying, domain.OutcomeSucceeded},
			wantAttempts: []int{1, 2},
			wantEvent:    "ok",
			wantRetries:  1,
		},
		{
			name:         "exponential backoff grows with the attempt",
			retry:        exponential,
			errs:         []error{transient, transient, transient},
			wantWaits:    []time.Duration{7500 * time.Microsecond, 15 * time.Millisecond, 30 * time.Millisecond},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeRetrying, domain.OutcomeRetrying, domain.OutcomeRetrying, domain.OutcomeSucceeded},
			wantAttempts: []int{1, 2, 3, 4},
			wantEvent:    "ok",
			wantRetries:  3,
		},
		{
			name:         "retry-after longer than the policy delay wins",
			retry:        fixedRetry(3, 10*time.Millisecond),
			errs:         []error{domain.Transient(errBoom, 2*time.Second)},
			wantWaits:    []time.Duration{2 * time.Second},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeRetrying, domain.OutcomeSucceeded},
			wantAttempts: []int{1, 2},
			wantEvent:    "ok",
			wantRetries:  1,
		},
		{
			name:         "retry-after shorter than the policy delay is ignored",
			retry:        fixedRetry(3, 10*time.Millisecond),
			errs:         []error{domain.Transient(errBoom, time.Millisecond)},
			wantWaits:    []time.Duration{10 * time.Millisecond},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeRetrying, domain.OutcomeSucceeded},
			wantAttempts: []int{1, 2},
			wantEvent:    "ok",
			wantRetries:  1,
		},
		{
			name:         "permanent failure dead-letters at once",
			retry:        fixedRetry(5, 10*time.Millisecond),
			errs:         []error{domain.Permanent(errBoom)},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeDeadLettered},
			wantAttempts: []int{1},
			wantDL:       &wantDL{attempts: 1},
			wantEvent:    "failed",
		},
		{
			name:         "the last attempt dead-letters",
			retry:        fixedRetry(3, 10*time.Millisecond),
			errs:         []error{transient, transient, transient},
			wantWaits:    []time.Duration{10 * time.Millisecond, 10 * time.Millisecond},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeRetrying, domain.OutcomeRetrying, domain.OutcomeDeadLettered},
			wantAttempts: []int{1, 2, 3},
			wantDL:       &wantDL{attempts: 3},
			wantEvent:    "failed",
			wantRetries:  2,
		},
		{
			name:         "max_attempts 1 dead-letters a transient failure",
			retry:        fixedRetry(1, 10*time.Millisecond),
			errs:         []error{transient},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeDeadLettered},
			wantAttempts: []int{1},
			wantDL:       &wantDL{attempts: 1},
			wantEvent:    "failed",
		},
		{
			name:         "on_failure log finishes a permanent failure without a dead letter",
			retry:        fixedRetry(3, 10*time.Millisecond),
			onFailure:    domain.FailureLog,
			errs:         []error{domain.Permanent(errBoom)},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeFailedLogged},
			wantAttempts: []int{1},
			wantEvent:    "failed",
		},
		{
			name:         "on_failure log after the last attempt",
			retry:        fixedRetry(2, 10*time.Millisecond),
			onFailure:    domain.FailureLog,
			errs:         []error{transient, transient},
			wantWaits:    []time.Duration{10 * time.Millisecond},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeRetrying, domain.OutcomeFailedLogged},
			wantAttempts: []int{1, 2},
			wantEvent:    "failed",
			wantRetries:  1,
		},
		{
			name:         "redelivered run starts counting at its attempt",
			retry:        fixedRetry(3, 10*time.Millisecond),
			runAttempt:   2,
			errs:         []error{transient, transient},
			wantWaits:    []time.Duration{10 * time.Millisecond},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeRetrying, domain.OutcomeDeadLettered},
			wantAttempts: []int{2, 3},
			wantDL:       &wantDL{attempts: 3},
			wantEvent:    "failed",
			wantRetries:  1,
		},
		{
			name:         "redelivered run at max_attempts has no retry left",
			retry:        fixedRetry(3, 10*time.Millisecond),
			runAttempt:   3,
			errs:         []error{transient},
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeDeadLettered},
			wantAttempts: []int{3},
			wantDL:       &wantDL{attempts: 3},
			wantEvent:    "failed",
		},
		{
			name:         "redelivered run that succeeds",
			retry:        fixedRetry(3, 10*time.Millisecond),
			runAttempt:   2,
			wantOutcomes: []domain.ActionOutcome{domain.OutcomeSucceeded},
			wantAttempts: []int{2},
			wantEvent:    "ok",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obs := observer("obs", "order", "act")
			obs.Retry = tt.retry
			if tt.onFailure != "" {
				obs.OnFailure = tt.onFailure
			}
			var n int
			b := setupProcessor(t, procSetup{
				observers: []domain.Observer{obs},
				behave: func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
					n++ // Step runs actions one after the other
					if n <= len(tt.errs) {
						return tt.errs[n-1]
					}
					return nil
				},
			})
			ev := event("e1", "order", "o1", map[string]any{"total": 10})
			run := b.proc.Start(t.Context(), record(1, ev))
			if tt.runAttempt != 0 {
				run.Attempt = tt.runAttempt
			}
			waits := b.stepUntilDone(t, run)
			b.proc.Finish(t.Context(), run)

			if !slices.Equal(waits, tt.wantWaits) {
				t.Errorf("waits between steps = %v, want %v", waits, tt.wantWaits)
			}
			if got := b.calls.len(); got != len(tt.wantOutcomes) {
				t.Errorf("executor called %d times, want %d", got, len(tt.wantOutcomes))
			}
			if got := outcomes(run.Summary); !slices.Equal(got, tt.wantOutcomes) {
				t.Errorf("outcomes = %v, want %v", got, tt.wantOutcomes)
			}
			var attempts []int
			for _, d := range run.Summary.Actions {
				attempts = append(attempts, d.Attempt)
				if d.Observer != "obs" || d.Action != "act" || d.ActionType != domain.ActionWebhook {
					t.Errorf("action detail names %s/%s (%s), want obs/act (webhook)", d.Observer, d.Action, d.ActionType)
				}
				if failed := d.Outcome != domain.OutcomeSucceeded; failed != strings.Contains(d.Error, "boom") {
					t.Errorf("attempt %d outcome %s carries error %q", d.Attempt, d.Outcome, d.Error)
				}
			}
			if !slices.Equal(attempts, tt.wantAttempts) {
				t.Errorf("attempt numbers = %v, want %v", attempts, tt.wantAttempts)
			}

			items := b.deadLetters(t)
			_, retries, deadLettered, _ := b.metrics.snapshot()
			if tt.wantDL == nil {
				if len(items) != 0 || deadLettered != 0 {
					t.Errorf("dead letters %+v (metric %d), want none", items, deadLettered)
				}
			} else {
				if len(items) != 1 || deadLettered != 1 {
					t.Fatalf("got %d dead letters (metric %d), want 1", len(items), deadLettered)
				}
				d := items[0]
				if d.Observer != "obs" || d.Action != "act" || d.ActionType != domain.ActionWebhook {
					t.Errorf("dead letter names %s/%s (%s), want obs/act (webhook)", d.Observer, d.Action, d.ActionType)
				}
				if d.Attempts != tt.wantDL.attempts {
					t.Errorf("dead letter attempts = %d, want %d", d.Attempts, tt.wantDL.attempts)
				}
				if !strings.Contains(d.Error, "boom") {
					t.Errorf("dead letter error = %q, want the action's error", d.Error)
				}
				if d.Event.ID != ev.ID || d.Event.EntityID != ev.EntityID || d.Event.EntityType != ev.EntityType || fmt.Sprint(d.Event.Data) != fmt.Sprint(ev.Data) {
					t.Errorf("dead letter event = %+v, want %+v", d.Event, ev)
				}
				if d.Raw != nil {
					t.Errorf("dead letter of an action carries raw bytes %q", d.Raw)
				}
			}
			if retries != tt.wantRetries {
				t.Errorf("metrics RetryScheduled = %d, want %d", retries, tt.wantRetries)
			}
			if events, _, _, _ := b.metrics.snapshot(); !mapsEqual(events, map[string]int{tt.wantEvent: 1}) {
				t.Errorf("metrics EventProcessed = %v, want %s", events, tt.wantEvent)
			}
		})
	}
}

func TestProcessorEachActionRunsOnce(t *testing.T) {
	t.Parallel()
	var failed bool
	b := setupProcessor(t, procSetup{
		observers: []domain.Observer{observer("a", "order", "a1", "a2"), observer("b", "order", "b1")},
		behave: func(_ context.Context, _ *domain.Event, obs *domain.Observer, act *domain.Action) error {
			if act.Name == "a2" && !failed {
				failed = true
				return domain.Transient(errBoom, 0)
			}
			return nil
		},
	})
	run := b.proc.Start(t.Context(), record(1, event("e1", "order", "o1", nil)))
	waits := b.stepUntilDone(t, run)
	if want := []time.Duration{10 * time.Millisecond}; !slices.Equal(waits, want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}
	want := []string{"a/a1", "a/a2", "b/b1", "a/a2"}
	if got := callNames(b.calls.all()); !slices.Equal(got, want) {
		t.Errorf("executed %v, want %v (only the failed action again)", got, want)
	}
	if run.Summary.SuccessfulActions != 3 || run.Pending() != 0 {
		t.Errorf("successful actions %d, pending %d; want 3 and 0", run.Summary.SuccessfulActions, run.Pending())
	}
	// Steps after done execute nothing more.
	if _, done := b.proc.Step(t.Context(), run); !done || b.calls.len() != len(want) {
		t.Errorf("Step after done: done=%v, calls %d", done, b.calls.len())
	}
}

func TestProcessorDeadLetterWriteFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		retry     domain.RetryPolicy
		errs      []error
		dlqFails  int
		wantWaits []time.Duration
		wantCalls int
		wantTries int // attempts recorded in the dead letter
	}{
		{
			name:      "permanent failure, one failed write",
			retry:     fixedRetry(3, 10*time.Millisecond),
			errs:      []error{domain.Permanent(errBoom)},
			dlqFails:  1,
			wantWaits: []time.Duration{dlqRetryDelay},
			wantCalls: 1,
			wantTries: 1,
		},
		{
			name:      "permanent failure, three failed writes",
			retry:     fixedRetry(3, 10*time.Millisecond),
			errs:      []error{domain.Permanent(errBoom)},
			dlqFails:  3,
			wantWaits: []time.Duration{dlqRetryDelay, dlqRetryDelay, dlqRetryDelay},
			wantCalls: 1,
			wantTries: 1,
		},
		{
			name:      "last attempt, failed write",
			retry:     fixedRetry(2, 10*time.Millisecond),
			errs:      []error{domain.Transient(errBoom, 0), domain.Transient(errBoom, 0)},
			dlqFails:  2,
			wantWaits: []time.Duration{10 * time.Millisecond, dlqRetryDelay, dlqRetryDelay},
			wantCalls: 2,
			wantTries: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obs := observer("obs", "order", "act")
			obs.Retry = tt.retry
			var n int
			var writes func() int32
			b := setupProcessor(t, procSetup{
				observers: []domain.Observer{obs},
				behave: func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error {
					n++
					if n <= len(tt.errs) {
						return tt.errs[n-1]
					}
					return nil
				},
				sink: func(next ports.DeadLetterSink) ports.DeadLetterSink {
					s, calls := failingFirst(tt.dlqFails, next)
					writes = calls.Load
					return s
				},
			})
			run := b.proc.Start(t.Context(), record(1, event("e1", "order", "o1", nil)))
			waits := b.stepUntilDone(t, run)
			if !slices.Equal(waits, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", waits, tt.wantWaits)
			}
			if got := b.calls.len(); got != tt.wantCalls {
				t.Errorf("action executed %d times, want %d (a failed dead-letter write must not re-run it)", got, tt.wantCalls)
			}
			if got, want := int(writes()), tt.dlqFails+1; got != want {
				t.Errorf("dead-letter writes = %d, want %d", got, want)
			}
			items := b.deadLetters(t)
			if len(items) != 1 {
				t.Fatalf("got %d dead letters, want 1", len(items))
			}
			if items[0].Attempts != tt.wantTries || !strings.Contains(items[0].Error, "boom") || items[0].Action != "act" {
				t.Errorf("dead letter = %+v, want action act, %d attempts, error boom", items[0], tt.wantTries)
			}
			if _, _, deadLettered, _ := b.metrics.snapshot(); deadLettered != 1 {
				t.Errorf("metrics DeadLettered = %d, want 1", deadLettered)
			}
		})
	}
}

func TestProcessorInvalidRecord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		dlqFails int
	}{
		{name: "parked at once"},
		{name: "parked after failed writes", dlqFails: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupProcessor(t, procSetup{
				observers: []domain.Observer{observer("any", "*", "log")},
				sink: func(next ports.DeadLetterSink) ports.DeadLetterSink {
					s, _ := failingFirst(tt.dlqFails, next)
					return s
				},
			})
			raw := []byte(`{"id":"bad-1","event_type":"EXPLODE"}`)
			rec := ports.Record{
				Position: ports.Position{Seq: 7},
				Event:    domain.Event{ID: "bad-1"},
				Err:      fmt.Errorf("decode event: %w", domain.ErrInvalidEvent),
				Raw:      raw,
			}
			run := b.proc.Start(t.Context(), rec)
			waits := b.stepUntilDone(t, run)
			b.proc.Finish(t.Context(), run)
			if want := slices.Repeat([]time.Duration{dlqRetryDelay}, tt.dlqFails); !slices.Equal(waits, want) {
				t.Errorf("waits = %v, want %v", waits, want)
			}
			if b.calls.len() != 0 {
				t.Errorf("actions ran for an invalid record: %v", b.calls.all())
			}
			items := b.deadLetters(t)
			if len(items) != 1 {
				t.Fatalf("got %d dead letters, want 1", len(items))
			}
			d := items[0]
			if !bytes.Equal(d.Raw, raw) || d.Event.ID != "bad-1" || d.Observer != "" || d.Action != "" || d.Attempts != 1 {
				t.Errorf("dead letter = %+v, want raw input, event id bad-1, no observer or action, 1 attempt", d)
			}
			if !strings.Contains(d.Error, domain.ErrInvalidEvent.Error()) {
				t.Errorf("dead letter error = %q, want the decode error", d.Error)
			}
			if events, _, deadLettered, _ := b.metrics.snapshot(); !mapsEqual(events, map[string]int{"invalid": 1}) || deadLettered != 1 {
				t.Errorf("metrics EventProcessed = %v, DeadLettered = %d; want invalid once, 1", events, deadLettered)
			}
		})
	}
}

func TestProcessorCacheMarks(t *testing.T) {
	t.Parallel()
	b := setupProcessor(t, procSetup{
		observers: []domain.Observer{observer("obs", "order", "hit", "miss", "plain")},
		behave: func(ctx context.Context, _ *domain.Event, _ *domain.Observer, act *domain.Action) error {
			switch act.Name {
			case "hit":
				application.MarkCached(ctx)
			case "miss":
				application.MarkCacheMiss(ctx)
			}
			return nil
		},
	})
	// Marks outside an attempt are ignored.
	application.MarkCached(t.Context())
	application.MarkCacheMiss(t.Context())

	run := b.proc.Start(t.Context(), record(1, event("e1", "order", "o1", nil)))
	b.stepUntilDone(t, run)
	s := run.Summary
	want := []domain.ActionOutcome{domain.OutcomeCached, domain.OutcomeSucceeded, domain.OutcomeSucceeded}
	if got := outcomes(s); !slices.Equal(got, want) {
		t.Errorf("outcomes = %v, want %v", got, want)
	}
	if s.CacheHits != 1 || s.CacheMisses != 1 || s.SuccessfulActions != 3 {
		t.Errorf("cache hits %d, misses %d, successes %d; want 1, 1, 3", s.CacheHits, s.CacheMisses, s.SuccessfulActions)
	}
}

func TestProcessorSetMatcherAffectsLaterRuns(t *testing.T) {
	t.Parallel()
	b := setupProcessor(t, procSetup{observers: []domain.Observer{observer("old", "order", "v1")}})
	ctx := t.Context()
	first := b.proc.Start(ctx, record(1, event("e1", "order", "o1", nil)))
	next := domain.NewMatcher([]domain.Observer{observer("new", "order", "v2")})
	b.proc.SetMatcher(next)
	if b.proc.Matcher() != next {
		t.Errorf("Matcher() does not return the matcher just set")
	}
	second := b.proc.Start(ctx, record(2, event("e2", "order", "o2", nil)))
	b.stepUntilDone(t, first)
	b.stepUntilDone(t, second)
	want := []string{"old/v1@e1", "new/v2@e2"}
	var got []string
	for _, c := range b.calls.all() {
		got = append(got, c.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("executed %v, want %v", got, want)
	}
}

func TestProcessorSkippedRun(t *testing.T) {
	t.Parallel()
	b := setupProcessor(t, procSetup{observers: []domain.Observer{observer("obs", "order", "act")}})
	run := b.proc.Start(t.Context(), record(1, event("e1", "order", "o1", nil)))
	run.Skipped = true
	if _, done := b.proc.Step(t.Context(), run); !done {
		t.Fatalf("Step of a skipped run not done")
	}
	b.proc.Finish(t.Context(), run)
	if b.calls.len() != 0 {
		t.Errorf("a skipped run executed %v", b.calls.all())
	}
	if events, _, _, _ := b.metrics.snapshot(); !mapsEqual(events, map[string]int{"duplicate": 1}) {
		t.Errorf("metrics EventProcessed = %v, want duplicate once", events)
	}
}

func TestNewProcessorRequiresDependencies(t *testing.T) {
	t.Parallel()
	exec := ports.ActionExecutorFunc(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	full := func() (*domain.Matcher, application.ProcessorConfig) {
		return domain.NewMatcher(nil), application.ProcessorConfig{Executor: exec, DeadLetters: memory.NewDeadLetters(nil), Logger: discardLogger()}
	}
	tests := []struct {
		name   string
		mutate func(m **domain.Matcher, cfg *application.ProcessorConfig)
		ok     bool
	}{
		{name: "complete", mutate: func(**domain.Matcher, *application.ProcessorConfig) {}, ok: true},
		{name: "no matcher", mutate: func(m **domain.Matcher, _ *application.ProcessorConfig) { *m = nil }},
		{name: "no executor", mutate: func(_ **domain.Matcher, c *application.ProcessorConfig) { c.Executor = nil }},
		{name: "no dead letters", mutate: func(_ **domain.Matcher, c *application.ProcessorConfig) { c.DeadLetters = nil }},
		{name: "no logger", mutate: func(_ **domain.Matcher, c *application.ProcessorConfig) { c.Logger = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, cfg := full()
			tt.mutate(&m, &cfg)
			p, err := application.NewProcessor(m, cfg)
			if (err == nil) != tt.ok || (p != nil) != tt.ok {
				t.Errorf("NewProcessor = %v, %v; want ok=%v", p, err, tt.ok)
			}
		})
	}
}

// An invalid record is never unwanted, whatever the observers: it is
// dead-lettered, so it needs its run.
func TestProcessorUnwantedKeepsInvalidRecords(t *testing.T) {
	t.Parallel()
	b := setupProcessor(t, procSetup{observers: []domain.Observer{observer("orders", "order", "notify")}})
	rec := ports.Record{Event: domain.Event{ID: "bad-1"}, Err: fmt.Errorf("decode event: %w", domain.ErrInvalidEvent)}
	if b.proc.Unwanted(rec) {
		t.Fatal("an invalid record is unwanted")
	}
	if events, _, _, skipped := b.metrics.snapshot(); len(events) != 0 || skipped != 0 {
		t.Fatalf("Unwanted counted %v, %d", events, skipped)
	}
}
