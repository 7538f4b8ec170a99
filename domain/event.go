package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// EventType is the kind of change an event records.
type EventType string

// The event kinds. NOOP and READ rows of the change log are skipped before
// they become events.
const (
	EventInsert EventType = "INSERT"
	EventUpdate EventType = "UPDATE"
	EventDelete EventType = "DELETE"
	EventCustom EventType = "CUSTOM"
)

// ErrSkipEvent reports a change-log row that is deliberately not an event
// (modification type NOOP or READ).
var ErrSkipEvent = errors.New("row is not an event")

// ErrInvalidEvent reports a change-log row that cannot become an event.
var ErrInvalidEvent = errors.New("invalid event")

// ParseEventType maps a modification type to an EventType. NOOP and READ
// return ErrSkipEvent; anything else unknown returns ErrInvalidEvent.
func ParseEventType(s string) (EventType, error) {
	switch t := EventType(strings.ToUpper(strings.TrimSpace(s))); t {
	case EventInsert, EventUpdate, EventDelete, EventCustom:
		return t, nil
	case "NOOP", "READ":
		return "", fmt.Errorf("modification type %q: %w", s, ErrSkipEvent)
	default:
		return "", fmt.Errorf("unknown modification type %q: %w", s, ErrInvalidEvent)
	}
}

// Change is one entry of an event's shallow diff.
type Change struct {
	Old any `json:"old"`
	New any `json:"new"`
}

// Event is one entity change, decoded from a change-log row or a message.
// Data, Before and Changes hold values decoded from JSON with numbers kept
// as json.Number.
type Event struct {
	ID         string            `json:"id"`
	EventType  EventType         `json:"event_type"`
	EntityType string            `json:"entity_type"`
	EntityID   string            `json:"entity_id"`
	Data       map[string]any    `json:"data"`
	Before     map[string]any    `json:"before,omitzero"`  // nil: no pre-image
	Changes    map[string]Change `json:"changes,omitzero"` // nil: no pre-image
	TenantID   string            `json:"tenant_id,omitempty"`
	UserID     string            `json:"user_id,omitempty"`
	Timestamp  time.Time         `json:"timestamp"`
	Source     string            `json:"source,omitempty"`
}

// EntityKey identifies the entity an event belongs to; events with the same
// key are processed in order.
func (e Event) EntityKey() string {
	return e.Source + "\x00" + e.EntityType + "\x00" + e.EntityID
}

// RawChange is a change-log row before validation.
type RawChange struct {
	ID               string
	CreatedAt        time.Time
	ObjectType       string
	ModificationType string
	ObjectID         string
	ObjectData       []byte // JSON, may be nil
	ObjectDataBefore []byte // JSON, may be nil
	TenantID         string
	UserID           string
	Source           string
}

// NewEventFromChange validates a change-log row and builds the event. It
// returns an error wrapping ErrSkipEvent for NOOP/READ rows and
// ErrInvalidEvent for rows that cannot become an event.
func NewEventFromChange(r RawChange) (Event, error) {
	et, err := ParseEventType(r.ModificationType)
	if err != nil {
		return Event{}, fmt.Errorf("modification_type: %w", err)
	}
	if strings.TrimSpace(r.ObjectType) == "" {
		return Event{}, fmt.Errorf("empty object_type: %w", ErrInvalidEvent)
	}
	if strings.TrimSpace(r.ID) == "" { // the deduplication key and the bus's message id
		return Event{}, fmt.Errorf("empty id: %w", ErrInvalidEvent)
	}
	if !JSONTime(r.CreatedAt) {
		return Event{}, fmt.Errorf("created_at %s: outside the years 0 to 9999 that an event's JSON timestamp holds: %w",
			r.CreatedAt.Format(time.RFC3339Nano), ErrInvalidEvent)
	}
	data, err := decodePayload(r.ObjectData)
	if err != nil {
		return Event{}, fmt.Errorf("object_data: %w", err)
	}
	var before map[string]any
	if len(r.ObjectDataBefore) > 0 && string(r.ObjectDataBefore) != "null" {
		if before, err = decodePayload(r.ObjectDataBefore); err != nil {
			return Event{}, fmt.Errorf("object_data_before: %w", err)
		}
	}
	if et == EventDelete && len(data) == 0 && before != nil {
		data = before
	}
	if data == nil {
		data = map[string]any{}
	}
	ev := Event{
		ID:         r.ID,
		EventType:  et,
		EntityType: r.ObjectType,
		EntityID:   r.ObjectID,
		Data:       data,
		Before:     before,
		TenantID:   r.TenantID,
		UserID:     r.UserID,
		Timestamp:  r.CreatedAt,
		Source:     r.Source,
	}
	if before != nil && et == EventUpdate {
		ev.Changes = ComputeChanges(before, data)
	}
	return ev, nil
}

// JSONTime reports whether t has a JSON form: RFC 3339 holds the years 0
// to 9999 (PostgreSQL timestamps reach 294276) and zone offsets under 24
// hours (time.Parse accepts +24:00 and more, which time cannot format).
func JSONTime(t time.Time) bool {
	y := t.Year()
	_, off := t.Zone()
	return y >= 0 && y <= 9999 && off > -24*3600 && off < 24*3600
}

// DecodeObject decodes a JSON object keeping numbers as json.Number, as
// encoding/json's Decoder with UseNumber does (a parser of its own takes
// the common case, without the Decoder's buffers). Empty input and JSON
// null yield an empty map; any other non-object is ErrInvalidEvent.
func DecodeObject(b []byte) (map[string]any, error) {
	m, _, err := decodeObject(b)
	return m, err
}

