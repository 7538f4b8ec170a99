package application

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// LeaseConfig tunes RunWithLease.
type LeaseConfig struct {
	Name   string        // what the lease guards, e.g. "reader:default"
	Holder string        // this process, e.g. hostname and pid
	TTL    time.Duration // default 15s; renewed every TTL/3
	Logger *slog.Logger
	// Now is the clock that judges how long renewal has been failing
	// (default time.Now); the renewal ticks themselves are real time.
	Now func() time.Time
	// Status, when set, records whether the lease can be asked for at
	// all (see LeaseStatus): readiness tells a standby from a process
	// that cannot reach or read the lease store.
	Status *LeaseStatus
}

// LeaseStatus is what RunWithLease last learned about its lease store:
// whether Acquire has been failing (an error, not the lease held by
// another replica), since when, and with what. Safe for concurrent use;
// the zero value is ready to use.
type LeaseStatus struct {
	mu      sync.Mutex
	since   time.Time // zero: the last Acquire answered
	lastErr string
}

// Failing reports whether Acquire has been failing for longer than
// after, at now, and the last error.
func (s *LeaseStatus) Failing(now time.Time, after time.Duration) (bool, time.Duration, string) {
	if s == nil {
		return false, 0, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.since.IsZero() {
		return false, 0, ""
	}
	d := now.Sub(s.since)
	return d > after, d, s.lastErr
}

func (s *LeaseStatus) record(err error, now time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.since, s.lastErr = time.Time{}, ""
		return
	}
	if s.since.IsZero() {
		s.since = now
	}
	s.lastErr = err.Error()
}

