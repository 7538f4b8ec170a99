// Package porttest holds one conformance suite per port. Every adapter's
// tests run the suite of the ports it implements; an adapter is done when
// it passes. Each subtest calls the constructor itself, so adapters must
// hand out an isolated instance (fresh schema, key prefix, stream) per call.
package porttest

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// waitTimeout bounds every wait for an asynchronous outcome. It is a
// correctness timeout, not a speed target.
const waitTimeout = 10 * time.Second

// sampleData is nested JSON with numbers kept as json.Number, including
// ones a float64 would round, to prove adapters keep values exactly.
func sampleData(i int) map[string]any {
	return map[string]any{
		"index":  json.Number(fmt.Sprint(i)),
		"status": "shipped",
		"total":  json.Number("100.00"),
		"big":    json.Number("12345678901234567890123"),
		"ratio":  json.Number("-0.5"),
		"paid":   true,
		"note":   nil,
		"name":   "Zoë \"quoted\" <tag> & ünïcode",
		"customer": map[string]any{
			"email": "a@example.com",
			"tier":  "gold",
			"address": map[string]any{
				"zip":   "75001",
				"lines": []any{"1 rue X", json.Number("2")},
			},
		},
		"items": []any{
			map[string]any{"sku": "A-1", "qty": json.Number("3"), "price": json.Number("9.99")},
			map[string]any{"sku": "B-2", "qty": json.Number("1"), "price": json.Number("0.10")},
		},
	}
}

// sampleEvent builds a valid event of the given kind as every source can
// represent it: UUID ids, a microsecond UTC timestamp, Changes computed
// from Before on UPDATE, Data set to the before-image on DELETE, and an
// empty Source (a source that stamps its own name must be configured with
// an empty one in the suite).
func sampleEvent(i int, kind domain.EventType) domain.Event {
	ev := domain.Event{
		ID:         uuid.NewString(),
		EventType:  kind,
		EntityType: "Order",
		EntityID:   uuid.NewString(),
		Data:       sampleData(i),
		TenantID:   uuid.NewString(),
		UserID:     uuid.NewString(),
		Timestamp:  time.Now().UTC().Truncate(time.Microsecond).Add(time.Duration(i) * time.Millisecond),
	}
	switch kind {
	case domain.EventUpdate:
		before := sampleData(i)
		before["status"] = "pending"
		before["total"] = json.Number("90.5")
		before["removed"] = "gone"
		delete(before, "paid")
		ev.Before = before
		ev.Changes = domain.ComputeChanges(before, ev.Data)
	case domain.EventDelete:
		ev.Before = sampleData(i)
		ev.Data = sampleData(i)
	}
	return ev
}

// diffEvent describes how got differs from want, or returns "" when they
// are equal. Numbers must come back as json.Number with the same value;
// a nil map and an empty one are equal.
func diffEvent(want, got domain.Event) string {
	switch {
	case want.ID != got.ID:
		return fmt.Sprintf("ID = %q, want %q", got.ID, want.ID)
	case want.EventType != got.EventType:
		return fmt.Sprintf("EventType = %q, want %q", got.EventType, want.EventType)
	case want.EntityType != got.EntityType:
		return fmt.Sprintf("EntityType = %q, want %q", got.EntityType, want.EntityType)
	case want.EntityID != got.EntityID:
		return fmt.Sprintf("EntityID = %q, want %q", got.EntityID, want.EntityID)
	case want.TenantID != got.TenantID:
		return fmt.Sprintf("TenantID = %q, want %q", got.TenantID, want.TenantID)
	case want.UserID != got.UserID:
		return fmt.Sprintf("UserID = %q, want %q", got.UserID, want.UserID)
	case want.Source != got.Source:
		return fmt.Sprintf("Source = %q, want %q", got.Source, want.Source)
	case !want.Timestamp.Equal(got.Timestamp):
		return fmt.Sprintf("Timestamp = %v, want %v", got.Timestamp, want.Timestamp)
	}
	if d := diffJSON("Data", asValue(want.Data), asValue(got.Data)); d != "" {
		return d
	}
	if d := diffJSON("Before", asValue(want.Before), asValue(got.Before)); d != "" {
		return d
	}
	if len(want.Changes) != len(got.Changes) {
		return fmt.Sprintf("Changes has %d keys, want %d (%v)", len(got.Changes), len(want.Changes), got.Changes)
	}
	for k, wc := range want.Changes {
		gc, ok := got.Changes[k]
		if !ok {
			return fmt.Sprintf("Changes[%q] missing", k)
		}
		if d := diffJSON("Changes."+k+".old", wc.Old, gc.Old); d != "" {
			return d
		}
		if d := diffJSON("Changes."+k+".new", wc.New, gc.New); d != "" {
			return d
		}
	}
	return ""
}

// asValue turns a nil map into an empty one so both compare equal.
func asValue(m map[string]any) any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// diffJSON compares decoded JSON values strictly by type; json.Number
// values compare numerically.
func diffJSON(path string, want, got any) string {
	switch w := want.(type) {
	case json.Number:
		g, ok := got.(json.Number)
		if !ok {
			return fmt.Sprintf("%s = %#v (%T), want json.Number %s", path, got, got, w)
		}
		if c, ok := domain.CompareNumbers(w, g); !ok || c != 0 {
			return fmt.Sprintf("%s = %s, want %s", path, g, w)
		}
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s = %#v (%T), want an object", path, got, got)
		}
		if len(w) != len(g) {
			return fmt.Sprintf("%s has %d keys, want %d (%v)", path, len(g), len(w), g)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s.%s missing", path, k)
			}
			if d := diffJSON(path+"."+k, wv, gv); d != "" {
				return d
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s = %#v (%T), want an array", path, got, got)
		}
		if len(w) != len(g) {
			return fmt.Sprintf("%s has %d items, want %d", path, len(g), len(w))
		}
		for i := range w {
			if d := diffJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); d != "" {
				return d
			}
		}
	case string, bool, nil:
		if want != got {
			return fmt.Sprintf("%s = %#v, want %#v", path, got, want)
		}
	default:
		return fmt.Sprintf("%s: unsupported expected type %T", path, want)
	}
	return ""
}
