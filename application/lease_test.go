package application_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// lease is a fake ports.Lease whose methods are function fields.
type lease struct {
	AcquireFunc func(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseFunc func(ctx context.Context, name, holder string) error
}

var _ ports.Lease = (*lease)(nil)

func (l *lease) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	return l.AcquireFunc(ctx, name, holder, ttl)
}

func (l *lease) Release(ctx context.Context, name, holder string) error {
	return l.ReleaseFunc(ctx, name, holder)
}

func leaseConfig(holder string, ttl time.Duration) application.LeaseConfig {
	return application.LeaseConfig{Name: "reader:default", Holder: holder, TTL: ttl, Logger: discardLogger()}
}

func TestRunWithLeaseOneHolderAtATime(t *testing.T) {
	t.Parallel()
	mem := memory.NewLease(nil)
	var mu sync.Mutex
	refused := map[string]int{} // Acquire calls answered held=false, per holder
	shared := &lease{
		AcquireFunc: func(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
			held, err := mem.Acquire(ctx, name, holder, ttl)
			if err == nil && !held {
				mu.Lock()
				refused[holder]++
				mu.Unlock()
			}
			return held, err
		},
		ReleaseFunc: mem.Release,
	}
	var active, peak atomic.Int32
	var startedA, startedB atomic.Int32
	work := func(started *atomic.Int32) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			n := active.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			started.Add(1)
			<-ctx.Done()
			active.Add(-1)
			return nil
		}
	}
	// The TTL is long against scheduling stalls: the holder renews every
	// TTL/3, the standby retries as often.
	const ttl = 600 * time.Millisecond
	a := runInBackground(t, func(ctx context.Context) error {
		return application.RunWithLease(ctx, shared, leaseConfig("a", ttl), work(&startedA))
	})
	eventually(t, "a working", func() bool { return startedA.Load() == 1 })
	b := runInBackground(t, func(ctx context.Context) error {
		return application.RunWithLease(ctx, shared, leaseConfig("b", ttl), work(&startedB))
	})
	eventually(t, "b refused twice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return refused["b"] >= 2
	})
	if startedB.Load() != 0 {
		t.Fatalf("b works while a holds the lease")
	}
	if err := a.Stop(t); err != nil {
		t.Fatalf("RunWithLease(a) = %v after its context ended, want nil", err)
	}
	eventually(t, "b takes over", func() bool { return startedB.Load() == 1 })
	if err := b.Stop(t); err != nil {
		t.Fatalf("RunWithLease(b) = %v, want nil", err)
	}
	if got := peak.Load(); got != 1 {
		t.Errorf("%d holders worked at the same time, want 1", got)
	}
	if startedA.Load() != 1 {
		t.Errorf("a worked %d times, want 1", startedA.Load())
	}
	// Both released: a third holder gets the lease at once.
	if held, err := mem.Acquire(t.Context(), "reader:default", "c", time.Minute); err != nil || !held {
		t.Errorf("Acquire after both stopped = %v, %v; want the lease free", held, err)
	}
}

