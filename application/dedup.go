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
	// together with the claim (Prepare: of a whole batch in one call),
	// and leave the successes of a run's last step to Finish, which
	// stores them (in one call for its runs) only where the done mark
	// does not cover them. Each lookup keeps its own result and
	// fail-open report.
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
	beats *pulse[string] // renews the claims of running steps

	// owners is the run of this process holding each event's claim. The
	// store knows one token per process, so a second run of the same
	// event here (a bus that delivers it again while the first runs: an
	// ack wait that ran out) would find the claim its own and run the
	// actions too; the second is told busy instead.
	mu     sync.Mutex
	owners map[string]*Run
}

var _ RunProcessor = (*Dedup)(nil)

// dedupRun is Dedup's state of one run.
type dedupRun struct {
	state dedupState
	// prepared is the claim Prepare took for the first Step.
	prepared *preparedClaim
	// puts is the stepCache of a step that reported done: its result
	// writes go out in Finish, together with the done mark.
	puts *stepCache
}

// preparedClaim is a claim Prepare took (with its batch) and the answers
// to the first step's cache lookups. A Step uses it while it is fresh (a
// third of the lease old at most, so the heartbeat that starts with the
// step renews the claim in time); after that the Step claims again.
type preparedClaim struct {
	res   ports.ClaimResult
	err   error
	at    time.Time
	cache *stepCache
}

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
	d := &Dedup{next: next, store: store, cfg: cfg, open: newFailOpen("dedup", cfg.Logger, cfg.Metrics, cfg.Now), owners: map[string]*Run{}}
	d.beats = newPulse(cfg.Lease/3, d.renew)
	return d, nil
}

// own records run as the holder of its event's claim in this process;
// false when another run of this process holds it.
func (d *Dedup) own(run *Run) bool {
	id := run.Record.Event.ID
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.owners[id]; ok && r != run {
		return false
	}
	d.owners[id] = run
	return true
}

// disown forgets run as its event's holder (when it is).
func (d *Dedup) disown(run *Run) {
	id := run.Record.Event.ID
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.owners[id] == run {
		delete(d.owners, id)
	}
}

func state(run *Run) dedupState { return run.dedup.state }

func setState(run *Run, s dedupState) { run.dedup.state = s }

// Start delegates; the claim is taken by Prepare or the first Step.
func (d *Dedup) Start(ctx context.Context, rec ports.Record) *Run { return d.next.Start(ctx, rec) }

// Prepare claims the runs' events in one ClaimMany and, at the same time,
// looks up the results of their first steps' actions in one GetMany (one
// round trip for both when the store offers ports.ClaimLookUp): a batch of
// events costs one or two round trips instead of one (shared) per event
// on the path of its actions. The claims wait in each run for its first
// Step, and so do the lookups (that Step waits for their answer if it has
// not come yet).
func (d *Dedup) Prepare(ctx context.Context, runs ...*Run) {
	defer d.next.Prepare(ctx, runs...)
	claim := make([]*Run, 0, len(runs))
	ids := make([]string, 0, len(runs))
	for _, run := range runs {
		if run.Record.Err != nil || run.Skipped || state(run) != dedupUnclaimed {
			continue
		}
		claim = append(claim, run)
		ids = append(ids, run.Record.Event.ID)
	}
	if len(claim) == 0 {
		return
	}
	now := d.cfg.Now()
	var (
		keys   []string
		counts = make([]int, len(claim)) // keys per run of claim
	)
	if d.cfg.Cache != nil {
		for i, run := range claim {
			due := dueResultKeys(run, now)
			keys = append(keys, due...)
			counts[i] = len(due)
		}
	}
	ls, res, err := d.claimLookUp(ctx, ids, keys)
	off := 0
	for i, run := range claim {
		p := &preparedClaim{err: err, at: now}
		if err == nil {
			p.res = res[i]
			switch {
			case p.res != ports.ClaimAcquired:
			case d.own(run):
				setState(run, dedupClaimed) // Abandon releases it
			default:
				p.res = ports.ClaimBusy // another run of this process holds it
			}
		}
		if n := counts[i]; n > 0 {
			p.cache = d.cfg.Cache.newStepCache(keys[off:off+n], ls[off:off+n])
			off += n
		}
		run.dedup.prepared = p
	}
}

