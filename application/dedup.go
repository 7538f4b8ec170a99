package application

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// DedupConfig tunes the dedup decorator.
type DedupConfig struct {
	// Window is how long a processed event stays marked done (default 1h).
	Window time.Duration
	// Lease is how long a claim lasts without renewal (default 30s). Each
	// step renews it, and a heartbeat renews it every Lease/3 while the
	// step's actions run; a process that dies leaves the event claimable
	// after the lease, never marked done.
	Lease time.Duration
	// Token identifies this process's claims (required).
	Token string
	// Cache, when set (the CachingExecutor under this decorator's
	// processor), has each step look up the results of its due actions
	// together with the claim, and store its successes together with the
	// done mark: with the Redis adapter's pipelining, two round trips per
	// event on the path of its actions instead of four. Each call keeps
	// its own result and fail-open report.
	Cache   *CachingExecutor
	Logger  *slog.Logger
	Metrics ports.Metrics
	Now     func() time.Time
}

// Dedup is a RunProcessor decorator that processes each event once across
// deliveries and processes: it claims the event before its first step,
// marks it done after every action finished and releases the claim when
// the run is abandoned. When the store is unreachable it fails open:
// processing goes on, a warning is logged (rate-limited) and the
// fail-open metric counts it.
type Dedup struct {
	next  RunProcessor
	store ports.Deduplicator
	cfg   DedupConfig
	open  *failOpen
}

var _ RunProcessor = (*Dedup)(nil)

const (
	dedupStateKey = "dedup"
	// dedupPutsKey holds the stepCache of a step that reported done: its
	// result writes are awaited in Finish, after the done mark was sent.
	dedupPutsKey = "dedup_puts"
)

type dedupState int

const (
	dedupUnclaimed dedupState = iota
	dedupClaimed
	dedupFailedOpen
)

// NewDedup wraps next.
func NewDedup(next RunProcessor, store ports.Deduplicator, cfg DedupConfig) (*Dedup, error) {
	if next == nil || store == nil || cfg.Logger == nil || cfg.Token == "" {
		return nil, errors.New("dedup: processor, store, logger and token are required")
	}
	cfg.Window = cmp.Or(cfg.Window, time.Hour)
	cfg.Lease = cmp.Or(cfg.Lease, 30*time.Second)
	cfg.Metrics = cmp.Or[ports.Metrics](cfg.Metrics, ports.NopMetrics{})
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Dedup{next: next, store: store, cfg: cfg, open: newFailOpen("dedup", cfg.Logger, cfg.Metrics, cfg.Now)}, nil
}

func state(run *Run) dedupState {
	s, _ := run.Values[dedupStateKey].(dedupState)
	return s
}

func setState(run *Run, s dedupState) {
	if run.Values == nil {
		run.Values = map[string]any{}
	}
	run.Values[dedupStateKey] = s
}

// Start delegates; the claim is taken by the first Step.
func (d *Dedup) Start(ctx context.Context, rec ports.Record) *Run { return d.next.Start(ctx, rec) }

// Step claims (or renews the claim of) the event, then delegates. A done
// event is skipped; a claim held elsewhere is retried after a short wait.
func (d *Dedup) Step(ctx context.Context, run *Run) (time.Time, bool) {
	if run.Record.Err != nil || run.Skipped || state(run) == dedupFailedOpen {
		return d.next.Step(ctx, run)
	}
	// The due actions' cache lookups go out with the claim; they are used
	// only if the claim is ours (a lookup before the claim sees what one
	// after it would: only a claim holder stores successes).
	sctx, sc := ctx, (*stepCache)(nil)
	if d.cfg.Cache != nil {
		if keys := dueResultKeys(run, d.cfg.Now()); len(keys) > 0 {
			sctx, sc = d.cfg.Cache.prefetch(ctx, keys)
		}
	}
	res, err := d.store.Claim(ctx, run.Record.Event.ID, d.cfg.Token, d.cfg.Lease)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return d.cfg.Now(), false
		}
		d.open.report(ctx, "claim", err)
		setState(run, dedupFailedOpen)
	case res == ports.ClaimDone:
		run.Skipped = true
		run.Summary.DuplicateSkipped = true
		d.cfg.Metrics.DuplicateSkipped()
		d.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "event already processed, skipped",
			slog.String("event_id", run.Record.Event.ID))
		return d.next.Step(ctx, run)
	case res == ports.ClaimBusy:
		// Another process is working on it (or died holding it): look again
		// after a fraction of the lease.
		return d.cfg.Now().Add(max(d.cfg.Lease/4, 100*time.Millisecond)), false
	default:
		setState(run, dedupClaimed)
		// Keep the claim while the actions run: an action longer than the
		// lease must not let another process claim and run the event too.
		stop := d.heartbeat(ctx, run.Record.Event.ID)
		defer stop()
	}
	next, done := d.next.Step(sctx, run)
	if done && sc != nil {
		// Finish sends the done mark, then waits for these writes.
		run.Values[dedupPutsKey] = sc
	} else {
		// A step that is not the last stores its successes before it ends:
		// a redelivery elsewhere must find them.
		sc.wait()
	}
	return next, done
}

