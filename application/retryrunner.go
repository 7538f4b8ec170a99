package application

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// The triggers of an attempt, as the delivery log records them.
const (
	TriggerLive            = "live"      // the event's first processing
	TriggerRetry           = "retry"     // the retry runner, for a parked action
	TriggerResend          = "resend"    // an operator's resend
	TriggerDeadLetterRetry = "dlq_retry" // an operator's dlq retry
)

// RetryRunnerConfig tunes the RetryRunner.
type RetryRunnerConfig struct {
	// Holder names this process in its claims (required).
	Holder string
	// BatchSize bounds the items claimed by one query (default 64).
	BatchSize int
	// Concurrency is how many items run at once (default 32); items of
	// one key run one after the other.
	Concurrency int
	// ClaimTTL is how long a claim lasts without renewal (default 5m);
	// it is renewed every ClaimTTL/3 while an item's actions run, so no
	// other runner takes an item in progress. A runner that dies leaves
	// its items to others after it.
	ClaimTTL time.Duration
	// PollInterval is how often the store is asked for due items when
	// nothing wakes the runner (default 1s).
	PollInterval time.Duration
	// ShutdownGrace bounds how long Run waits for items in progress after
	// its context ends (default 30s).
	ShutdownGrace time.Duration
	// Skip names the endpoints whose items are left alone for now (open
	// circuits not due for a probe, endpoints at their limits; default
	// none) and when one of them may be tried again: the runner looks
	// again then rather than after a whole PollInterval.
	Skip func() (skip []string, until time.Time)
	// Blocked is told about completed items (local topologies).
	Blocked  *BlockedKeys
	Logger   *slog.Logger
	Metrics  ports.Metrics
	Delivery ports.DeliveryMetrics
	Now      func() time.Time
	Jitter   func() float64
}

// RetryRunner runs the parked actions that are due: it claims due items
// in bounded batches (memory stays flat however many are parked), runs
// their due actions through the executor stack and settles each item:
// completed (the key's next item becomes due, and runs next in the same
// goroutine), rescheduled with the observer's backoff, or with actions
// dead-lettered once the policy gives up. An action its endpoint defers is
// not an attempt. Several runners (processes) may share a store: claims
// keep them apart.
type RetryRunner struct {
	store   ports.RetryStore
	exec    ports.ActionExecutor
	matcher func() *domain.Matcher
	cfg     RetryRunnerConfig
	wake    chan struct{}
	freed   chan struct{}
	errLog  logLimiter
	claims  atomic.Uint64  // numbers the holders of claims (see newHolder)
	renew   *pulse[string] // renews the claims of the holders whose items run
}

// NewRetryRunner builds a runner; Run starts it.
func NewRetryRunner(store ports.RetryStore, exec ports.ActionExecutor, matcher func() *domain.Matcher, cfg RetryRunnerConfig) (*RetryRunner, error) {
	if store == nil || exec == nil || matcher == nil || cfg.Logger == nil || cfg.Holder == "" {
		return nil, errors.New("retry runner: store, executor, matcher, logger and holder are required")
	}
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 64)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 32)
	cfg.ClaimTTL = cmp.Or(cfg.ClaimTTL, 5*time.Minute)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, time.Second)
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, 30*time.Second)
	if cfg.BatchSize < 1 || cfg.Concurrency < 1 || cfg.ClaimTTL <= 0 || cfg.PollInterval <= 0 {
		return nil, errors.New("retry runner: batch size, concurrency, claim ttl and poll interval must be positive")
	}
	if cfg.Skip == nil {
		cfg.Skip = func() ([]string, time.Time) { return nil, time.Time{} }
	}
	cfg.Metrics = cmp.Or[ports.Metrics](cfg.Metrics, ports.NopMetrics{})
	cfg.Delivery = cmp.Or[ports.DeliveryMetrics](cfg.Delivery, ports.NopDeliveryMetrics{})
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	r := &RetryRunner{store: store, exec: exec, matcher: matcher, cfg: cfg,
		wake: make(chan struct{}, 1), freed: make(chan struct{}, 1),
		errLog: logLimiter{interval: 10 * time.Second, now: cfg.Now}}
	r.renew = newPulse(cfg.ClaimTTL/3, r.renewClaims)
	return r, nil
}

