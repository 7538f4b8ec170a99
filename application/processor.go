package application

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// RunProcessor drives one event through its life. The scheduler calls
// Start once, Prepare (optionally), Step until it reports done, then
// Finish; when shutdown leaves a run unfinished it calls Abandon instead
// of Finish. Prepare and Finish take several runs at once, so that a
// decorator can do their store work together (Dedup claims them, and
// marks them done, in one round trip each). Decorators (dedup) wrap a
// RunProcessor and add to each phase.
type RunProcessor interface {
	// Start matches observers and evaluates conditions; it performs no
	// action.
	Start(ctx context.Context, rec ports.Record) *Run
	// Prepare readies runs Start returned for their first Step; it
	// performs no action, and a Step works the same whether or not its
	// run was prepared.
	Prepare(ctx context.Context, runs ...*Run)
	// Step runs the actions that are due. It returns done=true when every
	// action is finished (succeeded, dead-lettered or logged, or parked in
	// the durable retry store), otherwise the time the next step is due.
	Step(ctx context.Context, run *Run) (next time.Time, done bool)
	// Finish is called once for each run after its Step reported done;
	// several runs may be finished in one call (under the caller's ctx,
	// not each run's).
	Finish(ctx context.Context, runs ...*Run)
	// Abandon is called when the run will not be finished by this process.
	Abandon(ctx context.Context, run *Run)
	// GiveUp finishes every unfinished action because the event will not
	// be delivered again: parked in the durable retry store when there is
	// one and the observer's policy retries it, else failed for good
	// (dead-lettered per on_failure). It reports whether the run is now
	// done (false when a dead-letter write failed; call again).
	GiveUp(ctx context.Context, run *Run, reason string) bool
}

// Run is the processing state of one event.
type Run struct {
	Record  ports.Record
	Summary domain.ExecutionSummary
	Started time.Time
	// Attempt is the attempt number the first Step uses (1 unless the
	// event was delivered before, as with JetStream redeliveries).
	Attempt int
	// Skipped marks a run that needs no work (a duplicate); Step reports
	// done at once.
	Skipped bool
	// The decorators' per-run state (typed fields rather than a map: a
	// map per event was a tenth of a Redis drain's allocations).
	dedup dedupRun
	span  ports.Span // TracedProcessor's span; nil when none

	tasks      []*task
	invalid    bool
	invalidDLQ bool // the invalid input is parked
	// uncertain lists the observers whose last park failed with an error
	// (it may have committed): the BlockedKeys count it took is kept and
	// serves their next park.
	uncertain []*domain.Observer
}

// Event returns the run's event.
func (r *Run) Event() *domain.Event { return &r.Record.Event }

// PutOff reports whether every unfinished action waits only because its
// endpoint put it off (a rate limit, a concurrency cap), none because it
// failed: its next step is no retry, and no attempt was made meanwhile.
func (r *Run) PutOff() bool {
	waiting := false
	for _, t := range r.tasks {
		if t.finished {
			continue
		}
		if !t.putOff {
			return false
		}
		waiting = true
	}
	return waiting
}

// Pending reports how many actions are not finished.
func (r *Run) Pending() int {
	n := 0
	for _, t := range r.tasks {
		if !t.finished {
			n++
		}
	}
	return n
}

type task struct {
	obs      *domain.Observer
	act      *domain.Action
	attempts int
	due      time.Time
	finished bool
	// lastErr is set when the last attempt failed for good but parking it
	// in the dead-letter queue has not succeeded yet.
	lastErr error
	// failure is the error of the latest failed attempt.
	failure error
	// firstFailure is when the first attempt failed (zero until then).
	firstFailure time.Time
	// park marks an unfinished action to be parked in the retry store at
	// the end of the step; hold marks one that must not be attempted
	// before it is (an earlier event of its key is parked, or its endpoint
	// is down).
	park, hold bool
	// report marks a task finished for good without an attempt recording
	// it (the retry store refused it): its finish adds the summary detail
	// and the action metric.
	report bool
	// putOff marks an action its endpoint put off (a rate limit, a
	// concurrency cap) since its last attempt: it waits without having
	// failed.
	putOff bool
}