func TestRunWithLeaseStopsWorkWhenLeaseIsLost(t *testing.T) {
	t.Parallel()
	errLeaseStore := fmt.Errorf("lease: %w", ports.ErrUnavailable)
	tests := []struct {
		name string
		// renew answers the renewals (Acquire calls after the first).
		renew func(n int) (bool, error)
		// fnErr is what fn returns once its context ends.
		fnErr func(ctx context.Context) error
	}{
		{
			name:  "another replica took the lease",
			renew: func(n int) (bool, error) { return n < 2, nil },
			fnErr: func(context.Context) error { return nil },
		},
		{
			name:  "renewal keeps failing",
			renew: func(int) (bool, error) { return false, errLeaseStore },
			fnErr: func(context.Context) error { return nil },
		},
		{
			name:  "fn returns its context's error",
			renew: func(n int) (bool, error) { return n < 2, nil },
			fnErr: func(ctx context.Context) error { return ctx.Err() },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var acquires, releases atomic.Int32
			fake := &lease{
				AcquireFunc: func(ctx context.Context, _, holder string, _ time.Duration) (bool, error) {
					n := int(acquires.Add(1))
					if n == 1 {
						return true, nil
					}
					if holder != "me" {
						return false, errors.New("wrong holder")
					}
					return tt.renew(n - 1)
				},
				ReleaseFunc: func(_ context.Context, name, holder string) error {
					if name == "reader:default" && holder == "me" {
						releases.Add(1)
					}
					return nil
				},
			}
			var starts atomic.Int32
			stopped := make(chan bool, 1) // whether the parent context was still alive
			parent, cancelParent := context.WithCancel(t.Context())
			defer cancelParent()
			run := runInBackground(t, func(ctx context.Context) error {
				context.AfterFunc(ctx, cancelParent)
				return application.RunWithLease(parent, fake, leaseConfig("me", 30*time.Millisecond), func(ctx context.Context) error {
					starts.Add(1)
					<-ctx.Done()
					stopped <- parent.Err() == nil
					return tt.fnErr(ctx)
				})
			})
			select {
			case alive := <-stopped:
				if !alive {
					t.Fatalf("fn's context ended only with the parent's")
				}
			case <-time.After(waitTimeout):
				t.Fatalf("fn's context not cancelled after the lease was lost")
			}
			eventually(t, "the lease released and sought again", func() bool {
				return releases.Load() >= 1 && acquires.Load() >= 8
			})
			if err := run.Stop(t); err != nil {
				t.Errorf("RunWithLease = %v after its context ended, want nil", err)
			}
			if starts.Load() != 1 {
				t.Errorf("fn started %d times, want 1 (the lease was never regained)", starts.Load())
			}
		})
	}
}