// Wake makes the runner look for due items now (after items were parked
// or an endpoint recovered).
func (r *RetryRunner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *RetryRunner) claim(holder string) ports.RetryClaim {
	return ports.RetryClaim{Holder: holder, Now: r.cfg.Now(), TTL: r.cfg.ClaimTTL}
}

// newHolder names the claims of one store call: this process's Holder and
// a number. A call whose answer is lost (a connection lost after commit)
// may have claimed items nobody runs; releasing its holder frees them at
// once rather than after ClaimTTL, and touches no item in progress.
func (r *RetryRunner) newHolder() string {
	return r.cfg.Holder + "/" + strconv.FormatUint(r.claims.Add(1), 10)
}

// claimDue claims up to limit due items under a new holder, which their
// settlements keep; when the call fails, it releases that holder.
func (r *RetryRunner) claimDue(ctx context.Context, limit int, skip []string) (string, []ports.RetryItem, error) {
	holder := r.newHolder()
	items, err := r.store.ClaimDue(ctx, r.claim(holder), limit, skip)
	if err == nil {
		return holder, items, nil
	}
	if _, rerr := r.store.Release(ctx, holder); rerr != nil {
		err = fmt.Errorf("%w (releasing what it may have claimed failed too, those items wait out their claim: %w)", err, rerr)
	}
	return "", nil, err
}

// Run claims and runs due items until ctx ends, then waits (up to
// ShutdownGrace) for the items in progress and returns nil. An item
// interrupted by shutdown, or claimed as ctx ended, is released unchanged
// (or, if the process dies, taken again when its claim expires).
func (r *RetryRunner) Run(ctx context.Context) error {
	// work ends ShutdownGrace after ctx: the items in progress, and a
	// claim under way, get that long to settle.
	work, endWork := graceContext(ctx, r.cfg.ShutdownGrace)
	defer endWork()
	// acts, the actions' context, ends with work, and at once when the
	// lease of the term the runner runs in is lost: another holder may
	// take the items over now (the store calls still get the grace, so
	// the items are released rather than left claimed for ClaimTTL).
	acts, endActs := leaseContext(ctx, work)
	defer endActs()
	slots := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for ctx.Err() == nil {
		free := cap(slots) - len(slots)
		if free == 0 {
			select {
			case <-ctx.Done():
			case <-r.freed:
			}
			continue
		}
		limit := min(free, r.cfg.BatchSize)
		skip, until := r.cfg.Skip()
		// Claimed under work, not ctx: a claim cut off by ctx may have been
		// committed without its answer read (PostgreSQL), and those items
		// would stay claimed for ClaimTTL, their keys' events held back,
		// by a runner that no longer exists. Claimed items that ctx
		// ended meanwhile go to chain, which releases them unchanged.
		holder, items, err := r.claimDue(work, limit, skip)
		if err != nil {
			if ok, suppressed := r.errLog.allow(); ok && ctx.Err() == nil {
				r.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "cannot claim parked retries, will retry",
					slog.String("error", err.Error()), slog.Int("suppressed_since_last_warning", suppressed))
			}
			r.idle(ctx, time.Time{})
			continue
		}
		for _, it := range items {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() {
					<-slots
					select {
					case r.freed <- struct{}{}:
					default:
					}
				}()
				r.chain(ctx, work, acts, holder, it)
			})
		}
		if len(items) < limit {
			r.idle(ctx, until)
		}
	}
	wg.Wait()
	return nil
}

// RunDue runs every item due now, one after the other, and returns how
// many it ran (a key's next items included): what Run does in one pass,
// without concurrency. For tools and tests.
func (r *RetryRunner) RunDue(ctx context.Context) (int, error) {
	n := 0
	for {
		skip, _ := r.cfg.Skip()
		holder, items, err := r.claimDue(ctx, r.cfg.BatchSize, skip)
		if err != nil {
			return n, fmt.Errorf("claim parked retries: %w", err)
		}
		if len(items) == 0 {
			return n, nil
		}
		for _, it := range items {
			h := holder // the batch's; a next item Complete hands over comes with its own
			for claimed := true; claimed; n++ {
				it, h, claimed = r.runItem(ctx, ctx, ctx, h, it)
			}
		}
	}
}

// idle waits for a wake-up, the poll interval (or until, when a skipped
// endpoint may be tried again sooner) or the end of ctx.
func (r *RetryRunner) idle(ctx context.Context, until time.Time) {
	wait := r.cfg.PollInterval
	if !until.IsZero() {
		wait = min(wait, max(until.Sub(r.cfg.Now()), time.Millisecond))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-r.wake:
	case <-t.C:
	}
}

