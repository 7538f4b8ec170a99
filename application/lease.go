package application

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	if lease == nil || cfg.Logger == nil || cfg.Name == "" || cfg.Holder == "" {
		return errors.New("lease: lease, logger, name and holder are required")
	}
	cfg.TTL = cmp.Or(cfg.TTL, 15*time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger.With(slog.String("lease", cfg.Name), slog.String("holder", cfg.Holder))
	renew := cfg.TTL / 3
	waiting := false
	for ctx.Err() == nil {
		held, err := lease.Acquire(ctx, cfg.Name, cfg.Holder, cfg.TTL)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("cannot acquire lease", slog.String("error", err.Error()))
			}
			sleep(ctx, renew)
			continue
		}
		if !held {
			if !waiting {
				log.Info("lease held by another replica, standing by")
				waiting = true
			}
			sleep(ctx, renew)
			continue
		}
		waiting = false
		log.Info("lease acquired")
		err = runHolding(ctx, lease, cfg, log, fn)
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

// runHolding runs fn and renews the lease until fn returns or the lease is
// lost. fn returning the cancellation of its context (ctx ended or the
// lease was lost) is a clean stop, not an error.
func runHolding(ctx context.Context, lease ports.Lease, cfg LeaseConfig, log *slog.Logger, fn func(context.Context) error) error {
	fctx, cancelCause := context.WithCancelCause(ctx)
	defer cancelCause(nil)
	cancel := func() { cancelCause(fmt.Errorf("lease %q: %w", cfg.Name, ports.ErrLeaseLost)) }
	done := make(chan error, 1)
	go func() {
		err := fn(fctx)
		if fctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, ports.ErrLeaseLost)) {
			err = nil
		}
		done <- err
	}()
	ticker := time.NewTicker(cfg.TTL / 3)
	defer ticker.Stop()
	lastRenew := cfg.Now()
	for {
		select {
		case err := <-done:
			return err
		case <-ticker.C:
			// A renewal that hangs (a connection that neither answers nor
			// breaks) must not keep the work going past the lease's
			// expiry: it ends just after the point where a failed renewal
			// stops the work (2/3 of the TTL since the last one).
			giveUp := lastRenew.Add(cfg.TTL * 2 / 3)
			rctx, cancelRenew := context.WithTimeout(fctx, max(giveUp.Sub(cfg.Now()), 0)+cfg.TTL/30)
			held, err := lease.Acquire(rctx, cfg.Name, cfg.Holder, cfg.TTL)
			cancelRenew()
			switch {
			case err == nil && held:
				lastRenew = cfg.Now()
			case err == nil && !held:
				log.Error("lease lost to another replica, stopping work")
				cancel()
				return <-done
			case cfg.Now().Sub(lastRenew) > cfg.TTL*2/3:
				log.Error("cannot renew lease before it expires, stopping work", slog.String("error", err.Error()))
				cancel()
				return <-done
			default:
				log.Warn("cannot renew lease, will retry", slog.String("error", err.Error()))
			}
		}
	}
}