// MaxPayloadDepth bounds how deep an event's object_data and
// object_data_before may nest. encoding/json refuses to decode JSON nested
// deeper than 10000 levels, and an event's envelope nests its payload up to
// three levels deeper (data; changes, field, old/new): without a bound
// well below, a payload accepted here would make an envelope that no store
// or worker could decode again.
const MaxPayloadDepth = 1000

// decodePayload is DecodeObject for an event's payload: deeper than
// MaxPayloadDepth is an invalid event.
func decodePayload(b []byte) (map[string]any, error) {
	m, depth, err := decodeObject(b)
	if err == nil && depth > MaxPayloadDepth {
		return nil, fmt.Errorf("nested %d levels deep, over the %d an event's payload may be: %w", depth, MaxPayloadDepth, ErrInvalidEvent)
	}
	return m, err
}

// decodeObject is DecodeObject that also reports how deep the object nests.
func decodeObject(b []byte) (map[string]any, int, error) {
	if t := bytes.TrimSpace(b); len(t) == 0 || string(t) == "null" { // no copy of b
		return map[string]any{}, 0, nil
	}
	if m, depth, ok := decodeObjectDepth(b); ok {
		return m, depth, nil
	}
	// Not an object, not valid, or beyond the fast parser: encoding/json
	// decides, with its messages.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, 0, fmt.Errorf("not valid JSON: %v: %w", err, ErrInvalidEvent)
	}
	if err := expectEOF(dec); err != nil {
		return nil, 0, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, 0, fmt.Errorf("not a JSON object (%s): %w", jsonKind(v), ErrInvalidEvent)
	}
	return m, valueDepth(m), nil
}

// expectEOF fails when dec holds more than the one value already decoded.
func expectEOF(dec *json.Decoder) error {
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("not valid JSON: data after the first value: %w", ErrInvalidEvent)
	}
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	default:
		return "null"
	}
}

// ComputeChanges is the shallow top-level diff between before and after:
// a key added has Old nil, a key removed has New nil. Numbers compare
// numerically, so 100.00 equals 100.
func ComputeChanges(before, after map[string]any) map[string]Change {
	changes := map[string]Change{}
	for k, nv := range after {
		ov, ok := before[k]
		if !ok {
			changes[k] = Change{Old: nil, New: nv}
			continue
		}
		if !ValuesEqual(ov, nv) {
			changes[k] = Change{Old: ov, New: nv}
		}
	}
	for k, ov := range before {
		if _, ok := after[k]; !ok {
			changes[k] = Change{Old: ov, New: nil}
		}
	}
	return changes
}

// ValuesEqual compares two JSON values deeply, numbers numerically and
// exactly (100.00 equals 100, 1e2 equals 100, -0 equals 0). Its cost is
// linear in the size of the values.
func ValuesEqual(a, b any) bool {
	if an, ok := numberOf(a); ok {
		bn, ok := numberOf(b)
		return ok && compareParsed(&an, &bn) == 0
	}
	switch av := a.(type) {
	case nil:
		return b == nil
	case json.Number: // not valid JSON number text: compare as written
		bv, ok := b.(json.Number)
		return ok && av == bv
	case string:
		bv, ok := b.(string)
		return ok && av == bv
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !ValuesEqual(av[i], bv[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !ValuesEqual(x, y) {
				return false
			}
		}
		return true
	default:
		return false
	}
}

// CompareNumbers compares two values numerically and exactly (json.Number,
// float64 as its shortest decimal, int, int64); ok is false when either is
// not a number. Its cost is linear in the length of the numbers' text.
func CompareNumbers(a, b any) (cmp int, ok bool) {
	an, ok1 := numberOf(a)
	bn, ok2 := numberOf(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	return compareParsed(&an, &bn), true
}

// decodeEventJSON decodes b as encoding/json does with UseNumber (a parser
// of its own takes the envelopes this service writes).
func decodeEventJSON(b []byte) (Event, error) {
	if ev, ok := decodeEventFast(b); ok {
		return ev, nil
	}
	return decodeEventStd(b)
}

// decodeEventStd is decodeEventJSON by encoding/json alone.
func decodeEventStd(b []byte) (Event, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		return Event{}, fmt.Errorf("decode event: %v: %w", err, ErrInvalidEvent)
	}
	if err := expectEOF(dec); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	return ev, nil
}

// DecodeEvent parses an Envelope, keeping numbers as json.Number.
func DecodeEvent(b []byte) (Event, error) {
	ev, err := decodeEventJSON(b)
	if err != nil {
		return Event{}, err
	}
	if strings.TrimSpace(ev.ID) == "" || ev.EntityType == "" {
		return Event{}, fmt.Errorf("decode event: missing id or entity_type: %w", ErrInvalidEvent)
	}
	if !JSONTime(ev.Timestamp) { // it could not be encoded again (for a store, a webhook, a dead letter)
		return Event{}, fmt.Errorf("decode event: timestamp %s: outside what JSON holds (years 0 to 9999, zone offsets under 24 hours): %w",
			ev.Timestamp.Format(time.RFC3339Nano), ErrInvalidEvent)
	}
	if _, err := ParseEventType(string(ev.EventType)); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	if ev.Data == nil {
		ev.Data = map[string]any{}
	}
	return ev, nil
}
