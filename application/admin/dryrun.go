package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// DryRun runs an event against observers without side effects: which
// observers match, how their conditions evaluate and what each action
// would do, as its action adapter describes it (no network, no database).
type DryRun struct {
	// Previewers describe the actions, per action type; an action of a
	// type without one is listed without details.
	Previewers map[domain.ActionType]ports.ActionPreviewer
}

// DebugReport is a dry run of one event.
type DebugReport struct {
	Event domain.Event `json:"event"`
	// ChangesComputed is true when changes were derived from before and
	// data (the input had a pre-image and no changes).
	ChangesComputed bool `json:"changes_computed"`
	// Matched are the observers whose entity and event kinds fit the event.
	Matched []DebugObserver `json:"matched"`
	// NotMatched are the other observers, with the reason.
	NotMatched []DebugSkip `json:"not_matched"`
}

// DebugObserver is one matching observer's evaluation.
type DebugObserver struct {
	Name      string `json:"name"`
	Condition string `json:"condition"` // "" when the observer has none (always true)
	// Result is the condition's value; the actions run only when true.
	Result  bool          `json:"result"`
	Trace   []DebugTrace  `json:"trace,omitempty"`
	Actions []DebugAction `json:"actions"`
}

// DebugTrace is one sub-expression of a condition and its value.
type DebugTrace struct {
	Expr   string `json:"expr"`
	Column int    `json:"column"`
	Depth  int    `json:"depth"`
	Value  any    `json:"value"`
}

// DebugSkip is an observer that does not match, and why.
type DebugSkip struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// DebugAction is what one action would do with the event. Its JSON puts
// Details under the action's type: {"name", "type", "webhook": {...}}.
type DebugAction struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Missing lists the template placeholders the event has no value for.
	Missing []string `json:"missing_placeholders,omitempty"`
	// Problem says why the action would fail without sending anything.
	Problem string `json:"problem,omitempty"`
	// Details is the previewer's description (nil without a previewer).
	Details any `json:"-"`
	// Lines render Details as text.
	Lines []string `json:"-"`
}

// MarshalJSON writes the fields, then Details keyed by the action type.
func (a DebugAction) MarshalJSON() ([]byte, error) {
	type plain DebugAction
	b, err := json.Marshal(plain(a))
	if err != nil || a.Details == nil {
		return b, err
	}
	key, err := json.Marshal(a.Type)
	if err != nil {
		return nil, err
	}
	d, err := json.Marshal(a.Details)
	if err != nil {
		return nil, fmt.Errorf("encode %s details: %w", a.Type, err)
	}
	out := append(b[:len(b)-1:len(b)-1], ',')
	out = append(append(append(out, key...), ':'), d...)
	return append(out, '}'), nil
}

// DryRunEventID stands in for the id of an event given to the dry run
// without one.
const DryRunEventID = "00000000-0000-0000-0000-000000000000"

// DecodeEvent reads an event in the envelope format of domain.DecodeEvent
// (id, event_type, entity_type, entity_id, data, before, changes,
// tenant_id, user_id, timestamp, source). An event without an id gets the
// placeholder DryRunEventID (a dry run needs none). When before is present
// and changes is absent on an UPDATE, changes are computed as the change
// log does; computed reports it.
func DecodeEvent(input []byte) (ev domain.Event, computed bool, err error) {
	input = bytes.TrimSpace(input)
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.UseNumber() // re-encoding keeps numbers exactly as written
	if dec.Decode(&m) == nil && m != nil && !dec.More() {
		if _, ok := m["id"]; !ok {
			m["id"] = DryRunEventID
			if b, err := json.Marshal(m); err == nil {
				input = b
			}
		}
	}
	ev, err = domain.DecodeEvent(input)
	if err != nil {
		return ev, false, err
	}
	if ev.Before != nil && ev.Changes == nil && ev.EventType == domain.EventUpdate {
		ev.Changes = domain.ComputeChanges(ev.Before, ev.Data)
		computed = true
	}
	return ev, computed, nil
}

// Run dry-runs ev against observers.
func (d DryRun) Run(ev domain.Event, changesComputed bool, observers []domain.Observer) DebugReport {
	rep := DebugReport{Event: ev, ChangesComputed: changesComputed, Matched: []DebugObserver{}, NotMatched: []DebugSkip{}}
	m := domain.NewMatcher(observers)
	matched := map[string]bool{}
	for _, o := range m.Match(&rep.Event) {
		matched[o.Name] = true
		rep.Matched = append(rep.Matched, d.observer(&rep.Event, o))
	}
	for _, o := range m.Observers() {
		if matched[o.Name] {
			continue
		}
		reason := fmt.Sprintf("handles %s events, not %s", eventList(o.Events), ev.EventType)
		if o.Entity != "*" && o.Entity != ev.EntityType {
			reason = fmt.Sprintf("entity %s, not %s", o.Entity, ev.EntityType)
		}
		rep.NotMatched = append(rep.NotMatched, DebugSkip{Name: o.Name, Reason: reason})
	}
	return rep
}

func eventList(ts []domain.EventType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func (d DryRun) observer(ev *domain.Event, o *domain.Observer) DebugObserver {
	out := DebugObserver{Name: o.Name, Condition: o.Condition.Source(), Result: o.Condition.Eval(ev)}
	for _, t := range o.Condition.Explain(ev) {
		out.Trace = append(out.Trace, DebugTrace{Expr: t.Expr, Column: t.Column, Depth: t.Depth, Value: t.Value})
	}
	for i := range o.Actions {
		act := &o.Actions[i]
		a := DebugAction{Name: act.Name, Type: string(act.Type)}
		if p, ok := d.Previewers[act.Type]; ok {
			pv := p.Preview(ev, o, act)
			a.Missing, a.Problem, a.Details, a.Lines = pv.Missing, pv.Problem, pv.Details, pv.Lines
		}
		out.Actions = append(out.Actions, a)
	}
	return out
}