// ProcessorConfig holds the processor's dependencies and tuning.
type ProcessorConfig struct {
	Executor    ports.ActionExecutor
	DeadLetters ports.DeadLetterSink
	Metrics     ports.Metrics
	Logger      *slog.Logger
	Now         func() time.Time
	Jitter      func() float64
	// DeadLetterRetryDelay is the wait before retrying a failed write to
	// the dead-letter queue (default 1s).
	DeadLetterRetryDelay time.Duration

	// Retries, when set, parks an action durably once it has failed its
	// observer's retry.in_memory_attempts (or its endpoint is down): the
	// action then counts as finished for the checkpoint and the retry
	// runner takes it over. Nil keeps every retry in memory.
	Retries ports.RetryStore
	// Blocked, when set (with Retries), holds back an observer's events of
	// an entity while that entity has parked items of the observer: they
	// are parked behind them without an attempt, in change-log order.
	Blocked *BlockedKeys
	// Endpoint names where an action delivers (default domain.Endpoint).
	Endpoint func(obs *domain.Observer, act *domain.Action) string
	// Delivery receives the parking metrics (default none).
	Delivery ports.DeliveryMetrics
	// OnPark is called after a step parked items (it wakes the runner).
	OnPark func()
}

// Processor is the base RunProcessor: event → observers → conditions →
// actions, with scheduled retries and dead-lettering.
type Processor struct {
	cfg     ProcessorConfig
	matcher atomic.Pointer[domain.Matcher]
}

var _ RunProcessor = (*Processor)(nil)

// NewProcessor builds a processor over the observers in m.
func NewProcessor(m *domain.Matcher, cfg ProcessorConfig) (*Processor, error) {
	if m == nil || cfg.Executor == nil || cfg.DeadLetters == nil || cfg.Logger == nil {
		return nil, errors.New("processor: matcher, executor, dead letters and logger are required")
	}
	cfg.Metrics = cmp.Or[ports.Metrics](cfg.Metrics, ports.NopMetrics{})
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	cfg.DeadLetterRetryDelay = cmp.Or(cfg.DeadLetterRetryDelay, time.Second)
	if cfg.Endpoint == nil {
		cfg.Endpoint = domain.Endpoint
	}
	cfg.Delivery = cmp.Or[ports.DeliveryMetrics](cfg.Delivery, ports.NopDeliveryMetrics{})
	if cfg.OnPark == nil {
		cfg.OnPark = func() {}
	}
	p := &Processor{cfg: cfg}
	p.matcher.Store(m)
	return p, nil
}

// SetMatcher replaces the observers for events started from now on; runs
// already started keep the observers they matched.
func (p *Processor) SetMatcher(m *domain.Matcher) { p.matcher.Store(m) }

// Matcher returns the observers in use.
func (p *Processor) Matcher() *domain.Matcher { return p.matcher.Load() }

// Start matches observers and evaluates their conditions.
func (p *Processor) Start(_ context.Context, rec ports.Record) *Run {
	now := p.cfg.Now()
	run := &Run{Record: rec, Started: now, Attempt: 1}
	run.Summary.EventID = rec.Event.ID
	if rec.Err != nil {
		run.invalid = true
		return run
	}
	ev := run.Event()
	acting, skipped := p.matcher.Load().Acting(ev)
	run.Summary.ConditionsSkipped += skipped
	p.conditionsSkipped(skipped)
	for _, obs := range acting {
		// An entity with parked items of this observer holds its later
		// events back: they are parked behind, in change-log order.
		held := p.cfg.Retries != nil && p.cfg.Blocked != nil && p.cfg.Blocked.HasEvent(obs.Name, ev)
		for i := range obs.Actions {
			act := &obs.Actions[i]
			run.tasks = append(run.tasks, &task{obs: obs, act: act, due: now, park: held, hold: held})
		}
	}
	return run
}

