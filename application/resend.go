package application

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// ErrNoSuchTarget marks a resend that names an observer or action that is
// not configured, or that does not observe the event.
var ErrNoSuchTarget = errors.New("no such observer or action for this event")

// ResendOutcome is what re-running one action of an event did.
type ResendOutcome struct {
	Observer   string            `json:"observer"`
	Action     string            `json:"action"`
	ActionType domain.ActionType `json:"action_type"`
	// Skipped says why the action was not run ("" when it ran).
	Skipped   string `json:"skipped,omitempty"`
	Succeeded bool   `json:"succeeded"`
	Error     string `json:"error,omitempty"`
}

// Resender re-runs the actions of an event that was delivered already
// (an operator's resend): through Executor (the dispatcher with the
// delivery recorder: no dedup, no result cache, no endpoint guard), once
// each, with the observers configured now. Attempts are recorded with
// trigger "resend".
type Resender struct {
	Executor ports.ActionExecutor
	Matcher  func() *domain.Matcher
}

// Resend runs the actions of ev: those of every observer that matches ev
// now (entity, kind and condition), or with observer set only that
// observer's (its entity and kinds must fit ev; its condition is not
// asked: the operator named it), and with action set only that action.
// The error is for a request that cannot run (ErrNoSuchTarget), not for
// actions that fail, which the outcomes report.
func (r *Resender) Resend(ctx context.Context, ev *domain.Event, observer, action string) ([]ResendOutcome, error) {
	m := r.Matcher()
	var observers []*domain.Observer
	var out []ResendOutcome
	if observer != "" {
		o, ok := m.Observer(observer)
		if !ok {
			return nil, fmt.Errorf("observer %q is not configured: %w", observer, ErrNoSuchTarget)
		}
		if !slices.Contains(m.Match(ev), o) {
			return nil, fmt.Errorf("observer %q does not observe %s %s events: %w", observer, ev.EventType, ev.EntityType, ErrNoSuchTarget)
		}
		observers = []*domain.Observer{o}
	} else {
		for _, o := range m.Match(ev) {
			if o.Condition != nil && !o.Condition.Eval(ev) {
				for _, a := range o.Actions {
					if action == "" || a.Name == action {
						out = append(out, ResendOutcome{Observer: o.Name, Action: a.Name, ActionType: a.Type, Skipped: "condition is false"})
					}
				}
				continue
			}
			observers = append(observers, o)
		}
	}
	if action != "" && observer == "" {
		// Action names are unique within an observer only: the same name
		// in several observers is not the one action the operator meant.
		var with []string
		for _, o := range observers {
			if slices.ContainsFunc(o.Actions, func(a domain.Action) bool { return a.Name == action }) {
				with = append(with, o.Name)
			}
		}
		if len(with) > 1 {
			return nil, fmt.Errorf("action %q is in %d observers of this event (%s): name one with the observer: %w",
				action, len(with), strings.Join(with, ", "), ErrNoSuchTarget)
		}
	}
	ran := false
	for _, o := range observers {
		for i := range o.Actions {
			act := &o.Actions[i]
			if action != "" && act.Name != action {
				continue
			}
			ran = true
			res := ResendOutcome{Observer: o.Name, Action: act.Name, ActionType: act.Type}
			if err := r.Executor.Execute(WithTrigger(ctx, TriggerResend, 0), ev, o, act); err != nil {
				res.Error = err.Error()
			} else {
				res.Succeeded = true
			}
			out = append(out, res)
		}
	}
	if !ran && action != "" {
		return out, fmt.Errorf("no observer of this event has an action %q: %w", action, ErrNoSuchTarget)
	}
	return out, nil
}