// claimLookUp claims ids and looks up keys (none: no lookup): in one round
// trip when the store holds the cache's entries too (ports.ClaimLookUp),
// else the lookups in the background (waited for by the Step that takes
// them) while the claims are made.
func (d *Dedup) claimLookUp(ctx context.Context, ids, keys []string) ([]cacheLookup, []ports.ClaimResult, error) {
	if len(keys) == 0 {
		res, err := d.store.ClaimMany(ctx, ids, d.cfg.Token, d.cfg.Lease)
		return nil, res, err
	}
	if cl, ok := d.store.(ports.ClaimLookUp); ok {
		if r, ok := cl.ClaimManyLookUp(ctx, ids, d.cfg.Token, d.cfg.Lease, d.cfg.Cache.cache, keys); ok {
			return lookedUp(len(keys), r.Hits, r.LookUpErr), r.Claims, r.ClaimErr
		}
	}
	ls := d.cfg.Cache.lookUp(ctx, keys)
	res, err := d.store.ClaimMany(ctx, ids, d.cfg.Token, d.cfg.Lease)
	return ls, res, err
}

// takePrepared returns (and forgets) what Prepare left for run, if it is
// still fresh at now.
func (d *Dedup) takePrepared(run *Run, now time.Time) *preparedClaim {
	p := run.dedup.prepared
	if p == nil {
		return nil
	}
	run.dedup.prepared = nil
	if now.Sub(p.at) >= d.cfg.Lease/3 {
		if state(run) == dedupClaimed {
			setState(run, dedupUnclaimed) // the claim may have run out: claim again
		}
		return nil
	}
	return p
}

// Step claims (or renews the claim of) the event, then delegates. A done
// event is skipped; a claim held elsewhere is retried after a short wait.
func (d *Dedup) Step(ctx context.Context, run *Run) (time.Time, bool) {
	if run.Record.Err != nil || run.Skipped || state(run) == dedupFailedOpen {
		return d.next.Step(ctx, run)
	}
	var (
		sctx = ctx
		sc   *stepCache
		res  ports.ClaimResult
		err  error
	)
	if p := d.takePrepared(run, d.cfg.Now()); p != nil {
		res, err, sc = p.res, p.err, p.cache
		if sc != nil {
			sctx = sc.in(ctx)
		}
	} else {
		// The due actions' cache lookups go out with the claim; they are
		// used only if the claim is ours (a lookup before the claim sees
		// what one after it would: only a claim holder stores successes).
		var keys []string
		if d.cfg.Cache != nil {
			keys = dueResultKeys(run, d.cfg.Now())
		}
		ls, claims, cerr := d.claimLookUp(ctx, []string{run.Record.Event.ID}, keys)
		if err = cerr; err == nil {
			res = claims[0]
		}
		if len(keys) > 0 {
			sc = d.cfg.Cache.newStepCache(keys, ls)
			sctx = sc.in(ctx)
		}
	}
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
	case res == ports.ClaimBusy || !d.own(run):
		// Another process is working on it (or died holding it), or
		// another run of this one: look again after a fraction of the
		// lease.
		return d.cfg.Now().Add(max(d.cfg.Lease/4, 100*time.Millisecond)), false
	default:
		setState(run, dedupClaimed)
		// Keep the claim while the actions run: an action longer than the
		// lease must not let another process claim and run the event too.
		b := d.beats.start(ctx, run.Record.Event.ID)
		defer d.beats.stop(b)
	}
	next, done := d.next.Step(sctx, run)
	if done && sc != nil {
		// Finish stores these successes together with the done mark.
		run.dedup.puts = sc
	} else {
		// A step that is not the last stores its successes before it ends:
		// a redelivery elsewhere must find them.
		sctx, cancel := settleContext(ctx)
		sc.flush(sctx)
		cancel()
	}
	return next, done
}