// chain runs it, claimed for holder, then each next item of its key that
// Complete hands over.
func (r *RetryRunner) chain(ctx, work, acts context.Context, holder string, it ports.RetryItem) {
	for {
		next, nextHolder, claimed := r.runItem(ctx, work, acts, holder, it)
		if !claimed {
			return
		}
		if ctx.Err() != nil {
			r.settle(work, nextHolder, next, next.Actions, nil, nil)
			return
		}
		it, holder = next, nextHolder
	}
}

// runItem runs the due actions of it, claimed for holder, and settles it;
// it returns the key's next item when Complete claimed it, and the holder
// it claimed it for.
func (r *RetryRunner) runItem(ctx, work, acts context.Context, holder string, it ports.RetryItem) (ports.RetryItem, string, bool) {
	// The claim is renewed while the actions run: several slow actions
	// could outlast it, and another runner (this one's next look too)
	// would run the item again, and its key's next item before it ended.
	b := r.renew.start(work, holder)
	defer r.renew.stop(b)
	obs, known := r.matcher().Observer(it.Observer)
	var remaining []ports.RetryAction
	var dead []ports.DeadLetter
	var logged []ports.RetryAction // failed for good, on_failure = log
	for _, a := range it.Actions {
		if a.Due.After(r.cfg.Now()) || ctx.Err() != nil {
			remaining = append(remaining, a)
			continue
		}
		var act *domain.Action
		if known {
			act = findAction(obs, a.Action)
		}
		if act == nil {
			dead = append(dead, r.deadLetter(it, a, fmt.Errorf("observer %q has no action %q any more (its configuration changed); last error: %s", it.Observer, a.Action, a.LastError)))
			continue
		}
		a, outcome := r.attempt(acts, it, obs, act, a)
		switch outcome {
		case attemptSucceeded:
		case attemptPending:
			remaining = append(remaining, a)
		case attemptFailed:
			if obs.OnFailure == domain.FailureLog {
				logged = append(logged, a)
			} else {
				dead = append(dead, r.deadLetter(it, a, errors.New(a.LastError)))
			}
		}
	}
	next, nextHolder, claimed, ok := r.settle(work, holder, it, remaining, dead, logged)
	if !ok {
		return ports.RetryItem{}, "", false
	}
	return next, nextHolder, claimed
}

type attemptOutcome int

const (
	attemptSucceeded attemptOutcome = iota
	attemptPending                  // not run (deferred, interrupted) or failed and retried later
	attemptFailed                   // failed for good
)

// attempt runs one parked action and returns it updated.
func (r *RetryRunner) attempt(ctx context.Context, it ports.RetryItem, obs *domain.Observer, act *domain.Action, a ports.RetryAction) (ports.RetryAction, attemptOutcome) {
	attempt := a.Attempts + 1
	actx, note := withAttemptNote(ctx, attempt)
	note.trigger = TriggerRetry
	start := r.cfg.Now()
	err := r.exec.Execute(actx, &it.Event, obs, act)
	now := r.cfg.Now()
	took := now.Sub(start)
	if d, ok := domain.AsDeferred(err); ok {
		a.Due = d.Until // not an attempt
		if a.Due.Before(now) {
			a.Due = now
		}
		return a, attemptPending
	}
	if err != nil && ctx.Err() != nil {
		return a, attemptPending // interrupted by shutdown: not an attempt
	}
	log := r.cfg.Logger.With(slog.String("event_id", it.Event.ID), slog.String("observer", it.Observer),
		slog.String("action", a.Action), slog.Int64("retry_id", it.ID), slog.Int("attempt", attempt))
	a.Attempts = attempt
	if err == nil {
		outcome := domain.OutcomeSucceeded
		if note.cached {
			outcome = domain.OutcomeCached
		}
		r.cfg.Metrics.ActionExecuted(domain.ActionDetail{Observer: it.Observer, Action: a.Action, ActionType: act.Type, Attempt: attempt, Outcome: outcome, Duration: took})
		log.LogAttrs(ctx, slog.LevelDebug, "parked action succeeded")
		return a, attemptSucceeded
	}
	if a.FirstFailure.IsZero() {
		a.FirstFailure = now
	}
	a.LastError = err.Error()
	if !domain.IsPermanent(err) && obs.Retry.ShouldRetry(attempt, now.Sub(a.FirstFailure)) {
		delay := max(obs.Retry.Delay(attempt, r.cfg.Jitter()), domain.RetryAfter(err))
		a.Due = now.Add(delay)
		r.cfg.Metrics.ActionExecuted(domain.ActionDetail{Observer: it.Observer, Action: a.Action, ActionType: act.Type, Attempt: attempt, Outcome: domain.OutcomeRetrying, Duration: took})
		r.cfg.Metrics.RetryScheduled(act.Type)
		log.LogAttrs(ctx, slog.LevelWarn, "parked action failed, retry scheduled",
			slog.Duration("retry_in", delay), slog.String("retry_limits", obs.Retry.Limits()), slog.String("error", a.LastError))
		return a, attemptPending
	}
	outcome := domain.OutcomeDeadLettered
	if obs.OnFailure == domain.FailureLog {
		outcome = domain.OutcomeFailedLogged
	}
	r.cfg.Metrics.ActionExecuted(domain.ActionDetail{Observer: it.Observer, Action: a.Action, ActionType: act.Type, Attempt: attempt, Outcome: outcome, Duration: took})
	return a, attemptFailed
}

