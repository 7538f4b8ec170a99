package porttest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// promptReturn bounds how long an executor may take to return once its
// context has ended. Generous for a loaded machine: the contract is
// "promptly", not "instantly".
const promptReturn = 2 * time.Second

// minSecretLen keeps planted secrets long enough that finding one in an
// error's text cannot be a coincidence.
const minSecretLen = 8

// ActionFeatures says which failures an action kind can produce, so that
// the suite runs only the cases that apply (watermill's
// pubsub/tests.Features). The zero value: the action can only succeed.
type ActionFeatures struct {
	// TransientFailures: the target can be down or busy (a 503, a lost
	// connection, an unreachable server), which the executor reports as
	// transient.
	TransientFailures bool
	// PermanentFailures: the target or the action can refuse for good (a
	// 400, a raised exception, an invalid subject), which the executor
	// reports as domain.Permanent.
	PermanentFailures bool
	// Blocks: the target can take a call and never answer (a receiver that
	// hangs, pg_sleep, a server that accepts and stays silent).
	Blocks bool
}

// ActionTarget is an executor and an action aimed at a target in a known
// state.
type ActionTarget struct {
	Executor ports.ActionExecutor
	Action   *domain.Action
	// Prepare, when set, runs before each Execute with the event about to
	// be executed (for example, it creates the cache key the action
	// removes).
	Prepare func(ctx context.Context, ev *domain.Event) error
	// Took reports whether ev's action took effect at the target: a
	// request received, a row written, a message or log record seen, a key
	// gone. Required on success targets; the suite polls it until it holds
	// or a generous deadline passes.
	Took func(ctx context.Context, ev *domain.Event) (bool, error)
	// Reached, on a blocking target, returns once the target holds the
	// call (the request arrived, the query runs). When nil the suite waits
	// a short moment instead.
	Reached func(ctx context.Context) error
}

// ActionHarness is an action executor under test: one target per situation
// the suite checks. Each function is called once per case and must return
// a target isolated from the other cases (its own receiver path, function,
// subject or key prefix), as the cases run in parallel.
type ActionHarness struct {
	Features ActionFeatures
	// Success returns a target the action succeeds on.
	Success func(t *testing.T) ActionTarget
	// Transient and Permanent return targets that fail that way, by the
	// name of the situation ("503", "connection lost", ...). Required
	// when Features says the kind can fail that way, empty otherwise.
	Transient map[string]func(t *testing.T) ActionTarget
	Permanent map[string]func(t *testing.T) ActionTarget
	// Blocking returns a target that holds the call until the context
	// ends, with no timeout of the executor's own shorter than a minute.
	// Required when Features.Blocks, nil otherwise.
	Blocking func(t *testing.T) ActionTarget
	// Secrets are values planted in the targets' configuration (a URL's
	// path or query token, header values, a signing secret, passwords) that
	// no error's text may contain. At least 8 characters each.
	Secrets []string
}

