package application_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
)

// prepared starts n runs (ids prefix-0 …) and prepares them in one call.
func prepared(t *testing.T, b *decoratorBundle, prefix string, n int) []*application.Run {
	t.Helper()
	runs := make([]*application.Run, n)
	for i := range runs {
		runs[i] = b.proc.Start(t.Context(), decoratorRecord(fmt.Sprintf("%s-%d", prefix, i)))
	}
	b.proc.Prepare(t.Context(), runs...)
	return runs
}

func TestDedupPrepareClaimsABatchInOneCallAndStepsUseIt(t *testing.T) {
	t.Parallel()
	forDecoratorModes(t, func(t *testing.T, b *decoratorBundle) {
		ctx := t.Context()
		if err := b.dedup.MarkDone(ctx, "p-1", time.Hour); err != nil { // processed before
			t.Fatal(err)
		}
		if _, err := b.dedup.Claim(ctx, "p-2", "someone-else", time.Minute); err != nil {
			t.Fatal(err)
		}
		b.dedup.calls.Store(0)
		runs := prepared(t, b, "p", 5)
		if got := b.dedup.manyCalls.Load(); got != 1 {
			t.Fatalf("Prepare made %d ClaimMany calls for 5 events, want 1", got)
		}
		if got := b.dedup.calls.Load(); got != 5 {
			t.Fatalf("%d events claimed, want 5", got)
		}
		for i, run := range runs {
			next, done := b.proc.Step(ctx, run)
			switch i {
			case 2: // held by another process: retried later, nothing run
				if done || !next.After(time.Now()) {
					t.Fatalf("busy event: done=%v next=%v", done, next)
				}
				continue
			case 1:
				if !done || !run.Summary.DuplicateSkipped {
					t.Fatalf("done event: done=%v skipped=%v", done, run.Summary.DuplicateSkipped)
				}
			default:
				if !done {
					t.Fatalf("run %d not done", i)
				}
			}
		}
		if got := b.dedup.calls.Load(); got != 5 {
			t.Fatalf("the steps claimed again (%d claims in all), want the prepared claims used", got)
		}
		b.proc.Finish(ctx, runs[0], runs[1], runs[3], runs[4])
		for _, id := range []string{"p-0", "p-1", "p-3", "p-4"} {
			if got := b.dedup.state(id); got != "done" {
				t.Errorf("%s is %q after Finish, want done", id, got)
			}
		}
		if got := b.dedup.state("p-2"); got != "someone-else" {
			t.Errorf("p-2 is %q, want still the other holder's", got)
		}
		// A redelivery runs nothing again.
		for _, id := range []string{"p-0", "p-3", "p-4"} {
			if again := runToEnd(t, b.proc, decoratorRecord(id)); !again.Summary.DuplicateSkipped {
				t.Errorf("%s delivered again was not skipped", id)
			}
		}
		if b.calls["a"].Load() != 3 || b.calls["b"].Load() != 3 {
			t.Errorf("actions ran a=%d b=%d times, want 3 each (p-1 done, p-2 busy)", b.calls["a"].Load(), b.calls["b"].Load())
		}
	})
}

func TestDedupPreparedClaimGoneStaleIsClaimedAgain(t *testing.T) {
	t.Parallel()
	clock := newClock()
	dedup := newFakeDedup()
	b := buildDecoratorsAt(t, dedup, &fakeCache{keys: map[string]bool{}}, true, clock.Now)
	b.dedup = dedup
	runs := prepared(t, b, "s", 2)
	// The first step comes a third of the (default 30s) lease later: the
	// prepared claim may have run out, so the step claims again.
	clock.Advance(10 * time.Second)
	if _, done := b.proc.Step(t.Context(), runs[0]); !done {
		t.Fatal("step not done")
	}
	if got := dedup.calls.Load(); got != 3 {
		t.Fatalf("%d claims, want 3 (2 prepared, 1 again for the stale one)", got)
	}
	// Meanwhile another process took the other event (its prepared claim
	// ran out): the stale claim is not trusted, the event is busy.
	dedup.mu.Lock()
	dedup.holders["s-1"] = "someone-else"
	dedup.mu.Unlock()
	if _, done := b.proc.Step(t.Context(), runs[1]); done || b.calls["a"].Load() != 1 {
		t.Fatalf("stale claim held elsewhere: done=%v, a ran %d times; want not done, once (s-0 only)", done, b.calls["a"].Load())
	}
	b.proc.Abandon(t.Context(), runs[1])
	if got := dedup.state("s-1"); got != "someone-else" {
		t.Fatalf("Abandon touched another holder's claim: %q", got)
	}
}

func TestDedupPreparedButNeverSteppedIsReleasedOnAbandon(t *testing.T) {
	t.Parallel()
	b := setupDecorators(t, true)
	runs := prepared(t, b, "r", 3)
	if got := b.dedup.state("r-1"); got != "me" {
		t.Fatalf("r-1 is %q after Prepare, want claimed by me", got)
	}
	for _, run := range runs {
		b.proc.Abandon(t.Context(), run)
	}
	for i := range 3 {
		if got := b.dedup.state(fmt.Sprint("r-", i)); got != "" {
			t.Errorf("r-%d is %q after Abandon, want released", i, got)
		}
	}
}

func TestDedupPrepareFailsOpen(t *testing.T) {
	t.Parallel()
	b := setupDecorators(t, true)
	b.dedup.fail.Store(true)
	b.cache.fail.Store(true)
	runs := prepared(t, b, "f", 2)
	for _, run := range runs {
		if _, done := b.proc.Step(t.Context(), run); !done {
			t.Fatal("step not done with the store down")
		}
	}
	b.proc.Finish(t.Context(), runs...)
	if b.calls["a"].Load() != 2 || b.calls["b"].Load() != 2 {
		t.Fatalf("actions ran a=%d b=%d times with the store down, want 2 each", b.calls["a"].Load(), b.calls["b"].Load())
	}
	if b.metrics.failOpen.Load() == 0 {
		t.Fatal("no fail-open reported")
	}
}
