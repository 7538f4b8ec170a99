package application

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// This file is the processor's side of durable retries: parking
// unfinished actions in the retry store so the reader moves on.

// deferred handles an action its endpoint did not take (not an attempt):
// it runs again from d.Until; when the endpoint is down and there is a
// retry store, it is parked there without an attempt.
func (p *Processor) deferred(t *task, d *domain.DeferredError) {
	t.due = d.Until
	if now := p.cfg.Now(); t.due.Before(now) {
		t.due = now
	}
	if d.Reason == domain.DeferOpen && p.cfg.Retries != nil {
		t.park = true
		return
	}
	t.putOff = true
}

// parkMarked parks, per observer, the unfinished actions of run when one
// of them is marked: one item per event and observer.
func (p *Processor) parkMarked(ctx context.Context, run *Run) {
	if p.cfg.Retries == nil {
		return
	}
	var observers []*domain.Observer
	for _, t := range run.tasks {
		if t.park && !t.finished && !slices.Contains(observers, t.obs) {
			observers = append(observers, t.obs)
		}
	}
	parked := false
	for _, obs := range observers {
		if p.parkObserver(ctx, run, obs) {
			parked = true
		}
	}
	if parked {
		p.cfg.OnPark()
	}
}

// parkObserver parks every unfinished action of obs in run (those waiting
// for a dead-letter write excepted) as one item. When the store fails,
// attempted actions go back to in-memory retries; held ones (their key is
// blocked) try parking again later, never running ahead of their key.
// When it refuses the item for good (domain.ErrPermanent), the actions are
// dead-lettered.
func (p *Processor) parkObserver(ctx context.Context, run *Run, obs *domain.Observer) bool {
	ev := run.Event()
	now := p.cfg.Now()
	item := ports.RetryItem{Event: *ev, Observer: obs.Name, EntityKey: ev.EntityKey()}
	var group []*task
	attempted := false
	for _, t := range run.tasks {
		if t.obs != obs || t.finished || t.lastErr != nil {
			continue
		}
		group = append(group, t)
		attempted = attempted || t.attempts > 0
		item.Actions = append(item.Actions, ports.RetryAction{
			Action: t.act.Name, ActionType: t.act.Type, Endpoint: p.cfg.Endpoint(t.obs, t.act), Attempts: t.attempts,
			LastError: errText(t.failure), FirstFailure: t.firstFailure, Due: t.due,
		})
	}
	if len(group) == 0 {
		return false
	}
	// Counted before the item is in the store: a runner that completes it
	// at once then finds it counted (counted after, its completion could
	// come first and leave the key blocked with nothing parked). The
	// scheduler runs no later event of this entity meanwhile. A park that
	// failed may have committed all the same, so its count is kept (a
	// count too high only sends the key's events through the store until
	// the next Load; one too low would let them pass a parked item) and
	// serves the observer's next park of this event.
	carried := run.takeUncertain(obs)
	if p.cfg.Blocked != nil && !carried {
		p.cfg.Blocked.Add(obs.Name, item.EntityKey)
	}
	stored, created, err := p.cfg.Retries.Park(ctx, item)
	refused := err != nil && domain.IsPermanent(err) // nothing was stored
	switch {
	case refused:
		if p.cfg.Blocked != nil && !carried {
			p.cfg.Blocked.Done(obs.Name, item.EntityKey)
		}
		// A carried count stays: the earlier park whose answer was lost may
		// have stored an item (with other action errors) that this one's
		// content cannot match; too high is safe.
	case err != nil:
		run.uncertain = append(run.uncertain, obs)
	case created && carried && p.cfg.Blocked != nil:
		// The carried count may be spent: the runner may have completed
		// the item the lost answer stored. Count this one (too high is
		// safe).
		p.cfg.Blocked.Add(obs.Name, item.EntityKey)
	case !created && !carried && p.cfg.Blocked != nil:
		p.cfg.Blocked.Done(obs.Name, item.EntityKey) // the item was there, counted when it was stored
	}
	if refused {
		// Retrying cannot help (a value the store cannot hold): the
		// actions are dead-lettered (the dead-letter queue keeps a form of
		// any input) rather than held without end, which would stop the
		// checkpoint and, behind them, the entity.
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "the retry store refuses these actions for good; dead-lettering them",
			slog.String("event_id", ev.ID), slog.String("observer", obs.Name), slog.String("error", err.Error()))
		for _, t := range group {
			t.park, t.hold, t.due, t.report = false, false, now, true
			t.lastErr = fmt.Errorf("the retry store refused to park it: %w", err)
		}
		return false
	}
	if err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "cannot park actions in the retry store; retrying in memory",
			slog.String("event_id", ev.ID), slog.String("observer", obs.Name), slog.String("error", err.Error()))
		for _, t := range group {
			if t.hold {
				t.due = now.Add(p.cfg.DeadLetterRetryDelay)
			} else {
				t.park = false
			}
		}
		return false
	}
	if created {
		p.cfg.Delivery.Parked(stored.State)
	}
	for _, t := range group {
		t.finished, t.park, t.hold = true, false, false
		run.Summary.Add(domain.ActionDetail{Observer: obs.Name, Action: t.act.Name, ActionType: t.act.Type,
			Attempt: t.attempts, Outcome: domain.OutcomeParked, Error: errText(t.failure)})
	}
	level := slog.LevelDebug // held behind an earlier item, or its endpoint is down: no attempt made
	if attempted {
		level = slog.LevelWarn
	}
	if p.cfg.Logger.Enabled(ctx, level) {
		p.cfg.Logger.LogAttrs(ctx, level, "actions parked for retry",
			slog.String("event_id", ev.ID), slog.String("observer", obs.Name), slog.String("entity", item.EntityKey),
			slog.Int64("retry_id", stored.ID), slog.String("state", string(stored.State)), slog.Time("due", stored.Due),
			slog.Int("actions", len(group)))
	}
	return true
}

// parkForGood parks what is unfinished in run and that its observer's
// policy would still retry, for a run that will not be delivered again
// (GiveUp); it reports whether the run is done.
func (p *Processor) parkForGood(ctx context.Context, run *Run) bool {
	if p.cfg.Retries == nil {
		return false
	}
	now := p.cfg.Now()
	for _, t := range run.tasks {
		if t.finished || t.lastErr != nil {
			continue
		}
		since := time.Duration(0)
		if !t.firstFailure.IsZero() {
			since = now.Sub(t.firstFailure)
		}
		if t.attempts == 0 || t.obs.Retry.ShouldRetry(t.attempts, since) {
			t.park = true
		}
	}
	p.parkMarked(ctx, run)
	_, done := p.next(run)
	return done
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// takeUncertain removes obs from r.uncertain, reporting whether it was
// there.
func (r *Run) takeUncertain(obs *domain.Observer) bool {
	for i, o := range r.uncertain {
		if o == obs {
			r.uncertain = slices.Delete(r.uncertain, i, i+1)
			return true
		}
	}
	return false
}