// RunActionExecutor checks the ports.ActionExecutor contract: an action
// that succeeds takes effect and returns nil, also under concurrent calls;
// failures are classified transient or permanent (domain.IsPermanent); a
// call returns promptly when its context ends, with an error that is not
// permanent; and no error's text carries a planted secret (a target
// appears as scheme, host and port at most).
func RunActionExecutor(t *testing.T, h ActionHarness) {
	t.Helper()
	checkActionHarness(t, h)

	t.Run("SucceedsAndTakesEffect", func(t *testing.T) {
		t.Parallel()
		target := h.Success(t)
		ev := actionEvent(1)
		if err := executeTarget(t, t.Context(), target, ev); err != nil {
			t.Fatalf("Execute = %v, want nil", err)
		}
		waitTook(t, target, ev)
	})

	t.Run("ConcurrentCallsSucceed", func(t *testing.T) {
		t.Parallel()
		target := h.Success(t)
		const callers = 8
		events := make([]*domain.Event, callers)
		errs := make([]error, callers)
		for i := range events {
			events[i] = actionEvent(i)
			if target.Prepare != nil {
				if err := target.Prepare(t.Context(), events[i]); err != nil {
					t.Fatalf("Prepare: %v", err)
				}
			}
		}
		var wg sync.WaitGroup
		for i, ev := range events {
			wg.Go(func() { errs[i] = target.Executor.Execute(t.Context(), ev, actionObserver(), target.Action) })
		}
		wg.Wait()
		for i, ev := range events {
			if errs[i] != nil {
				t.Fatalf("concurrent Execute %d = %v, want nil", i, errs[i])
			}
			waitTook(t, target, ev)
		}
	})

	t.Run("TransientFailure", func(t *testing.T) {
		t.Parallel()
		if !h.Features.TransientFailures {
			t.Skip("this action kind cannot fail transiently")
		}
		runFailures(t, h.Transient, false, h.Secrets)
	})

	t.Run("PermanentFailure", func(t *testing.T) {
		t.Parallel()
		if !h.Features.PermanentFailures {
			t.Skip("this action kind cannot fail permanently")
		}
		runFailures(t, h.Permanent, true, h.Secrets)
	})

	t.Run("ReturnsPromptlyWhenCanceled", func(t *testing.T) {
		t.Parallel()
		if !h.Features.Blocks {
			t.Skip("this action kind never blocks")
		}
		target := h.Blocking(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := executeInBackground(t, ctx, target)
		waitReached(t, target, done)
		canceled := time.Now()
		cancel()
		err := awaitReturn(t, done, canceled, promptReturn)
		assertInterrupted(t, h.Secrets, err)
	})

	t.Run("ReturnsPromptlyAtDeadline", func(t *testing.T) {
		t.Parallel()
		if !h.Features.Blocks {
			t.Skip("this action kind never blocks")
		}
		target := h.Blocking(t)
		const deadline = 500 * time.Millisecond
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), deadline)
		defer cancel()
		done := executeInBackground(t, ctx, target)
		err := awaitReturn(t, done, start, deadline+promptReturn)
		if took := time.Since(start); took < deadline {
			t.Fatalf("Execute returned %v after %v, before its %v deadline: the blocking target did not block", err, took, deadline)
		}
		assertInterrupted(t, h.Secrets, err)
	})

	t.Run("CanceledContextReturnsPromptly", func(t *testing.T) {
		t.Parallel()
		target := h.Success(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		start := time.Now()
		done := executeInBackground(t, ctx, target)
		// Whether an action still runs on an ended context is the
		// executor's choice; a failure must not be permanent.
		if err := awaitReturn(t, done, start, promptReturn); err != nil {
			assertInterrupted(t, h.Secrets, err)
		}
	})
}

// runFailures executes each failing target and checks the error's
// classification and text.
func runFailures(t *testing.T, targets map[string]func(t *testing.T) ActionTarget, permanent bool, secrets []string) {
	t.Helper()
	for _, name := range sortedKeys(targets) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := executeTarget(t, t.Context(), targets[name](t), actionEvent(1))
			t.Logf("Execute = %v", err)
			if err == nil || domain.IsPermanent(err) != permanent {
				t.Fatalf("Execute = %v, want an error with domain.IsPermanent = %v", err, permanent)
			}
			assertNoSecret(t, secrets, err)
		})
	}
}

