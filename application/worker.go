package application

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// WorkerConfig tunes the Worker.
type WorkerConfig struct {
	// Concurrency is how many messages are processed at once (default 32).
	Concurrency int
	// InProgressInterval is how often a long-running message tells the
	// broker it is still being worked on (default 10s; keep it well under
	// the consumer's ack wait).
	InProgressInterval time.Duration
	// RetryDelay is the wait before retrying a failed dead-letter write
	// (default 1s).
	RetryDelay time.Duration
	// ShutdownGrace bounds how long the steps in progress at shutdown may
	// go on (default 30s, as the scheduler's): then their actions'
	// context is cancelled, and their runs are abandoned and their
	// messages naked for redelivery elsewhere.
	ShutdownGrace time.Duration
	// Batch, when positive, takes up to Batch messages beyond Concurrency
	// from the bus and prepares them (RunProcessor.Prepare: with Dedup,
	// claims them) while earlier ones run, and prepares and finishes runs
	// together, up to Batch at a time (with Dedup: one ClaimMany, one
	// MarkDoneMany; each lingers up to 1 ms for more while the worker is
	// busy, see gang.linger); a message's step does not wait for its
	// claim, and finishing holds no step slot. Zero prepares nothing ahead and
	// finishes each message alone.
	Batch int
	// Unwanted, when set, tells the events that need no run (see
	// Processor.Unwanted): their messages are acked at once.
	Unwanted func(ports.Record) bool
	Logger   *slog.Logger
	// Metrics counts what the processor does not see: a message that is
	// not an event, dead-lettered (default: none).
	Metrics ports.Metrics
	Now     func() time.Time
}

// Worker processes events delivered by the bus. A message is acked only
// after its event is finished (every action succeeded or was parked); a
// transient failure naks it with the delay the observer's retry policy
// asks for; on the broker's last delivery the unfinished actions are
// parked in the durable retry store (those the policy would still retry)
// or dead-lettered, and the message terminated, so nothing is left stuck. A body
// that is not an event is dead-lettered with its raw bytes and terminated.
type Worker struct {
	consumer ports.EventConsumer
	proc     RunProcessor
	dlq      ports.DeadLetterSink
	cfg      WorkerConfig
	// With cfg.Batch: steps holds a token per message stepping (at most
	// Concurrency), prep and fin gather runs to prepare and to finish.
	steps     chan struct{}
	prep, fin *gang
	beats     *pulse[ports.Delivery] // in-progress signals of messages running
}

