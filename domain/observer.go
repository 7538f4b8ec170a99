package domain

import (
	"errors"
	"fmt"
	"slices"
)

// FailurePolicy says what happens to an action after its last attempt.
type FailurePolicy string

// The failure policies.
const (
	FailureDLQ FailurePolicy = "dlq"
	FailureLog FailurePolicy = "log"
)

// Observer is a rule: when an event of Entity (or any entity for "*") and
// one of Events satisfies Condition, run Actions.
type Observer struct {
	Name      string
	Entity    string
	Events    []EventType
	Condition *Condition // nil: always true
	OnFailure FailurePolicy
	Retry     RetryPolicy
	Actions   []Action
}

// Validate checks the observer on its own; ValidateObservers checks a set.
func (o *Observer) Validate() error {
	if o.Name == "" {
		return errors.New("observer without name")
	}
	if o.Entity == "" {
		return fmt.Errorf("observer %q: entity is empty", o.Name)
	}
	if len(o.Events) == 0 {
		return fmt.Errorf("observer %q: events is empty", o.Name)
	}
	for _, e := range o.Events {
		if _, err := ParseEventType(string(e)); err != nil {
			return fmt.Errorf("observer %q: events: %q is not one of INSERT, UPDATE, DELETE, CUSTOM", o.Name, e)
		}
	}
	switch o.OnFailure {
	case FailureDLQ, FailureLog:
	default:
		return fmt.Errorf("observer %q: on_failure must be dlq or log, got %q", o.Name, o.OnFailure)
	}
	if err := o.Retry.Validate(); err != nil {
		return fmt.Errorf("observer %q: retry: %w", o.Name, err)
	}
	if len(o.Actions) == 0 {
		return fmt.Errorf("observer %q: no actions", o.Name)
	}
	names := map[string]bool{}
	for i, a := range o.Actions {
		if err := a.Validate(); err != nil {
			return fmt.Errorf("observer %q: actions[%d]: %w", o.Name, i, err)
		}
		if names[a.Name] {
			return fmt.Errorf("observer %q: actions[%d]: duplicate action name %q", o.Name, i, a.Name)
		}
		names[a.Name] = true
	}
	return nil
}

// Handles reports whether the observer listens to events of type t. Events
// are compared as ParseEventType reads them, so "update" in a configuration
// (which Validate accepts) handles UPDATE.
func (o *Observer) Handles(t EventType) bool {
	return slices.ContainsFunc(o.Events, func(e EventType) bool {
		n, err := ParseEventType(string(e))
		return err == nil && n == t
	})
}

// ValidateObservers validates each observer and that names are unique.
func ValidateObservers(obs []Observer) error {
	seen := map[string]bool{}
	for i := range obs {
		if err := obs[i].Validate(); err != nil {
			return err
		}
		if seen[obs[i].Name] {
			return fmt.Errorf("observer %q: name used twice", obs[i].Name)
		}
		seen[obs[i].Name] = true
	}
	return nil
}

// Matcher finds the observers interested in an event. Observers of the
// exact entity come first, then those of "*", each group in configuration
// order. Safe for concurrent use; build a new one to change observers.
type Matcher struct {
	byEntity map[string][]*Observer
	wildcard []*Observer
	all      []*Observer
}

// NewMatcher indexes observers. The slice must not be modified afterwards.
func NewMatcher(obs []Observer) *Matcher {
	m := &Matcher{byEntity: map[string][]*Observer{}}
	for i := range obs {
		o := &obs[i]
		m.all = append(m.all, o)
		if o.Entity == "*" {
			m.wildcard = append(m.wildcard, o)
		} else {
			m.byEntity[o.Entity] = append(m.byEntity[o.Entity], o)
		}
	}
	return m
}

// Observers returns every observer in configuration order.
func (m *Matcher) Observers() []*Observer { return m.all }

// Acting returns the observers that act on ev: those Match returns whose
// condition holds, in Match's order, and how many of Match's have a false
// condition.
func (m *Matcher) Acting(ev *Event) (acting []*Observer, falseConditions int) {
	matched := m.Match(ev)
	acting = matched[:0] // Match returns a fresh slice: filtered in place
	for _, o := range matched {
		if !o.Condition.Eval(ev) {
			falseConditions++
			continue
		}
		acting = append(acting, o)
	}
	return acting, falseConditions
}

// Entities returns the entity types some observer names, sorted, and
// whether an observer of "*" takes every entity (entities is then nil):
// events of other entities match no observer.
func (m *Matcher) Entities() (entities []string, every bool) {
	if len(m.wildcard) > 0 {
		return nil, true
	}
	entities = make([]string, 0, len(m.byEntity))
	for e := range m.byEntity {
		entities = append(entities, e)
	}
	slices.Sort(entities)
	return entities, false
}

// Observer returns the observer with the given name.
func (m *Matcher) Observer(name string) (*Observer, bool) {
	for _, o := range m.all {
		if o.Name == name {
			return o, true
		}
	}
	return nil, false
}

// Match returns the observers whose entity and event kinds fit ev, before
// conditions are evaluated.
func (m *Matcher) Match(ev *Event) []*Observer {
	var out []*Observer
	for _, o := range m.byEntity[ev.EntityType] {
		if o.Handles(ev.EventType) {
			out = append(out, o)
		}
	}
	for _, o := range m.wildcard {
		if o.Handles(ev.EventType) {
			out = append(out, o)
		}
	}
	return out
}

// ObserverName is o's name, "" for nil (an action run without its
// observer, as a dead-letter retry may).
func ObserverName(o *Observer) string {
	if o == nil {
		return ""
	}
	return o.Name
}
