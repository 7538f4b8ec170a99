package porttest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// RunLease checks the ports.Lease contract. newLease must return an
// isolated lease table on every call. The expiry case waits about a second
// with a 300ms ttl; the lease must judge expiry by a real clock.
func RunLease(t *testing.T, newLease func(t *testing.T) ports.Lease) {
	t.Helper()
	const ttl = time.Minute

	acquire := func(t *testing.T, l ports.Lease, name, holder string, ttl time.Duration) bool {
		t.Helper()
		held, err := l.Acquire(t.Context(), name, holder, ttl)
		if err != nil {
			t.Fatalf("Acquire(%q, %q): %v", name, holder, err)
		}
		return held
	}
	release := func(t *testing.T, l ports.Lease, name, holder string) {
		t.Helper()
		if err := l.Release(t.Context(), name, holder); err != nil {
			t.Fatalf("Release(%q, %q): %v", name, holder, err)
		}
	}

	t.Run("FreeLeaseIsAcquiredOthersRefused", func(t *testing.T) {
		t.Parallel()
		l := newLease(t)
		if !acquire(t, l, "reader", "a", ttl) {
			t.Fatal("a could not acquire a free lease")
		}
		if acquire(t, l, "reader", "b", ttl) {
			t.Fatal("b acquired a lease a holds")
		}
		if !acquire(t, l, "other", "b", ttl) {
			t.Fatal("b could not acquire a different, free lease")
		}
		if acquire(t, l, "other", "a", ttl) {
			t.Fatal("a acquired the lease b holds")
		}
	})

	t.Run("SameHolderRenews", func(t *testing.T) {
		t.Parallel()
		l := newLease(t)
		for i := range 3 {
			if !acquire(t, l, "reader", "a", ttl) {
				t.Fatalf("renewal #%d refused", i)
			}
		}
		if acquire(t, l, "reader", "b", ttl) {
			t.Fatal("b acquired a renewed lease")
		}
	})

	t.Run("RenewalExtendsExpiry", func(t *testing.T) {
		t.Parallel()
		l := newLease(t)
		if !acquire(t, l, "reader", "a", 300*time.Millisecond) {
			t.Fatal("a could not acquire a free lease")
		}
		if !acquire(t, l, "reader", "a", ttl) {
			t.Fatal("renewal refused")
		}
		time.Sleep(time.Second)
		if acquire(t, l, "reader", "b", ttl) {
			t.Fatal("b acquired a lease that a renewed for a minute")
		}
	})

	t.Run("ReleaseFreesTheLease", func(t *testing.T) {
		t.Parallel()
		l := newLease(t)
		if !acquire(t, l, "reader", "a", ttl) {
			t.Fatal("a could not acquire a free lease")
		}
		release(t, l, "reader", "a")
		if !acquire(t, l, "reader", "b", ttl) {
			t.Fatal("b could not acquire a released lease")
		}
		if acquire(t, l, "reader", "a", ttl) {
			t.Fatal("a acquired the lease b now holds")
		}
		release(t, l, "never-taken", "a") // releasing a lease nobody holds is fine
	})

	t.Run("ReleaseByNonHolderIsNoOp", func(t *testing.T) {
		t.Parallel()
		l := newLease(t)
		if !acquire(t, l, "reader", "a", ttl) {
			t.Fatal("a could not acquire a free lease")
		}
		release(t, l, "reader", "b")
		if acquire(t, l, "reader", "b", ttl) {
			t.Fatal("b acquired the lease after releasing a lease it did not hold")
		}
		if !acquire(t, l, "reader", "a", ttl) {
			t.Fatal("a lost its lease to another holder's Release")
		}
	})

	t.Run("ExpiredLeaseCanBeTaken", func(t *testing.T) {
		t.Parallel()
		l := newLease(t)
		if !acquire(t, l, "reader", "a", 300*time.Millisecond) {
			t.Fatal("a could not acquire a free lease")
		}
		if acquire(t, l, "reader", "b", ttl) {
			t.Fatal("b acquired a lease before it expired")
		}
		time.Sleep(time.Second) // correctness wait: well past the 300ms ttl
		if !acquire(t, l, "reader", "b", ttl) {
			t.Fatal("b could not acquire an expired lease")
		}
		if acquire(t, l, "reader", "a", ttl) {
			t.Fatal("a took the lease back from b")
		}
	})

	t.Run("ExactlyOneConcurrentAcquirerWins", func(t *testing.T) {
		t.Parallel()
		l := newLease(t)
		for round := range 3 {
			name := "reader-" + string(rune('a'+round))
			var (
				wg      sync.WaitGroup
				winners atomic.Int32
				start   = make(chan struct{})
				errs    = make(chan error, 10)
			)
			for i := range 10 {
				wg.Go(func() {
					<-start
					held, err := l.Acquire(t.Context(), name, "holder-"+string(rune('0'+i)), ttl)
					if err != nil {
						errs <- err
						return
					}
					if held {
						winners.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("Acquire: %v", err)
			}
			if n := winners.Load(); n != 1 {
				t.Fatalf("round %d: %d of 10 concurrent acquirers won, want exactly 1", round, n)
			}
		}
	})
}