// NewWorker builds a worker.
func NewWorker(consumer ports.EventConsumer, proc RunProcessor, dlq ports.DeadLetterSink, cfg WorkerConfig) (*Worker, error) {
	if consumer == nil || proc == nil || dlq == nil || cfg.Logger == nil {
		return nil, errors.New("worker: consumer, processor, dead letters and logger are required")
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 32)
	cfg.InProgressInterval = cmp.Or(cfg.InProgressInterval, 10*time.Second)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, time.Second)
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, 30*time.Second)
	if cfg.Metrics == nil {
		cfg.Metrics = ports.NopMetrics{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Batch < 0 {
		return nil, errors.New("worker: batch must not be negative")
	}
	w := &Worker{consumer: consumer, proc: proc, dlq: dlq, cfg: cfg}
	w.beats = newPulse(cfg.InProgressInterval, w.inProgress)
	if cfg.Batch > 0 {
		w.steps = make(chan struct{}, cfg.Concurrency)
		w.prep = newGang(cfg.Batch, proc.Prepare)
		w.fin = newGang(cfg.Batch, proc.Finish)
		// While every step slot is taken, a prepared run waits for one
		// anyway: its claim may wait for others' (see gang.linger). While
		// half are, runs finish soon after each other.
		w.prep.busy = func() bool { return len(w.steps) == cap(w.steps) }
		w.fin.busy = func() bool { return len(w.steps) >= max(cap(w.steps)/2, 1) }
	}
	return w, nil
}

// Run consumes until ctx ends. Messages in progress at shutdown finish
// their current step, for up to ShutdownGrace (then their actions are
// cancelled); unfinished ones are naked for immediate redelivery
// elsewhere, but for those on their last delivery, which are parked or
// dead-lettered and terminated (see giveUp).
func (w *Worker) Run(ctx context.Context) error {
	w.cfg.Logger.Info("worker started", slog.Int("concurrency", w.cfg.Concurrency))
	// Handlers get a context that survives shutdown so the step in progress
	// can finish and its message can be acked or naked; the steps' actions
	// get one that ends ShutdownGrace after ctx.
	work := context.WithoutCancel(ctx)
	acts, endActs := graceContext(ctx, w.cfg.ShutdownGrace)
	defer endActs()
	err := w.consumer.Consume(ctx, w.cfg.Concurrency+w.cfg.Batch, func(_ context.Context, d ports.Delivery) {
		w.handle(ctx, work, acts, d)
	})
	w.cfg.Logger.Info("worker stopped")
	return err
}

func (w *Worker) handle(ctx, work, acts context.Context, d ports.Delivery) {
	ev, err := domain.DecodeEvent(d.Data())
	if err != nil {
		w.parkUndecodable(ctx, work, d, err)
		return
	}
	// warn logs a failed answer to the broker; the attributes are built
	// only then (a logger With them per message cost 4% of a worker's CPU).
	warn := func(msg string, err error) {
		w.cfg.Logger.Warn(msg, slog.String("event_id", ev.ID), slog.Int("delivery", d.Attempt()), slog.String("error", err.Error()))
	}
	rec := ports.Record{Event: ev, Headers: d.Headers()}
	if w.cfg.Unwanted != nil && w.cfg.Unwanted(rec) {
		if err := d.Ack(work); err != nil {
			warn("ack failed", err)
		}
		return
	}
	run := w.proc.Start(work, rec)
	run.Attempt = d.Attempt()

	hb := w.beats.start(work, d)
	// stepped: the run took a step slot (or the worker keeps none); at
	// shutdown one still waiting for a slot does not step.
	stepped := true
	if w.steps != nil {
		w.prep.do(work, run)
		select {
		case w.steps <- struct{}{}:
		case <-ctx.Done():
			stepped = false
		}
	}
	var next time.Time
	done := false
	if stepped {
		next, done = w.proc.Step(acts, run)
		// Actions only put off, briefly, by their endpoints (a rate
		// limit, a concurrency cap) step again here, the message kept in
		// progress: a nak counts a delivery, and the next delivery's
		// attempt number is the broker's count, so each put-off nak
		// counted as an attempt nobody made (actions dead-lettered, or
		// given up at max_deliver, after none). A retry after a failure
		// is still a later delivery.
		for !done && ctx.Err() == nil && run.PutOff() {
			wait := next.Sub(w.cfg.Now())
			if wait > stepAgainWithin || !sleep(ctx, max(wait, time.Millisecond)) {
				break
			}
			next, done = w.proc.Step(acts, run)
		}
	}
	gaveUp := false
	if !done && d.LastAttempt() {
		// The broker will not deliver it again, at shutdown included: a
		// nak would lose it.
		gaveUp = w.giveUp(ctx, work, run)
		done = gaveUp
	}
	if stepped && w.steps != nil {
		<-w.steps     // finishing holds no step slot
		w.prep.poke() // a slot is free: a lingering claim need not wait
		w.fin.poke()
	}
	w.beats.stop(hb)

	switch {
	case gaveUp:
		// Parked in the dead-letter queue: terminate so it is never
		// redelivered (nor left stuck at max_deliver).
		w.finish(work, run)
		if err := d.Term(work); err != nil {
			warn("term failed", err)
		}
	case done:
		w.finish(work, run)
		if err := d.Ack(work); err != nil {
			// The broker redelivers it; dedup and the result cache keep the
			// actions from repeating.
			warn("ack failed", err)
		}
	case ctx.Err() != nil:
		w.proc.Abandon(work, run)
		if err := d.Nak(work, 0); err != nil {
			warn("nak at shutdown failed; the broker redelivers after the ack wait", err)
		}
	default:
		w.proc.Abandon(work, run)
		delay := max(next.Sub(w.cfg.Now()), 0)
		if err := d.Nak(work, delay); err != nil {
			warn("nak failed; the broker redelivers after the ack wait", err)
		}
	}
}

// stepAgainWithin is how soon a message's next step must be due for the
// worker to wait for it holding the message, rather than nak it for a
// later delivery.
const stepAgainWithin = time.Second

// giveUp parks run's unfinished actions in the durable retry store (those
// the policy would still retry) or dead-letters them: its message is on
// its last delivery (see persist). False: it could not before shutdown's
// grace ended, and the caller naks.
func (w *Worker) giveUp(ctx, work context.Context, run *Run) bool {
	if w.persist(ctx, work, true, func() bool { return w.proc.GiveUp(work, run, "delivery limit reached (consumer max_deliver)") }) {
		return true
	}
	w.cfg.Logger.Error("a message on its last delivery could not be parked or dead-lettered before shutdown; the broker will not deliver it again",
		slog.String("event_id", run.Event().ID))
	return false
}

// persist calls store until it succeeds, every RetryDelay, keeping the
// message in progress while the store is down (a refusal for good is
// stored in its fallback form, so it never loops for that). Once
// shutdown began it goes on for up to ShutdownGrace when lastDelivery
// (the broker would not deliver the message again: a nak would lose it)
// and stops at once otherwise (the message is naked for a later
// delivery). It reports whether store succeeded.
func (w *Worker) persist(ctx, work context.Context, lastDelivery bool, store func() bool) bool {
	var deadline time.Time
	for !store() {
		if sleep(ctx, w.cfg.RetryDelay) {
			continue
		}
		if !lastDelivery {
			return false
		}
		if deadline.IsZero() {
			deadline = w.cfg.Now().Add(w.cfg.ShutdownGrace)
		}
		if !w.cfg.Now().Before(deadline) {
			return false
		}
		sleep(work, w.cfg.RetryDelay)
	}
	return true
}

// finish finishes run, with the others finishing meanwhile when batching.
func (w *Worker) finish(ctx context.Context, run *Run) {
	if w.fin != nil {
		w.fin.do(ctx, run)
		return
	}
	w.proc.Finish(ctx, run)
}

// inProgress tells the broker the message is still being worked on: the
// heartbeat (w.beats) of a message in progress, every InProgressInterval
// at most.
func (w *Worker) inProgress(ctx context.Context, d ports.Delivery) {
	if err := d.InProgress(ctx); err != nil {
		w.cfg.Logger.Warn("in-progress signal failed", slog.String("error", err.Error()))
	}
}

// parkUndecodable dead-letters a body that is not an event and terminates
// the message; while the dead-letter store is down it keeps retrying (the
// message stays in progress) until shutdown, when the message is naked
// for a later delivery instead (on its last delivery, after up to
// ShutdownGrace more tries).
func (w *Worker) parkUndecodable(ctx, work context.Context, d ports.Delivery, cause error) {
	b := w.beats.start(work, d)
	defer w.beats.stop(b)
	raw := append([]byte(nil), d.Data()...)
	stored := w.persist(ctx, work, d.LastAttempt(), func() bool {
		err := parkDeadLetter(work, w.dlq, w.cfg.Logger, ports.DeadLetter{Error: cause.Error(), Attempts: d.Attempt(), Raw: raw}, "")
		if err != nil {
			w.cfg.Logger.Error("dead-letter write for an undecodable message failed, will retry", slog.String("error", err.Error()))
		}
		return err == nil
	})
	if !stored {
		if err := d.Nak(work, 0); err != nil {
			w.cfg.Logger.Warn("nak at shutdown failed; the broker redelivers after the ack wait", slog.String("error", err.Error()))
		}
		return
	}
	w.cfg.Metrics.EventProcessed("invalid") // events_failed{invalid}, events_deserialization_failures
	w.cfg.Metrics.DeadLettered()
	w.cfg.Logger.Error("undecodable message dead-lettered and terminated", slog.String("error", cause.Error()))
	if err := d.Term(work); err != nil {
		w.cfg.Logger.Warn("term failed", slog.String("error", err.Error()))
	}
}