func TestRunWithLeaseReturnsFnError(t *testing.T) {
	t.Parallel()
	var released atomic.Bool
	mem := memory.NewLease(nil)
	l := &lease{
		AcquireFunc: mem.Acquire,
		ReleaseFunc: func(ctx context.Context, name, holder string) error {
			released.Store(true)
			return mem.Release(ctx, name, holder)
		},
	}
	err := application.RunWithLease(t.Context(), l, leaseConfig("me", time.Minute), func(context.Context) error {
		return fmt.Errorf("work: %w", errBoom)
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("RunWithLease = %v, want fn's error", err)
	}
	if !released.Load() {
		t.Errorf("lease not released after fn failed")
	}
}

func TestRunWithLeaseRequiresConfig(t *testing.T) {
	t.Parallel()
	mem := memory.NewLease(nil)
	fn := func(context.Context) error { t.Error("fn ran"); return nil }
	tests := []struct {
		name  string
		lease ports.Lease
		cfg   application.LeaseConfig
	}{
		{name: "no lease", cfg: leaseConfig("me", time.Second)},
		{name: "no logger", lease: mem, cfg: application.LeaseConfig{Name: "n", Holder: "me"}},
		{name: "no name", lease: mem, cfg: application.LeaseConfig{Holder: "me", Logger: discardLogger()}},
		{name: "no holder", lease: mem, cfg: application.LeaseConfig{Name: "n", Logger: discardLogger()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := application.RunWithLease(t.Context(), tt.lease, tt.cfg, fn); err == nil {
				t.Errorf("RunWithLease = nil, want a configuration error")
			}
		})
	}
}

// TestRunWithLeaseJudgesFailedRenewalByItsClock fails every renewal and
// moves the injected clock: work goes on while the last renewal is at most
// two thirds of the TTL old by that clock, however many renewals failed
// (real time passes too), and stops once it is older.
func TestRunWithLeaseJudgesFailedRenewalByItsClock(t *testing.T) {
	t.Parallel()
	const ttl = 30 * time.Millisecond // renewals every 10ms of real time
	clock := newClock()
	acquired := clock.Now() // the clock stands still until the test moves it
	var acquires atomic.Int32
	fake := &lease{
		AcquireFunc: func(context.Context, string, string, time.Duration) (bool, error) {
			if acquires.Add(1) == 1 {
				return true, nil
			}
			return false, fmt.Errorf("lease: %w", ports.ErrUnavailable)
		},
		ReleaseFunc: func(context.Context, string, string) error { return nil },
	}
	cfg := leaseConfig("me", ttl)
	cfg.Now = clock.Now
	working := make(chan context.Context, 1)
	run := runInBackground(t, func(ctx context.Context) error {
		return application.RunWithLease(ctx, fake, cfg, func(ctx context.Context) error {
			working <- ctx
			<-ctx.Done()
			return nil
		})
	})
	var work context.Context
	select {
	case work = <-working:
	case <-time.After(waitTimeout):
		t.Fatal("fn did not start")
	}
	stillWorking := func(what string, renewals int32) {
		t.Helper()
		eventually(t, what, func() bool { return acquires.Load() >= renewals })
		if work.Err() != nil {
			t.Fatalf("%s: work stopped while the last renewal is %s old by the clock, within 2/3 of the %s TTL", what, clock.Now().Sub(acquired), ttl)
		}
	}
	stillWorking("ten failed renewals", 11)
	clock.Advance(ttl * 2 / 3) // exactly two thirds: not yet too old
	stillWorking("ten more failed renewals", acquires.Load()+10)
	clock.Advance(time.Nanosecond)
	eventually(t, "work stopped once the last renewal is older than 2/3 of the TTL", func() bool { return work.Err() != nil })
	if err := run.Stop(t); err != nil {
		t.Errorf("RunWithLease = %v, want nil", err)
	}
}

// leaseScenario runs RunWithLease with a 30s TTL in a synctest bubble:
// the first Acquire takes the lease at once, renewal n (from 1) is
// answered by renew(ctx, n). It returns when the work stopped (since the
// start), or -1 when it still ran at the end (after limit).
func leaseScenario(t *testing.T, limit time.Duration, renew func(ctx context.Context, n int) (bool, error)) time.Duration {
	t.Helper()
	var acquires atomic.Int32
	fake := &lease{
		AcquireFunc: func(ctx context.Context, _, _ string, _ time.Duration) (bool, error) {
			n := int(acquires.Add(1)) - 1
			if n == 0 {
				return true, nil
			}
			return renew(ctx, n)
		},
		ReleaseFunc: func(context.Context, string, string) error { return nil },
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	start := time.Now()
	stopped := make(chan time.Duration, 1)
	done := make(chan error, 1)
	go func() {
		done <- application.RunWithLease(ctx, fake, leaseConfig("me", 30*time.Second), func(ctx context.Context) error {
			<-ctx.Done()
			stopped <- time.Since(start)
			cancel() // end RunWithLease rather than seek the lease again
			return nil
		})
	}()
	took := time.Duration(-1)
	select {
	case took = <-stopped:
	case <-time.After(limit):
		cancel()
		<-stopped
	}
	if err := <-done; err != nil {
		t.Errorf("RunWithLease = %v, want nil", err)
	}
	return took
}

// hang blocks until ctx ends, as a call on a connection that neither
// answers nor breaks.
func hang(ctx context.Context) (bool, error) {
	<-ctx.Done()
	return false, fmt.Errorf("lease: %w", ctx.Err())
}

// The work stops before the lease can expire, however the renewals fail:
// the lease holds until 30s after the last successful renewal was sent.
func TestRunWithLeaseStopsWorkBeforeTheLeaseExpires(t *testing.T) {
	t.Parallel()
	t.Run("every renewal hangs", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// Sent at 10s, it hangs until 25s (5/6 of the TTL): stop then.
			if took := leaseScenario(t, time.Minute, func(ctx context.Context, _ int) (bool, error) { return hang(ctx) }); took < 0 || took > 25*time.Second {
				t.Errorf("work stopped after %v, want by 25s (lease taken at 0, TTL 30s)", took)
			}
		})
	})
	t.Run("a late answer, then renewals hang", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// Sent at 10s and answered at 20.9s: the lease holds until
			// 40s (the store's clock started at the send), so the work
			// must stop before 40s, however late the answer came.
			took := leaseScenario(t, time.Minute, func(ctx context.Context, n int) (bool, error) {
				if n == 1 { // written at once, its answer late but within its budget
					select {
					case <-time.After(10900 * time.Millisecond):
						return true, nil
					case <-ctx.Done():
						return false, fmt.Errorf("lease: %w", ctx.Err())
					}
				}
				return hang(ctx)
			})
			if took < 0 || took >= 40*time.Second {
				t.Errorf("work stopped after %v, want before 40s (the lease renewed by a call sent at 10s)", took)
			}
		})
	})
}