// takePuts returns (and forgets) the result writes a done step left
// outstanding.
func takePuts(run *Run) *stepCache {
	sc, _ := run.Values[dedupPutsKey].(*stepCache)
	if sc != nil {
		delete(run.Values, dedupPutsKey)
	}
	return sc
}

// heartbeat renews the claim of eventID every Lease/3 until stopped. A
// renewal that finds the claim held elsewhere is logged (the lease ran out
// between renewals, e.g. the store was unreachable); store errors fail
// open as claims do.
func (d *Dedup) heartbeat(ctx context.Context, eventID string) (stop func()) {
	return every(ctx, max(d.cfg.Lease/3, time.Millisecond), func() {
		res, err := d.store.Claim(ctx, eventID, d.cfg.Token, d.cfg.Lease)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				d.open.report(ctx, "renew claim", err)
			}
		case res != ports.ClaimAcquired:
			d.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "dedup claim lost while the event's actions run",
				slog.String("event_id", eventID), slog.String("claim", res.String()))
		}
	})
}

// every runs f every interval (the next one interval after f returned)
// until stop, which returns once no f is running. A timer, not a
// goroutine: stopping costs no wake-up of another goroutine, and a step
// that ends before the first interval (nearly all) costs one timer.
func every(ctx context.Context, interval time.Duration, f func()) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		running sync.WaitGroup
		t       *time.Timer
	)
	beat := func() {
		mu.Lock()
		if stopped || ctx.Err() != nil {
			mu.Unlock()
			return
		}
		running.Add(1)
		mu.Unlock()
		defer running.Done()
		f()
		mu.Lock()
		if !stopped {
			t.Reset(interval)
		}
		mu.Unlock()
	}
	mu.Lock()
	t = time.AfterFunc(interval, beat)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
		running.Wait()
	}
}

// Finish marks the event done (unless it was a skipped duplicate), waits
// for the last step's result writes (sent before, so both travel
// together), then delegates.
func (d *Dedup) Finish(ctx context.Context, run *Run) {
	puts := takePuts(run)
	if run.Record.Err == nil && !run.Skipped && state(run) != dedupUnclaimed {
		if err := d.store.MarkDone(ctx, run.Record.Event.ID, d.cfg.Window); err != nil {
			d.open.report(ctx, "mark done", err)
		}
	}
	puts.wait()
	d.next.Finish(ctx, run)
}

// Abandon releases the claim so a redelivery can take the event at once,
// then delegates.
func (d *Dedup) Abandon(ctx context.Context, run *Run) {
	takePuts(run).wait()
	if state(run) == dedupClaimed {
		if err := d.store.Release(ctx, run.Record.Event.ID, d.cfg.Token); err != nil {
			d.open.report(ctx, "release", err)
		}
	}
	d.next.Abandon(ctx, run)
}

// GiveUp delegates; Finish marks the event done afterwards.
func (d *Dedup) GiveUp(ctx context.Context, run *Run, reason string) bool {
	return d.next.GiveUp(ctx, run, reason)
}
