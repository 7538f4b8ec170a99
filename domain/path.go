package domain

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Path is a compiled reference to a value of an event, as written in
// conditions and templates: a bare name (`status`) or a dotted path
// (`customer.tier`) reads the event's data; the roots `data.`, `before.`,
// `changes.` and `event.` select the after-image, the pre-image, the diff
// and the event's metadata.
type Path struct {
	Root     PathRoot
	Segments []string
}

// PathRoot is the part of an event a Path starts from.
type PathRoot int

// The roots a path may start from.
const (
	RootData PathRoot = iota
	RootBefore
	RootChanges
	RootEvent
)

// EventFields are the names readable under `event.`.
var EventFields = []string{"id", "event_type", "entity_type", "entity_id", "tenant_id", "user_id", "timestamp", "source"}

// ParsePath compiles a dotted reference. It fails for empty segments and for
// unknown `event.` fields, which can be known when observers load.
func ParsePath(s string) (Path, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	for _, p := range parts {
		if p == "" {
			return Path{}, fmt.Errorf("invalid path %q: empty segment", s)
		}
	}
	root := RootData
	switch parts[0] {
	case "data":
		parts = parts[1:]
	case "before":
		root, parts = RootBefore, parts[1:]
	case "changes":
		root, parts = RootChanges, parts[1:]
	case "event":
		root, parts = RootEvent, parts[1:]
		if len(parts) != 1 {
			return Path{}, fmt.Errorf("invalid path %q: event. takes one of %s", s, strings.Join(EventFields, ", "))
		}
		known := false
		for _, f := range EventFields {
			known = known || f == parts[0]
		}
		if !known {
			return Path{}, fmt.Errorf("unknown event field %q (known: %s)", parts[0], strings.Join(EventFields, ", "))
		}
	}
	return Path{Root: root, Segments: parts}, nil
}

// String renders the path as written.
func (p Path) String() string {
	prefix := [...]string{"data", "before", "changes", "event"}[p.Root]
	if len(p.Segments) == 0 {
		return prefix
	}
	if p.Root == RootData {
		return strings.Join(p.Segments, ".")
	}
	return prefix + "." + strings.Join(p.Segments, ".")
}

// Resolve reads the value the path points at; ok is false when any segment
// is missing.
func (p Path) Resolve(ev *Event) (any, bool) {
	var cur any
	switch p.Root {
	case RootData:
		cur = ev.Data
	case RootBefore:
		if ev.Before == nil {
			return nil, false
		}
		cur = ev.Before
	case RootChanges:
		if ev.Changes == nil {
			return nil, false
		}
		if len(p.Segments) == 0 {
			m := make(map[string]any, len(ev.Changes))
			for k, c := range ev.Changes {
				m[k] = map[string]any{"old": c.Old, "new": c.New}
			}
			return m, true
		}
		c, ok := ev.Changes[p.Segments[0]]
		if !ok {
			return nil, false
		}
		rest := p.Segments[1:]
		if len(rest) == 0 {
			return map[string]any{"old": c.Old, "new": c.New}, true
		}
		switch rest[0] {
		case "old":
			cur = c.Old
		case "new":
			cur = c.New
		default:
			return nil, false
		}
		return resolveIn(cur, rest[1:])
	case RootEvent:
		return ev.metadata(p.Segments[0]), true
	}
	return resolveIn(cur, p.Segments)
}

// resolveIn walks segments down nested objects.
func resolveIn(cur any, segments []string) (any, bool) {
	for _, seg := range segments {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (e *Event) metadata(field string) any {
	switch field {
	case "id":
		return e.ID
	case "event_type":
		return string(e.EventType)
	case "entity_type":
		return e.EntityType
	case "entity_id":
		return e.EntityID
	case "tenant_id":
		return nullIfEmpty(e.TenantID)
	case "user_id":
		return nullIfEmpty(e.UserID)
	case "timestamp":
		return e.Timestamp.UTC().Format(time.RFC3339Nano)
	case "source":
		return nullIfEmpty(e.Source)
	}
	return nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// FormatValue renders a JSON value as text: strings as they are, null as
// the empty string, numbers and booleans as literals, objects and arrays as
// JSON.
func FormatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "true"
		}
		return "false"
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}