// renewClaims renews holder's claims for ClaimTTL: the beat (r.renew)
// of an item whose actions run, at most every ClaimTTL/3.
func (r *RetryRunner) renewClaims(ctx context.Context, holder string) {
	if _, err := r.store.Renew(ctx, holder, r.cfg.Now().Add(r.cfg.ClaimTTL)); err != nil && ctx.Err() == nil {
		r.cfg.Logger.Warn("cannot renew the claim of a parked item whose actions run; another runner may take it when the claim ends",
			slog.String("holder", holder), slog.String("error", err.Error()))
	}
}

func (r *RetryRunner) deadLetter(it ports.RetryItem, a ports.RetryAction, cause error) ports.DeadLetter {
	return ports.DeadLetter{Event: it.Event, Observer: it.Observer, Action: a.Action, ActionType: a.ActionType,
		Error: cause.Error(), Attempts: a.Attempts}
}

// settle completes or reschedules it, claimed for holder, retrying a
// failing store a few times; ok is false when it could not (the claim
// expires and the item is run again: at least once). Complete claims the
// key's next item for a new holder, nextHolder: when a Complete's answer
// was lost, that holder is released, so the next item runs at the next
// look instead of after ClaimTTL.
func (r *RetryRunner) settle(ctx context.Context, holder string, it ports.RetryItem, remaining []ports.RetryAction, dead []ports.DeadLetter, logged []ports.RetryAction) (next ports.RetryItem, nextHolder string, claimed, ok bool) {
	var err error
	failed := false // a try failed: it may have committed without its answer
	if len(remaining) == 0 {
		nextHolder = r.newHolder()
	}
	for try := range 4 {
		if try > 0 && !sleep(ctx, time.Duration(try)*time.Second) {
			break
		}
		if len(remaining) > 0 {
			if err = r.store.Reschedule(ctx, it.ID, holder, remaining, dead); err == nil {
				r.rescheduled(ctx, it, remaining, dead, logged)
				return ports.RetryItem{}, "", false, true
			}
		} else {
			c := r.claim(holder)
			c.Next = nextHolder
			next, claimed, err = r.store.Complete(ctx, it, c, dead)
			if err == nil || (failed && errors.Is(err, ports.ErrNotFound)) {
				// Not found after a failed try: that try completed it and
				// its answer, with the next item, was lost.
				r.completed(ctx, it, dead, logged)
				if err != nil {
					r.release(ctx, nextHolder)
					return ports.RetryItem{}, "", false, true
				}
				return next, nextHolder, claimed, true
			}
		}
		if errors.Is(err, ports.ErrClaimLost) || errors.Is(err, ports.ErrNotFound) {
			break
		}
		failed = true
	}
	level, msg := slog.LevelError, "cannot settle a parked item; it runs again when its claim expires"
	if len(remaining) > 0 && failed && errors.Is(err, ports.ErrClaimLost) {
		// Reschedule releases the claim: a failed try whose answer was
		// lost leaves exactly this. (A Complete that committed leaves the
		// item gone, handled above.)
		level, msg = slog.LevelWarn, "a parked item's claim was gone when its settlement was retried: the failed try most likely settled it (else its new holder runs it)"
	}
	r.cfg.Logger.LogAttrs(ctx, level, msg,
		slog.Int64("retry_id", it.ID), slog.String("event_id", it.Event.ID), slog.String("observer", it.Observer), slog.String("error", err.Error()))
	if level == slog.LevelWarn {
		// Counted and logged as the settlement it most likely was: its
		// dead letters are stored, and an alert on them must see them.
		r.rescheduled(ctx, it, remaining, dead, logged)
	}
	if nextHolder != "" && failed {
		r.release(ctx, nextHolder) // the last try may have completed it and claimed the next
	}
	return ports.RetryItem{}, "", false, false
}