// RunWithLease runs fn only while this process holds the named lease, so
// that of several replicas exactly one works at a time and another takes
// over when it dies. When renewal fails or the lease is lost, fn's context
// is cancelled with the cause ports.ErrLeaseLost (context.Cause), so that
// fn stops the term's work at once rather than finishing it, and, after fn
// returns, the lease is sought again. Returns nil when ctx ends (after
// releasing the lease), or fn's error when fn fails (fn returning its
// context's cancellation, or an error wrapping ports.ErrLeaseLost, ends
// the term and is not a failure).
func RunWithLease(ctx context.Context, lease ports.Lease, cfg LeaseConfig, fn func(ctx context.Context) error) error {
	cfg, log, err := cfg.prepare(lease)
	if err != nil {
		return err
	}
	renew := cfg.TTL / 3
	waiting := false
	for ctx.Err() == nil {
		sent := cfg.Now()
		actx, cancelAcquire := context.WithTimeout(ctx, cfg.TTL*2/3)
		held, err := lease.Acquire(actx, cfg.Name, cfg.Holder, cfg.TTL)
		cancelAcquire()
		if err != nil {
			if ctx.Err() == nil {
				cfg.Status.record(err, cfg.Now())
				log.Warn("cannot acquire lease", slog.String("error", err.Error()))
			}
			sleep(ctx, renew)
			continue
		}
		cfg.Status.record(nil, cfg.Now())
		if !held {
			if !waiting {
				log.Info("lease held by another replica, standing by")
				waiting = true
			}
			sleep(ctx, renew)
			continue
		}
		if late := cfg.Now().Sub(sent); late > cfg.TTL*2/3 {
			// Held, but the answer came so late that the lease may
			// expire before a renewal could: renew before working.
			log.Warn("lease acquired late, renewing before work starts", slog.Duration("answer_after", late))
			continue
		}
		waiting = false
		log.Info("lease acquired")
		err = runHolding(ctx, lease, cfg, log, sent, fn)
		if errors.Is(err, ports.ErrLeaseLost) {
			log.Warn("term ended: the lease is lost", slog.String("error", err.Error()))
			err = nil
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if rerr := lease.Release(rctx, cfg.Name, cfg.Holder); rerr != nil {
			log.Warn("cannot release lease", slog.String("error", rerr.Error()))
		}
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// HoldLease runs fn while keeping a lease this process already holds (the
// Acquire that took it was sent at acquired), renewing it as
// RunWithLease does: if the lease is lost, fn's context ends with the
// cause ports.ErrLeaseLost and LeaseLost(ctx) is closed. It returns fn's
// error (nil when fn returned its context's cancellation). The caller
// releases the lease.
func HoldLease(ctx context.Context, lease ports.Lease, cfg LeaseConfig, acquired time.Time, fn func(ctx context.Context) error) error {
	cfg, log, err := cfg.prepare(lease)
	if err != nil {
		return err
	}
	return runHolding(ctx, lease, cfg, log, acquired, fn)
}

// prepare checks cfg, fills its defaults and returns the lease's logger.
func (cfg LeaseConfig) prepare(lease ports.Lease) (LeaseConfig, *slog.Logger, error) {
	if lease == nil || cfg.Logger == nil || cfg.Name == "" || cfg.Holder == "" {
		return cfg, nil, errors.New("lease: lease, logger, name and holder are required")
	}
	cfg.TTL = cmp.Or(cfg.TTL, 15*time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, cfg.Logger.With(slog.String("lease", cfg.Name), slog.String("holder", cfg.Holder)), nil
}

// runHolding runs fn and renews the lease until fn returns or the lease is
// lost. fn returning the cancellation of its context (ctx ended or the
// lease was lost) is a clean stop, not an error.
//
// The lease was last written by a call sent at lastSent (acquired: the
// first): the store starts its TTL when the statement runs, no earlier,
// so it holds until lastSent + TTL at least. The work stops before that: a
// renewal is sent TTL/3 after the last successful one was sent, and again
// TTL/10 after a failed one; each must answer by lastSent + 5/6 TTL (a
// renewal that hangs, on a connection that neither answers nor breaks,
// ends then); a failed renewal stops the work once lastSent is more than
// 2/3 TTL old. So the work ends by lastSent + 5/6 TTL, while a slow but
// healthy renewal has until then. Renewals go on after ctx ended, until
// fn returns: the work drains under the lease, and a lease lost during
// that drain ends it (LeaseLost), fn's context having ended already.
func runHolding(ctx context.Context, lease ports.Lease, cfg LeaseConfig, log *slog.Logger, acquired time.Time, fn func(context.Context) error) error {
	lost := make(chan struct{}) // closed when the lease is lost, never else
	var markLost sync.Once
	cctx, cancelCause := context.WithCancelCause(ctx)
	defer cancelCause(nil)
	fctx := context.WithValue(cctx, leaseLostKey{}, (<-chan struct{})(lost))
	cancel := func() {
		// lost first: whoever sees fn's context end then finds the lease
		// lost (LeaseLost), not a plain cancellation.
		markLost.Do(func() { close(lost) })
		cancelCause(fmt.Errorf("lease %q: %w", cfg.Name, ports.ErrLeaseLost))
	}
	done := make(chan error, 1)
	go func() {
		err := fn(fctx)
		if fctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, ports.ErrLeaseLost)) {
			err = nil
		}
		done <- err
	}()
	lastSent := acquired
	timer := time.NewTimer(max(lastSent.Add(cfg.TTL/3).Sub(cfg.Now()), 0))
	defer timer.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-timer.C:
			sent := cfg.Now()
			budget := lastSent.Add(cfg.TTL * 5 / 6).Sub(sent)
			if budget <= 0 {
				log.Error("cannot renew lease before it expires, stopping work")
				cancel()
				return <-done
			}
			// Not fctx: once the parent ends, the work drains (the
			// scheduler's grace, the bridge's acknowledgements) and the
			// lease must stay held meanwhile.
			rctx, cancelRenew := context.WithTimeout(context.WithoutCancel(fctx), budget)
			held, err := lease.Acquire(rctx, cfg.Name, cfg.Holder, cfg.TTL)
			cancelRenew()
			switch {
			case err == nil && held:
				lastSent = sent
				timer.Reset(max(sent.Add(cfg.TTL/3).Sub(cfg.Now()), 0))
			case err == nil && !held:
				log.Error("lease lost to another replica, stopping work")
				cancel()
				return <-done
			case cfg.Now().Sub(lastSent) > cfg.TTL*2/3:
				log.Error("cannot renew lease before it expires, stopping work", slog.String("error", err.Error()))
				cancel()
				return <-done
			default:
				log.Warn("cannot renew lease, will retry", slog.String("error", err.Error()))
				timer.Reset(cfg.TTL / 10)
			}
		}
	}
}

type leaseLostKey struct{}

// LeaseLost is closed when the lease under which ctx's work runs (fn's
// context in RunWithLease, and contexts derived from it, WithoutCancel
// ones included) is lost, even after that context ended: work that
// drains after a shutdown stops then. Nil (never closed) outside
// RunWithLease.
func LeaseLost(ctx context.Context) <-chan struct{} {
	lost, _ := ctx.Value(leaseLostKey{}).(<-chan struct{})
	return lost
}