// takePuts returns (and forgets) the successes a done step left to store.
func takePuts(run *Run) []string {
	sc := run.dedup.puts
	run.dedup.puts = nil
	return sc.takePuts() // nil-safe
}

// renew renews the claim of eventID: the heartbeat (d.beats) of a step
// whose actions run, at most every Lease/3. A renewal that finds the claim
// held elsewhere is logged (the lease ran out between renewals, e.g. the
// store was unreachable); store errors fail open as claims do.
func (d *Dedup) renew(ctx context.Context, eventID string) {
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
}

// Finish marks the runs' events done (except skipped duplicates) in one
// MarkDoneMany and returns once it answered, then delegates. The successes
// their last steps kept are stored only where the done mark does not
// already cover them: a done event is skipped whole when delivered again,
// so while the cache's TTL is within the dedup window its entries would
// never be read. Otherwise (a longer TTL, or a done mark that failed) one
// PutMany stores them.
func (d *Dedup) Finish(ctx context.Context, runs ...*Run) {
	ctx, cancel := settleContext(ctx)
	defer cancel()
	var puts, ids []string
	for _, run := range runs {
		puts = append(puts, takePuts(run)...)
		if run.Record.Err == nil && !run.Skipped && state(run) != dedupUnclaimed {
			ids = append(ids, run.Record.Event.ID)
		}
	}
	covered := d.cfg.Cache != nil && d.cfg.Cache.cfg.TTL <= d.cfg.Window
	stored := make(chan struct{})
	if len(puts) > 0 && !covered {
		go func() {
			defer close(stored)
			d.cfg.Cache.storeMany(ctx, puts)
		}()
	} else {
		close(stored)
	}
	if len(ids) > 0 {
		if err := d.store.MarkDoneMany(ctx, ids, d.cfg.Window); err != nil {
			d.open.report(ctx, "mark done", err)
			if covered {
				d.cfg.Cache.storeMany(ctx, puts) // a redelivery must find them
			}
		}
	}
	<-stored
	for _, run := range runs {
		d.disown(run)
	}
	d.next.Finish(ctx, runs...)
}

// Abandon stores the successes not stored yet, releases the claim so a
// redelivery can take the event at once, then delegates.
func (d *Dedup) Abandon(ctx context.Context, run *Run) {
	ctx, cancel := settleContext(ctx)
	defer cancel()
	if puts := takePuts(run); len(puts) > 0 {
		d.cfg.Cache.storeMany(ctx, puts)
	}
	if state(run) == dedupClaimed {
		if err := d.store.Release(ctx, run.Record.Event.ID, d.cfg.Token); err != nil {
			d.open.report(ctx, "release", err)
		}
	}
	d.disown(run)
	d.next.Abandon(ctx, run)
}

// settleTimeout bounds the store calls that settle a run (done marks,
// cached successes, a claim's release) once they no longer follow the
// caller's context.
const settleTimeout = 10 * time.Second

// settleContext is ctx without its cancellation, bounded by settleTimeout:
// what a run's actions did is recorded even when the caller's context
// ended meanwhile (a shutdown, a lost lease: the scheduler cancels its
// work at once then). A done mark or a release sent under a cancelled
// context failed, and the next holder found the claim busy until the
// lease ran out, then ran the whole event again, its successful webhooks
// included.
func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// GiveUp delegates; Finish marks the event done afterwards.
func (d *Dedup) GiveUp(ctx context.Context, run *Run, reason string) bool {
	return d.next.GiveUp(ctx, run, reason)
}
