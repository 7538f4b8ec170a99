package application

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// ErrNotRetryable marks a dead letter that cannot be re-run: an input that
// never became an event, or one whose observer or action is no longer
// configured.
var ErrNotRetryable = errors.New("dead letter cannot be retried")

// RetryOutcome is the real result of re-running one dead letter.
type RetryOutcome struct {
	ID        int64  `json:"id"`
	EventID   string `json:"event_id"`
	Observer  string `json:"observer"`
	Action    string `json:"action"`
	Succeeded bool   `json:"succeeded"`
	Error     string `json:"error,omitempty"`
}

// DeadLetterRetrier re-runs parked actions: only the action that failed,
// once, with the observer configuration in force now. A success removes
// the item; a failure keeps it with the new error and one more attempt.
type DeadLetterRetrier struct {
	Store    ports.DeadLetterStore
	Executor ports.ActionExecutor
	Matcher  func() *domain.Matcher
	Now      func() time.Time
}

// Retry re-runs dead letter id and reports what happened. The error is
// for failures to retry at all (unknown id, not retryable, store down),
// not for the action failing again, which the outcome reports.
func (r *DeadLetterRetrier) Retry(ctx context.Context, id int64) (RetryOutcome, error) {
	d, err := r.Store.Get(ctx, id)
	if err != nil {
		return RetryOutcome{ID: id}, fmt.Errorf("dead letter %d: %w", id, err)
	}
	out := RetryOutcome{ID: id, EventID: d.Event.ID, Observer: d.Observer, Action: d.Action}
	if d.Observer == "" {
		return out, fmt.Errorf("dead letter %d is an input that could not become an event (%s): %w", id, d.Error, ErrNotRetryable)
	}
	obs, ok := r.Matcher().Observer(d.Observer)
	if !ok {
		return out, fmt.Errorf("dead letter %d: observer %q is no longer configured: %w", id, d.Observer, ErrNotRetryable)
	}
	var act *domain.Action
	for i := range obs.Actions {
		if obs.Actions[i].Name == d.Action {
			act = &obs.Actions[i]
		}
	}
	if act == nil {
		return out, fmt.Errorf("dead letter %d: observer %q has no action %q any more: %w", id, d.Observer, d.Action, ErrNotRetryable)
	}
	ev := d.Event
	if len(d.Raw) > 0 {
		// The fallback form (the store refused the item as it was) keeps
		// the event's whole envelope in Raw.
		if full, err := domain.DecodeEvent(d.Raw); err == nil {
			ev = full
		}
	}
	if execErr := r.Executor.Execute(WithTrigger(ctx, TriggerDeadLetterRetry, d.Attempts+1), &ev, obs, act); execErr != nil {
		out.Error = execErr.Error()
		if err := r.Store.MarkRetried(ctx, id, execErr.Error(), r.now()); err != nil {
			return out, fmt.Errorf("dead letter %d: record failed retry: %w", id, err)
		}
		return out, nil
	}
	out.Succeeded = true
	if err := r.Store.Remove(ctx, id); err != nil {
		return out, fmt.Errorf("dead letter %d: the action succeeded but the item could not be removed: %w", id, err)
	}
	return out, nil
}

func (r *DeadLetterRetrier) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