// A renewal that fails once and then takes a while but succeeds keeps the
// work going: a failure is retried soon, and a slow renewal has until 5/6
// of the TTL since the last successful one.
func TestRunWithLeaseKeepsWorkingThroughASlowRenewal(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		took := leaseScenario(t, 2*time.Minute, func(ctx context.Context, n int) (bool, error) {
			switch n {
			case 1:
				return false, errors.New("lease: connection reset")
			case 2: // a new connection first: TCP, TLS, authentication
				select {
				case <-time.After(4 * time.Second):
				case <-ctx.Done():
					return false, fmt.Errorf("lease: %w", ctx.Err())
				}
			}
			return true, nil
		})
		if took >= 0 {
			t.Errorf("work stopped after %v, want it to go on (one failure, then a slow renewal that succeeded)", took)
		}
	})
}

// A first Acquire that hangs is given up after 2/3 of the TTL and tried
// again: the work starts once the store answers.
func TestRunWithLeaseFirstAcquireThatHangsIsRetried(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var acquires atomic.Int32
		fake := &lease{
			AcquireFunc: func(ctx context.Context, _, _ string, _ time.Duration) (bool, error) {
				if acquires.Add(1) == 1 {
					return hang(ctx)
				}
				return true, nil
			},
			ReleaseFunc: func(context.Context, string, string) error { return nil },
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		start := time.Now()
		started := make(chan time.Duration, 1)
		done := make(chan error, 1)
		go func() {
			done <- application.RunWithLease(ctx, fake, leaseConfig("me", 30*time.Second), func(ctx context.Context) error {
				started <- time.Since(start)
				<-ctx.Done()
				return nil
			})
		}()
		select {
		case at := <-started:
			if at != 30*time.Second { // 20s for the hung call, 10s before the next
				t.Errorf("work started after %v, want 30s", at)
			}
		case <-time.After(time.Hour):
			t.Fatal("work never started: the first Acquire hung for good")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunWithLease = %v", err)
		}
	})
}

// After the parent context ends, the work drains (the scheduler's grace)
// and the lease is renewed meanwhile, by a store that refuses a call whose
// context has ended: no other replica takes it while the work goes on.
func TestRunWithLeaseRenewsWhileTheWorkDrains(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var renewed, refused atomic.Int32
		fake := &lease{
			AcquireFunc: func(ctx context.Context, _, _ string, _ time.Duration) (bool, error) {
				if err := ctx.Err(); err != nil {
					refused.Add(1)
					return false, fmt.Errorf("lease: %w", err)
				}
				renewed.Add(1)
				return true, nil
			},
			ReleaseFunc: func(context.Context, string, string) error { return nil },
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- application.RunWithLease(ctx, fake, leaseConfig("me", 15*time.Second), func(ctx context.Context) error {
				<-ctx.Done()
				time.Sleep(30 * time.Second) // a shutdown grace: the actions in progress finish
				return nil
			})
		}()
		time.Sleep(time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunWithLease = %v", err)
		}
		// Renewals every 5s through the 30s drain.
		if renewed.Load() < 6 || refused.Load() != 0 {
			t.Errorf("%d renewals went through and %d were refused during the drain; want at least 6, none refused", renewed.Load()-1, refused.Load())
		}
	})
}