// Unwanted reports whether rec is a valid event no observer acts on: none
// matches its entity and kind, or the conditions of all that do are false.
// Such an event is finished as it is (counted as processed, outcome
// "no_match", with its false conditions) without a run: the scheduler
// need not queue it behind its entity, claim it or mark it done. An
// invalid record is never unwanted (it is dead-lettered).
func (p *Processor) Unwanted(rec ports.Record) bool {
	if rec.Err != nil {
		return false
	}
	acting, skipped := p.matcher.Load().Acting(&rec.Event)
	for _, obs := range acting {
		if len(obs.Actions) > 0 {
			return false
		}
	}
	p.conditionsSkipped(skipped)
	p.cfg.Metrics.EventProcessed("no_match")
	return true
}

// conditionsSkipped counts n observers whose condition was false.
func (p *Processor) conditionsSkipped(n int) {
	for range n {
		p.cfg.Metrics.ConditionSkipped()
	}
}

// Step runs the due actions of run one after the other.
func (p *Processor) Step(ctx context.Context, run *Run) (time.Time, bool) {
	if run.Skipped {
		return time.Time{}, true
	}
	if run.invalid {
		return p.parkInvalid(ctx, run)
	}
	for _, t := range run.tasks {
		if !t.dueAt(p.cfg.Now()) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if t.lastErr != nil {
			cause := t.lastErr
			p.finishFailed(ctx, run, t, cause)
			if t.finished && t.report {
				outcome := domain.OutcomeDeadLettered
				if t.obs.OnFailure == domain.FailureLog {
					outcome = domain.OutcomeFailedLogged
				}
				detail := domain.ActionDetail{Observer: t.obs.Name, Action: t.act.Name, ActionType: t.act.Type,
					Attempt: t.attempts, Outcome: outcome, Error: cause.Error()}
				p.cfg.Metrics.ActionExecuted(detail)
				run.Summary.Add(detail)
			}
			continue
		}
		p.attempt(ctx, run, t)
	}
	p.parkMarked(ctx, run)
	return p.next(run)
}

// dueAt reports whether a Step at now takes t up: unfinished, not marked
// for parking, and due.
func (t *task) dueAt(now time.Time) bool {
	return !t.finished && !t.park && !now.Before(t.due)
}

func (p *Processor) next(run *Run) (time.Time, bool) {
	var next time.Time
	done := true
	for _, t := range run.tasks {
		if t.finished {
			continue
		}
		done = false
		if next.IsZero() || t.due.Before(next) {
			next = t.due
		}
	}
	return next, done
}

func (p *Processor) attempt(ctx context.Context, run *Run, t *task) {
	ev := run.Event()
	if t.attempts == 0 && run.Attempt > 1 {
		t.attempts = run.Attempt - 1
	}
	attempt := t.attempts + 1
	start := p.cfg.Now()
	actx, note := withAttemptNote(ctx, attempt)
	err := p.cfg.Executor.Execute(actx, ev, t.obs, t.act)
	took := p.cfg.Now().Sub(start)
	if err != nil && ctx.Err() != nil {
		// Interrupted by shutdown: not an attempt; the event is re-read later.
		return
	}
	if d, ok := domain.AsDeferred(err); ok {
		p.deferred(t, d) // not an attempt
		return
	}
	t.putOff = false
	t.attempts = attempt
	detail := domain.ActionDetail{
		Observer: t.obs.Name, Action: t.act.Name, ActionType: t.act.Type,
		Attempt: attempt, Duration: took,
	}
	switch {
	case err == nil:
		detail.Outcome = domain.OutcomeSucceeded
		if note.cached {
			detail.Outcome = domain.OutcomeCached
		}
		t.finished = true
	case !domain.IsPermanent(err) && t.retries(attempt, p.cfg.Now()):
		t.failure = err
		delay := max(t.obs.Retry.Delay(attempt, p.cfg.Jitter()), domain.RetryAfter(err))
		t.due = p.cfg.Now().Add(delay)
		t.park = p.cfg.Retries != nil && t.obs.Retry.Parks(attempt)
		detail.Outcome = domain.OutcomeRetrying
		detail.Error = err.Error()
		p.cfg.Metrics.RetryScheduled(t.act.Type)
		p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "action failed, retry scheduled",
			slog.String("event_id", ev.ID), slog.String("observer", t.obs.Name), slog.String("action", t.act.Name),
			slog.Int("attempt", attempt), slog.String("retry_limits", t.obs.Retry.Limits()),
			slog.Duration("retry_in", delay), slog.String("error", err.Error()))
	default:
		detail.Error = err.Error()
		if t.obs.OnFailure == domain.FailureLog {
			detail.Outcome = domain.OutcomeFailedLogged
		} else {
			detail.Outcome = domain.OutcomeDeadLettered
		}
		p.finishFailed(ctx, run, t, err)
	}
	p.cfg.Metrics.ActionExecuted(detail)
	run.Summary.Add(detail)
	if note.cacheMiss {
		run.Summary.CacheMisses++
	}
}