// ReachedWhen is an ActionTarget.Reached that returns once ch is closed.
func ReachedWhen(ch <-chan struct{}) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// checkActionHarness fails the test when the harness contradicts its own
// features, so that a flag cannot silently skip a case.
func checkActionHarness(t *testing.T, h ActionHarness) {
	t.Helper()
	var problems []string
	if h.Success == nil {
		problems = append(problems, "Success is nil")
	}
	if h.Features.TransientFailures != (len(h.Transient) > 0) {
		problems = append(problems, fmt.Sprintf("Features.TransientFailures is %v with %d transient targets", h.Features.TransientFailures, len(h.Transient)))
	}
	if h.Features.PermanentFailures != (len(h.Permanent) > 0) {
		problems = append(problems, fmt.Sprintf("Features.PermanentFailures is %v with %d permanent targets", h.Features.PermanentFailures, len(h.Permanent)))
	}
	if h.Features.Blocks != (h.Blocking != nil) {
		problems = append(problems, fmt.Sprintf("Features.Blocks is %v but Blocking is set: %v", h.Features.Blocks, h.Blocking != nil))
	}
	for _, s := range h.Secrets {
		if len(s) < minSecretLen {
			problems = append(problems, fmt.Sprintf("secret %q is shorter than %d characters", s, minSecretLen))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("inconsistent action harness: %s", strings.Join(problems, "; "))
	}
}

// actionEvent is a sample event of its own (fresh ids).
func actionEvent(i int) *domain.Event {
	ev := sampleEvent(i, domain.EventUpdate)
	return &ev
}

func actionObserver() *domain.Observer { return &domain.Observer{Name: "conformance"} }

// executeTarget prepares the target for ev and executes its action.
func executeTarget(t *testing.T, ctx context.Context, target ActionTarget, ev *domain.Event) error {
	t.Helper()
	if target.Prepare != nil {
		if err := target.Prepare(t.Context(), ev); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
	}
	return target.Executor.Execute(ctx, ev, actionObserver(), target.Action)
}

// executeInBackground executes the target's action on ctx; the channel
// yields its result.
func executeInBackground(t *testing.T, ctx context.Context, target ActionTarget) <-chan error {
	t.Helper()
	ev := actionEvent(1)
	if target.Prepare != nil {
		if err := target.Prepare(t.Context(), ev); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- target.Executor.Execute(ctx, ev, actionObserver(), target.Action) }()
	return done
}

// waitReached waits until the blocking target holds the call. The call
// must not have returned by then: the target is meant to block.
func waitReached(t *testing.T, target ActionTarget, done <-chan error) {
	t.Helper()
	if target.Reached == nil {
		time.Sleep(200 * time.Millisecond) // no signal from the target: give the call time to get there
	} else {
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		reached := make(chan error, 1)
		go func() { reached <- target.Reached(ctx) }()
		select {
		case err := <-reached:
			if err != nil {
				t.Fatalf("the blocking target was not reached: %v", err)
			}
		case err := <-done:
			t.Fatalf("Execute returned %v before reaching the blocking target", err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Execute returned %v before its context ended: the blocking target did not block", err)
	default:
	}
}

// awaitReturn waits for the call's result, failing when it comes later than
// limit after since.
func awaitReturn(t *testing.T, done <-chan error, since time.Time, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Until(since.Add(limit))):
		t.Fatalf("Execute still running %v after its context ended", limit)
		return nil
	}
}

// assertInterrupted checks the result of a call whose context ended.
func assertInterrupted(t *testing.T, secrets []string, err error) {
	t.Helper()
	t.Logf("Execute = %v", err)
	if err == nil {
		t.Fatal("Execute = nil for a call its context ended, want an error")
	}
	if domain.IsPermanent(err) {
		t.Fatalf("Execute = %v: an ended context is not a permanent failure", err)
	}
	assertNoSecret(t, secrets, err)
}

func assertNoSecret(t *testing.T, secrets []string, err error) {
	t.Helper()
	msg := err.Error()
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Errorf("error %q carries the secret %q", msg, s)
		}
	}
}

// waitTook polls the target until ev's action shows its effect.
func waitTook(t *testing.T, target ActionTarget, ev *domain.Event) {
	t.Helper()
	if target.Took == nil {
		t.Fatal("the success target has no Took")
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := target.Took(t.Context(), ev)
		switch {
		case err != nil:
			t.Fatalf("Took: %v", err)
		case ok:
			return
		case time.Now().After(deadline):
			t.Fatalf("event %s: the action returned nil but took no effect within %v", ev.ID, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