// A lease lost while the work drains after a shutdown (the renewals hang
// from then on) closes LeaseLost, though fn's context ended before: the
// drain stops by 5/6 of the TTL after the last renewal was sent, before
// another replica can take the lease.
func TestRunWithLeaseSignalsALeaseLostDuringTheDrain(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var acquires atomic.Int32
		fake := &lease{
			AcquireFunc: func(ctx context.Context, _, _ string, _ time.Duration) (bool, error) {
				if acquires.Add(1) <= 2 { // taken at 0, renewed at 10s
					return true, nil
				}
				return hang(ctx)
			},
			ReleaseFunc: func(context.Context, string, string) error { return nil },
		}
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		drainEnded := make(chan time.Duration, 1)
		done := make(chan error, 1)
		go func() {
			done <- application.RunWithLease(ctx, fake, leaseConfig("me", 30*time.Second), func(ctx context.Context) error {
				<-ctx.Done()
				select {
				case <-application.LeaseLost(ctx):
				case <-time.After(5 * time.Minute): // a long shutdown grace
				}
				drainEnded <- time.Since(start)
				return nil
			})
		}()
		time.Sleep(15 * time.Second)
		cancel()
		// The renewal sent at 20s hangs until 35s (5/6 of the TTL after 10s).
		if took := <-drainEnded; took > 35*time.Second {
			t.Errorf("the drain ended after %v, want by 35s (lease renewed by a call sent at 10s, TTL 30s)", took)
		}
		if err := <-done; err != nil {
			t.Errorf("RunWithLease = %v", err)
		}
		if application.LeaseLost(context.Background()) != nil {
			t.Error("LeaseLost outside RunWithLease is not nil")
		}
		// A term that ends without losing its lease leaves its signal open.
		var kept <-chan struct{}
		okLease := &lease{
			AcquireFunc: func(context.Context, string, string, time.Duration) (bool, error) { return true, nil },
			ReleaseFunc: func(context.Context, string, string) error { return nil },
		}
		ctx2, cancel2 := context.WithCancel(t.Context())
		go func() { time.Sleep(time.Second); cancel2() }()
		if err := application.RunWithLease(ctx2, okLease, leaseConfig("me", 30*time.Second), func(ctx context.Context) error {
			kept = application.LeaseLost(ctx)
			<-ctx.Done()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-kept:
			t.Error("LeaseLost closed at a term's normal end")
		default:
		}
	})
}

// LeaseStatus tells a store that fails (Acquire errors) from a lease held
// by another replica (answered, not held): readiness reports the first
// as failing once it lasted, the second as a standby.
func TestRunWithLeaseRecordsAFailingStore(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	failing.Store(true)
	var held atomic.Bool
	l := &lease{
		AcquireFunc: func(context.Context, string, string, time.Duration) (bool, error) {
			if failing.Load() {
				return false, errors.New(`relation "observer.leases" does not exist`)
			}
			return held.Load(), nil
		},
		ReleaseFunc: func(context.Context, string, string) error { return nil },
	}
	var status application.LeaseStatus
	cfg := leaseConfig("a", 30*time.Millisecond)
	cfg.Status = &status
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- application.RunWithLease(ctx, l, cfg, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	}()
	eventually(t, "the failing store reported", func() bool {
		bad, since, msg := status.Failing(time.Now(), 50*time.Millisecond)
		return bad && since > 50*time.Millisecond && strings.Contains(msg, "observer.leases")
	})
	failing.Store(false) // answered: another replica holds it
	eventually(t, "a standby is not failing", func() bool {
		bad, _, _ := status.Failing(time.Now(), 0)
		return !bad
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