// retries records a failed attempt at now and reports whether the
// observer's policy tries the action again.
func (t *task) retries(attempt int, now time.Time) bool {
	if t.firstFailure.IsZero() {
		t.firstFailure = now
	}
	return t.obs.Retry.ShouldRetry(attempt, now.Sub(t.firstFailure))
}

type attemptNoteKey struct{}

// attemptNote carries facts about one attempt between the processor (or
// the retry runner) and the executor decorators: the attempt number for
// the delivery log and tracing, and whether the result cache answered.
type attemptNote struct {
	attempt           int
	trigger           string // what ran the attempt: "live", "retry", "resend", "dlq_retry"
	cached, cacheMiss bool
}

func withAttemptNote(ctx context.Context, attempt int) (context.Context, *attemptNote) {
	n := &attemptNote{attempt: attempt, trigger: TriggerLive}
	return context.WithValue(ctx, attemptNoteKey{}, n), n
}

// MarkCached tells the processor that the attempt running under ctx was
// answered from the action-result cache (the cache decorator calls it).
func MarkCached(ctx context.Context) {
	if n, ok := ctx.Value(attemptNoteKey{}).(*attemptNote); ok {
		n.cached = true
	}
}

// MarkCacheMiss tells the processor that the cache had no result for the
// attempt running under ctx.
func MarkCacheMiss(ctx context.Context) {
	if n, ok := ctx.Value(attemptNoteKey{}).(*attemptNote); ok {
		n.cacheMiss = true
	}
}

// finishFailed parks a finally failed action (or only logs it, per the
// observer's on_failure). When the dead-letter write fails the task stays
// open and the write is retried after DeadLetterRetryDelay: nothing is
// finished that is not durably parked.
func (p *Processor) finishFailed(ctx context.Context, run *Run, t *task, cause error) {
	ev := run.Event()
	attrs := []slog.Attr{
		slog.String("event_id", ev.ID), slog.String("entity_type", ev.EntityType), slog.String("entity_id", ev.EntityID),
		slog.String("observer", t.obs.Name), slog.String("action", t.act.Name),
		slog.Int("attempts", t.attempts), slog.String("error", cause.Error()),
	}
	if t.obs.OnFailure == domain.FailureLog {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "action failed for good (on_failure = log)", attrs...)
		t.finished, t.lastErr = true, nil
		return
	}
	err := parkDeadLetter(ctx, p.cfg.DeadLetters, p.cfg.Logger, ports.DeadLetter{
		Event: *ev, Observer: t.obs.Name, Action: t.act.Name, ActionType: t.act.Type,
		Error: cause.Error(), Attempts: t.attempts,
	}, positionOf(run.Record))
	if err != nil {
		t.lastErr = cause
		t.due = p.cfg.Now().Add(p.cfg.DeadLetterRetryDelay)
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "dead-letter write failed, will retry",
			append(attrs, slog.String("dlq_error", err.Error()))...)
		return
	}
	p.cfg.Metrics.DeadLettered()
	p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "action dead-lettered", attrs...)
	t.finished, t.lastErr = true, nil
}