// rescheduled counts and logs it rescheduled with remaining.
func (r *RetryRunner) rescheduled(ctx context.Context, it ports.RetryItem, remaining []ports.RetryAction, dead []ports.DeadLetter, logged []ports.RetryAction) {
	r.cfg.Delivery.RetrySettled(settleOutcome(it.Actions, remaining))
	r.settled(ctx, it, dead, logged)
}

// completed counts and logs it completed.
func (r *RetryRunner) completed(ctx context.Context, it ports.RetryItem, dead []ports.DeadLetter, logged []ports.RetryAction) {
	r.cfg.Delivery.RetrySettled("completed")
	if r.cfg.Blocked != nil {
		r.cfg.Blocked.Done(it.Observer, it.EntityKey)
	}
	r.settled(ctx, it, dead, logged)
}

// release drops holder's claims (a store call's whose answer was lost),
// logging when it cannot: those items then wait out their claim.
func (r *RetryRunner) release(ctx context.Context, holder string) {
	if _, err := r.store.Release(ctx, holder); err != nil {
		r.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "cannot release the claims of a store call whose answer was lost; those items run when their claim expires",
			slog.String("holder", holder), slog.String("error", err.Error()))
	}
}

// settled logs and counts the actions an item gave up on.
func (r *RetryRunner) settled(ctx context.Context, it ports.RetryItem, dead []ports.DeadLetter, logged []ports.RetryAction) {
	for _, d := range dead {
		r.cfg.Metrics.DeadLettered()
		r.cfg.Logger.LogAttrs(ctx, slog.LevelError, "action dead-lettered",
			slog.String("event_id", it.Event.ID), slog.String("entity_type", it.Event.EntityType), slog.String("entity_id", it.Event.EntityID),
			slog.String("observer", d.Observer), slog.String("action", d.Action), slog.Int("attempts", d.Attempts), slog.String("error", d.Error))
	}
	for _, a := range logged {
		r.cfg.Logger.LogAttrs(ctx, slog.LevelError, "action failed for good (on_failure = log)",
			slog.String("event_id", it.Event.ID), slog.String("entity_type", it.Event.EntityType), slog.String("entity_id", it.Event.EntityID),
			slog.String("observer", it.Observer), slog.String("action", a.Action), slog.Int("attempts", a.Attempts), slog.String("error", a.LastError))
	}
}

// settleOutcome tells a rescheduled item from one released unchanged.
func settleOutcome(before, after []ports.RetryAction) string {
	if len(before) != len(after) {
		return "rescheduled"
	}
	for i := range before {
		if before[i].Attempts != after[i].Attempts {
			return "rescheduled"
		}
	}
	return "released"
}

func findAction(obs *domain.Observer, name string) *domain.Action {
	for i := range obs.Actions {
		if obs.Actions[i].Name == name {
			return &obs.Actions[i]
		}
	}
	return nil
}

// leaseContext returns work, ended at once when ctx ends because its
// lease was lost (context.Cause wraps ports.ErrLeaseLost), and the
// function that ends it, for when the work is done.
func leaseContext(ctx, work context.Context) (context.Context, func()) {
	acts, cancel := context.WithCancelCause(work)
	stop := context.AfterFunc(ctx, func() {
		if cause := context.Cause(ctx); errors.Is(cause, ports.ErrLeaseLost) {
			cancel(cause)
		}
	})
	return acts, func() { stop(); cancel(context.Canceled) }
}

// graceContext returns a context that ends grace after ctx does (the work
// in progress at shutdown gets that long) and the function that ends it
// at once, for when the work is done.
func graceContext(ctx context.Context, grace time.Duration) (context.Context, func()) {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return work, func() { stop(); cancel() }
}
