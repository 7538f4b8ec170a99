package memory

import (
	"maps"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// cloneEvent deep-copies the JSON values of ev so the store and its callers
// never share mutable maps or slices.
func cloneEvent(ev domain.Event) domain.Event {
	ev.Data = cloneObject(ev.Data)
	ev.Before = cloneObject(ev.Before)
	if ev.Changes != nil {
		changes := make(map[string]domain.Change, len(ev.Changes))
		for k, c := range ev.Changes {
			changes[k] = domain.Change{Old: cloneValue(c.Old), New: cloneValue(c.New)}
		}
		ev.Changes = changes
	}
	return ev
}

func cloneObject(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := maps.Clone(m)
	for k, v := range out {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneObject(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	default:
		return v
	}
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