func (p *Processor) parkInvalid(ctx context.Context, run *Run) (time.Time, bool) {
	if run.invalidDLQ {
		return time.Time{}, true
	}
	rec := run.Record
	err := parkDeadLetter(ctx, p.cfg.DeadLetters, p.cfg.Logger, ports.DeadLetter{
		Event: rec.Event, Error: rec.Err.Error(), Attempts: 1, Raw: rec.Raw,
	}, positionOf(rec))
	if err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "dead-letter write for invalid input failed, will retry",
			slog.String("event_id", rec.Event.ID), slog.String("error", rec.Err.Error()), slog.String("dlq_error", err.Error()))
		return p.cfg.Now().Add(p.cfg.DeadLetterRetryDelay), false
	}
	run.invalidDLQ = true
	p.cfg.Metrics.DeadLettered()
	p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "invalid input dead-lettered",
		slog.String("event_id", rec.Event.ID), slog.String("position", rec.Position.String()), slog.String("error", rec.Err.Error()))
	return time.Time{}, true
}

// Prepare does nothing for the base processor.
func (p *Processor) Prepare(context.Context, ...*Run) {}

// Finish logs each run's summary and counts the event.
func (p *Processor) Finish(ctx context.Context, runs ...*Run) {
	for _, run := range runs {
		p.finish(ctx, run)
	}
}

func (p *Processor) finish(ctx context.Context, run *Run) {
	outcome := "ok"
	switch {
	case run.invalid:
		outcome = "invalid"
	case run.Skipped:
		outcome = "duplicate"
	case len(run.tasks) == 0:
		outcome = "no_match"
	case run.Summary.FailedActions > 0 && p.anyFinalFailure(run):
		outcome = "failed"
	case run.Summary.ParkedActions > 0:
		outcome = "parked"
	}
	p.cfg.Metrics.EventProcessed(outcome)
	if !p.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		return // skip building the attributes on the hot path
	}
	s := run.Summary
	p.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "event processed",
		slog.String("event_id", s.EventID), slog.String("outcome", outcome),
		slog.Int("successful_actions", s.SuccessfulActions), slog.Int("failed_actions", s.FailedActions), slog.Int("parked_actions", s.ParkedActions),
		slog.Int("conditions_skipped", s.ConditionsSkipped), slog.Bool("duplicate_skipped", s.DuplicateSkipped),
		slog.Int("cache_hits", s.CacheHits), slog.Int("cache_misses", s.CacheMisses),
		slog.Duration("actions_duration", s.Duration), slog.Duration("elapsed", p.cfg.Now().Sub(run.Started)))
}

func (p *Processor) anyFinalFailure(run *Run) bool { return run.Summary.FinalFailures > 0 }

// GiveUp parks every unfinished action of run with reason and the last
// error it saw.
func (p *Processor) GiveUp(ctx context.Context, run *Run, reason string) bool {
	if run.invalid {
		_, done := p.parkInvalid(ctx, run)
		return done
	}
	if p.parkForGood(ctx, run) {
		return true
	}
	for _, t := range run.tasks {
		if t.finished {
			continue
		}
		cause := t.lastErr
		if cause == nil {
			cause = errors.New(reason)
			if t.failure != nil {
				cause = fmt.Errorf("%s; last error: %w", reason, t.failure)
			}
		}
		p.finishFailed(ctx, run, t, cause)
		if t.finished {
			outcome := domain.OutcomeDeadLettered
			if t.obs.OnFailure == domain.FailureLog {
				outcome = domain.OutcomeFailedLogged
			}
			run.Summary.Add(domain.ActionDetail{Observer: t.obs.Name, Action: t.act.Name, ActionType: t.act.Type,
				Attempt: t.attempts, Outcome: outcome, Error: cause.Error()})
		}
	}
	_, done := p.next(run)
	return done
}

// Abandon does nothing for the base processor: an unfinished event is read
// again after a restart because the checkpoint never passed it.
func (p *Processor) Abandon(context.Context, *Run) {}

// String describes a run for logs.
func (r *Run) String() string {
	return fmt.Sprintf("event %s (%s %s/%s)", r.Record.Event.ID, r.Record.Event.EventType, r.Record.Event.EntityType, r.Record.Event.EntityID)
}
