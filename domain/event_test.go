package domain

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func num(s string) json.Number { return json.Number(s) }

func TestParseEventType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    EventType
		wantErr error
	}{
		{in: "INSERT", want: EventInsert},
		{in: "UPDATE", want: EventUpdate},
		{in: "DELETE", want: EventDelete},
		{in: "CUSTOM", want: EventCustom},
		{in: "insert", want: EventInsert},
		{in: " Update ", want: EventUpdate},
		{in: "NOOP", wantErr: ErrSkipEvent},
		{in: "read", wantErr: ErrSkipEvent},
		{in: "UPSERT", wantErr: ErrInvalidEvent},
		{in: "", wantErr: ErrInvalidEvent},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseEventType(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseEventType(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseEventType(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewEventFromChange(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC)
	base := func(mod, data, before string) RawChange {
		r := RawChange{
			ID:               "0b6f3c1e-2a4d-4d6e-9f00-000000000001",
			CreatedAt:        created,
			ObjectType:       "Order",
			ModificationType: mod,
			ObjectID:         "0b6f3c1e-2a4d-4d6e-9f00-0000000000aa",
			TenantID:         "tenant-1",
			UserID:           "user-1",
			Source:           "shop",
		}
		if data != "" {
			r.ObjectData = []byte(data)
		}
		if before != "" {
			r.ObjectDataBefore = []byte(before)
		}
		return r
	}
	tests := []struct {
		name        string
		raw         RawChange
		wantType    EventType
		wantData    map[string]any
		wantBefore  map[string]any
		wantChanges map[string]Change
		wantErr     error
		errMentions string
	}{
		{
			name:     "insert",
			raw:      base("INSERT", `{"status":"new","total":100.50}`, ""),
			wantType: EventInsert,
			wantData: map[string]any{"status": "new", "total": num("100.50")},
		},
		{
			name:     "update without pre-image has no changes",
			raw:      base("UPDATE", `{"status":"paid"}`, ""),
			wantType: EventUpdate,
			wantData: map[string]any{"status": "paid"},
		},
		{
			name:     "update with null pre-image has no changes",
			raw:      base("UPDATE", `{"status":"paid"}`, "null"),
			wantType: EventUpdate,
			wantData: map[string]any{"status": "paid"},
		},
		{
			name:       "update with pre-image computes changes",
			raw:        base("UPDATE", `{"status":"paid","total":100,"note":"x","customer":{"tier":"gold","id":1}}`, `{"status":"new","total":100.00,"old":true,"customer":{"tier":"silver","id":1}}`),
			wantType:   EventUpdate,
			wantData:   map[string]any{"status": "paid", "total": num("100"), "note": "x", "customer": map[string]any{"tier": "gold", "id": num("1")}},
			wantBefore: map[string]any{"status": "new", "total": num("100.00"), "old": true, "customer": map[string]any{"tier": "silver", "id": num("1")}},
			wantChanges: map[string]Change{
				"status":   {Old: "new", New: "paid"},
				"note":     {Old: nil, New: "x"},
				"old":      {Old: true, New: nil},
				"customer": {Old: map[string]any{"tier": "silver", "id": num("1")}, New: map[string]any{"tier": "gold", "id": num("1")}},
			},
		},
		{
			name:        "update with identical pre-image has empty changes",
			raw:         base("UPDATE", `{"total":1.0}`, `{"total":1}`),
			wantType:    EventUpdate,
			wantData:    map[string]any{"total": num("1.0")},
			wantBefore:  map[string]any{"total": num("1")},
			wantChanges: map[string]Change{},
		},
		{
			name:       "delete with pre-image and empty data takes the pre-image",
			raw:        base("DELETE", `{}`, `{"status":"gone","n":7}`),
			wantType:   EventDelete,
			wantData:   map[string]any{"status": "gone", "n": num("7")},
			wantBefore: map[string]any{"status": "gone", "n": num("7")},
		},
		{
			name:       "delete with pre-image and no data takes the pre-image",
			raw:        base("DELETE", "", `{"status":"gone"}`),
			wantType:   EventDelete,
			wantData:   map[string]any{"status": "gone"},
			wantBefore: map[string]any{"status": "gone"},
		},
		{
			name:       "delete keeps data that is present",
			raw:        base("DELETE", `{"status":"last"}`, `{"status":"before"}`),
			wantType:   EventDelete,
			wantData:   map[string]any{"status": "last"},
			wantBefore: map[string]any{"status": "before"},
		},
		{
			name:     "delete without anything has empty data",
			raw:      base("DELETE", "", ""),
			wantType: EventDelete,
			wantData: map[string]any{},
		},
		{
			name:     "custom",
			raw:      base("CUSTOM", `{"kind":"ping"}`, ""),
			wantType: EventCustom,
			wantData: map[string]any{"kind": "ping"},
		},
		{
			name:     "lower-case modification type",
			raw:      base("update", `{"a":1}`, ""),
			wantType: EventUpdate,
			wantData: map[string]any{"a": num("1")},
		},
		{
			name:     "null data is empty",
			raw:      base("INSERT", "null", ""),
			wantType: EventInsert,
			wantData: map[string]any{},
		},
		{name: "noop is skipped", raw: base("NOOP", `{}`, ""), wantErr: ErrSkipEvent},
		{name: "read is skipped", raw: base("read", `{}`, ""), wantErr: ErrSkipEvent},
		{name: "unknown type", raw: base("MERGE", `{}`, ""), wantErr: ErrInvalidEvent, errMentions: "modification_type"},
		{name: "empty object type", raw: func() RawChange { r := base("INSERT", `{}`, ""); r.ObjectType = " "; return r }(), wantErr: ErrInvalidEvent, errMentions: "object_type"},
		{name: "data is an array", raw: base("INSERT", `[1,2]`, ""), wantErr: ErrInvalidEvent, errMentions: "object_data"},
		{name: "data is a string", raw: base("INSERT", `"hello"`, ""), wantErr: ErrInvalidEvent, errMentions: "object_data"},
		{name: "data is invalid JSON", raw: base("INSERT", `{"a":`, ""), wantErr: ErrInvalidEvent, errMentions: "object_data"},
		{name: "data has trailing garbage", raw: base("INSERT", `{"a":1} {"b":2}`, ""), wantErr: ErrInvalidEvent, errMentions: "object_data"},
		{name: "pre-image is an array", raw: base("UPDATE", `{}`, `[]`), wantErr: ErrInvalidEvent, errMentions: "object_data_before"},
		{name: "pre-image is invalid JSON", raw: base("UPDATE", `{}`, `{x}`), wantErr: ErrInvalidEvent, errMentions: "object_data_before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := NewEventFromChange(tt.raw)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errMentions) {
					t.Errorf("error %q does not name %q", err, tt.errMentions)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if ev.EventType != tt.wantType {
				t.Errorf("EventType = %q, want %q", ev.EventType, tt.wantType)
			}
			if !reflect.DeepEqual(ev.Data, tt.wantData) {
				t.Errorf("Data = %#v, want %#v", ev.Data, tt.wantData)
			}
			if !reflect.DeepEqual(ev.Before, tt.wantBefore) {
				t.Errorf("Before = %#v, want %#v", ev.Before, tt.wantBefore)
			}
			if !reflect.DeepEqual(ev.Changes, tt.wantChanges) {
				t.Errorf("Changes = %#v, want %#v", ev.Changes, tt.wantChanges)
			}
			if ev.ID != tt.raw.ID || ev.EntityType != "Order" || ev.EntityID != tt.raw.ObjectID ||
				ev.TenantID != "tenant-1" || ev.UserID != "user-1" || ev.Source != "shop" || !ev.Timestamp.Equal(created) {
				t.Errorf("metadata not copied from the row: %+v", ev)
			}
		})
	}
}

func TestNewEventFromChangeKeepsNumbersExact(t *testing.T) {
	t.Parallel()
	ev, err := NewEventFromChange(RawChange{
		ID: "e1", ObjectType: "Order", ModificationType: "INSERT",
		ObjectData: []byte(`{"big":12345678901234567890123,"dec":0.1,"nested":{"list":[1.50]}}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := ev.Data["big"].(json.Number); !ok || got != "12345678901234567890123" {
		t.Errorf("big = %#v, want json.Number 12345678901234567890123", ev.Data["big"])
	}
	if got, ok := ev.Data["dec"].(json.Number); !ok || got != "0.1" {
		t.Errorf("dec = %#v, want json.Number 0.1", ev.Data["dec"])
	}
	list := ev.Data["nested"].(map[string]any)["list"].([]any)
	if got, ok := list[0].(json.Number); !ok || got != "1.50" {
		t.Errorf("nested list item = %#v, want json.Number 1.50", list[0])
	}
}

func TestComputeChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		before, after map[string]any
		want          map[string]Change
	}{
		{name: "both empty", before: map[string]any{}, after: map[string]any{}, want: map[string]Change{}},
		{name: "added key", before: map[string]any{}, after: map[string]any{"a": "x"}, want: map[string]Change{"a": {Old: nil, New: "x"}}},
		{name: "removed key", before: map[string]any{"a": "x"}, after: map[string]any{}, want: map[string]Change{"a": {Old: "x", New: nil}}},
		{name: "value set to null", before: map[string]any{"a": "x"}, after: map[string]any{"a": nil}, want: map[string]Change{"a": {Old: "x", New: nil}}},
		{name: "numerically equal numbers", before: map[string]any{"p": num("100.00")}, after: map[string]any{"p": num("100")}, want: map[string]Change{}},
		{name: "number to string", before: map[string]any{"p": num("1")}, after: map[string]any{"p": "1"}, want: map[string]Change{"p": {Old: num("1"), New: "1"}}},
		{
			name:   "nested change is one top-level change",
			before: map[string]any{"c": map[string]any{"a": map[string]any{"b": num("1")}, "x": "same"}},
			after:  map[string]any{"c": map[string]any{"a": map[string]any{"b": num("2")}, "x": "same"}},
			want: map[string]Change{"c": {
				Old: map[string]any{"a": map[string]any{"b": num("1")}, "x": "same"},
				New: map[string]any{"a": map[string]any{"b": num("2")}, "x": "same"},
			}},
		},
		{
			name:   "nested equal with numeric spelling differences",
			before: map[string]any{"c": map[string]any{"v": []any{num("1.0"), num("2e1")}}},
			after:  map[string]any{"c": map[string]any{"v": []any{num("1"), num("20")}}},
			want:   map[string]Change{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ComputeChanges(tt.before, tt.after)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ComputeChanges = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestValuesEqual(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b any
		want bool
	}{
		{name: "decimal trailing zeros", a: num("100.00"), b: num("100"), want: true},
		{name: "exponent", a: num("1e2"), b: num("100"), want: true},
		{name: "upper-case signed exponent", a: num("1.5E+3"), b: num("1500"), want: true},
		{name: "negative exponent", a: num("25e-2"), b: num("0.25"), want: true},
		{name: "large exponent equal", a: num("1e400"), b: num("10e399"), want: true},
		{name: "large exponent different", a: num("1e400"), b: num("1e399"), want: false},
		{name: "big integers differing beyond float64 precision", a: num("9007199254740993"), b: num("9007199254740992"), want: false},
		{name: "big integers equal", a: num("123456789012345678901234567890"), b: num("123456789012345678901234567890.0"), want: true},
		{name: "negative zero", a: num("-0"), b: num("0"), want: true},
		{name: "json number and int", a: num("42"), b: 42, want: true},
		{name: "json number and int64", a: num("42"), b: int64(42), want: true},
		{name: "json number and float64 decimal", a: num("0.1"), b: 0.1, want: true},
		{name: "float64 and json number integer", a: 3.0, b: num("3"), want: true},
		{name: "number and string", a: num("1"), b: "1", want: false},
		{name: "number and null", a: num("0"), b: nil, want: false},
		{name: "unparseable numbers compare as written", a: num("1e999999999"), b: num("1e999999999"), want: true},
		{name: "unparseable numbers differ", a: num("1e999999999"), b: num("2e999999999"), want: false},
		{name: "strings", a: "a", b: "a", want: true},
		{name: "different strings", a: "a", b: "b", want: false},
		{name: "string and bool", a: "true", b: true, want: false},
		{name: "bools", a: true, b: true, want: true},
		{name: "different bools", a: true, b: false, want: false},
		{name: "nulls", a: nil, b: nil, want: true},
		{name: "null and empty string", a: nil, b: "", want: false},
		{name: "arrays", a: []any{num("1"), "x"}, b: []any{num("1.0"), "x"}, want: true},
		{name: "arrays different length", a: []any{num("1")}, b: []any{num("1"), num("1")}, want: false},
		{name: "arrays different order", a: []any{"a", "b"}, b: []any{"b", "a"}, want: false},
		{name: "objects", a: map[string]any{"a": num("1")}, b: map[string]any{"a": num("1.00")}, want: true},
		{name: "objects different keys", a: map[string]any{"a": nil}, b: map[string]any{"b": nil}, want: false},
		{name: "object and array", a: map[string]any{}, b: []any{}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ValuesEqual(tt.a, tt.b); got != tt.want {
				t.Errorf("ValuesEqual(%#v, %#v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := ValuesEqual(tt.b, tt.a); got != tt.want {
				t.Errorf("ValuesEqual(%#v, %#v) = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.want)
			}
		})
	}
}

func TestCompareNumbers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		a, b   any
		want   int
		wantOK bool
	}{
		{name: "less", a: num("1"), b: num("2"), want: -1, wantOK: true},
		{name: "greater", a: num("10"), b: num("9.99"), want: 1, wantOK: true},
		{name: "equal with different spelling", a: num("100.00"), b: num("1e2"), want: 0, wantOK: true},
		{name: "beyond float64 precision", a: num("9007199254740993"), b: num("9007199254740992"), want: 1, wantOK: true},
		{name: "huge integers", a: num("-123456789012345678901234567891"), b: num("-123456789012345678901234567890"), want: -1, wantOK: true},
		{name: "tiny exponents", a: num("1e-400"), b: num("0"), want: 1, wantOK: true},
		{name: "int and json number", a: 5, b: num("4.5"), want: 1, wantOK: true},
		{name: "float64 and json number", a: 0.1, b: num("0.1"), want: 0, wantOK: true},
		{name: "string is not a number", a: "1", b: num("1"), wantOK: false},
		{name: "null is not a number", a: num("1"), b: nil, wantOK: false},
		{name: "bool is not a number", a: true, b: num("1"), wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := CompareNumbers(tt.a, tt.b)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("CompareNumbers(%#v, %#v) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	tests := []struct {
		name string
		ev   Event
	}{
		{
			name: "update with changes",
			ev: Event{
				ID: "id-1", EventType: EventUpdate, EntityType: "Order", EntityID: "o-1",
				Data:      map[string]any{"total": num("100.00"), "big": num("12345678901234567890"), "tags": []any{"a"}, "n": nil},
				Before:    map[string]any{"total": num("99.5")},
				Changes:   map[string]Change{"total": {Old: num("99.5"), New: num("100.00")}, "tags": {Old: nil, New: []any{"a"}}},
				TenantID:  "t-1",
				UserID:    "u-1",
				Timestamp: ts,
				Source:    "db1",
			},
		},
		{
			name: "update whose pre-image changed nothing keeps empty changes",
			ev: Event{
				ID: "id-2", EventType: EventUpdate, EntityType: "Order", EntityID: "o-2",
				Data: map[string]any{"a": num("1")}, Before: map[string]any{"a": num("1")},
				Changes: map[string]Change{}, Timestamp: ts,
			},
		},
		{
			name: "insert without pre-image",
			ev: Event{
				ID: "id-3", EventType: EventInsert, EntityType: "User", EntityID: "u-9",
				Data: map[string]any{}, Timestamp: ts,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := tt.ev.Envelope()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeEvent(b)
			if err != nil {
				t.Fatalf("DecodeEvent(%s): %v", b, err)
			}
			if !got.Timestamp.Equal(tt.ev.Timestamp) {
				t.Errorf("Timestamp = %v, want %v", got.Timestamp, tt.ev.Timestamp)
			}
			got.Timestamp, tt.ev.Timestamp = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, tt.ev) {
				t.Errorf("round trip:\n got %#v\nwant %#v\njson %s", got, tt.ev, b)
			}
		})
	}
}

func TestEnvelopeFields(t *testing.T) {
	t.Parallel()
	ev := Event{ID: "x", EventType: EventInsert, EntityType: "Order", EntityID: "1", Data: map[string]any{"p": num("1.50")}}
	b, err := ev.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "event_type", "entity_type", "entity_id", "data", "timestamp"} {
		if _, ok := m[k]; !ok {
			t.Errorf("envelope %s lacks %q", b, k)
		}
	}
	for _, k := range []string{"before", "changes"} {
		if _, ok := m[k]; ok {
			t.Errorf("envelope %s has %q without a pre-image", b, k)
		}
	}
	if got := string(m["data"]); got != `{"p":1.50}` {
		t.Errorf("data = %s, want the number written as received", got)
	}
}

func TestDecodeEventErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{name: "not JSON", in: `{`, wantErr: ErrInvalidEvent},
		{name: "missing id", in: `{"event_type":"INSERT","entity_type":"Order"}`, wantErr: ErrInvalidEvent},
		{name: "missing entity type", in: `{"id":"1","event_type":"INSERT"}`, wantErr: ErrInvalidEvent},
		{name: "unknown event type", in: `{"id":"1","event_type":"MERGE","entity_type":"Order"}`, wantErr: ErrInvalidEvent},
		{name: "noop event type", in: `{"id":"1","event_type":"NOOP","entity_type":"Order"}`, wantErr: ErrSkipEvent},
		{name: "data not an object", in: `{"id":"1","event_type":"INSERT","entity_type":"Order","data":[1]}`, wantErr: ErrInvalidEvent},
		{name: "trailing data", in: `{"id":"1","event_type":"INSERT","entity_type":"Order"} x`, wantErr: ErrInvalidEvent},
		{name: "blank id", in: `{"id":" ","event_type":"INSERT","entity_type":"Order"}`, wantErr: ErrInvalidEvent},
		// time.Parse accepts a zone offset of 24 hours, which no time can be
		// formatted with: the event could not be stored or sent again.
		{name: "zone offset of 24 hours", in: `{"id":"1","event_type":"INSERT","entity_type":"Order","timestamp":"2024-01-01T00:00:00+24:00"}`, wantErr: ErrInvalidEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := DecodeEvent([]byte(tt.in)); !errors.Is(err, tt.wantErr) {
				t.Errorf("DecodeEvent(%s) error = %v, want %v", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestDecodeEventDefaultsData(t *testing.T) {
	t.Parallel()
	ev, err := DecodeEvent([]byte(`{"id":"1","event_type":"INSERT","entity_type":"Order"}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Data == nil || len(ev.Data) != 0 {
		t.Errorf("Data = %#v, want an empty map", ev.Data)
	}
	if ev.Before != nil || ev.Changes != nil {
		t.Errorf("Before = %#v, Changes = %#v, want nil", ev.Before, ev.Changes)
	}
}

func TestEntityKey(t *testing.T) {
	t.Parallel()
	a := Event{Source: "db", EntityType: "Order", EntityID: "1"}
	tests := []struct {
		name string
		b    Event
		same bool
	}{
		{name: "same entity", b: Event{Source: "db", EntityType: "Order", EntityID: "1", ID: "other"}, same: true},
		{name: "other id", b: Event{Source: "db", EntityType: "Order", EntityID: "2"}, same: false},
		{name: "other type", b: Event{Source: "db", EntityType: "User", EntityID: "1"}, same: false},
		{name: "other source", b: Event{Source: "db2", EntityType: "Order", EntityID: "1"}, same: false},
		{name: "no ambiguity across fields", b: Event{Source: "d", EntityType: "bOrder", EntityID: "1"}, same: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := a.EntityKey() == tt.b.EntityKey(); got != tt.same {
				t.Errorf("EntityKey equal = %v, want %v", got, tt.same)
			}
		})
	}
}

// TestNewEventFromChangeTimestampJSONRange: a created_at that JSON cannot
// carry (RFC 3339 holds the years 0 to 9999) makes the row invalid rather
// than an event that every store and action would fail to encode.
func TestNewEventFromChangeTimestampJSONRange(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		at    time.Time
		valid bool
	}{
		{time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), true},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{time.Date(-1, 12, 31, 0, 0, 0, 0, time.UTC), false},
	} {
		ev, err := NewEventFromChange(RawChange{ID: "e1", CreatedAt: c.at, ObjectType: "Order", ModificationType: "INSERT", ObjectID: "1"})
		if c.valid {
			if err != nil {
				t.Errorf("created_at %v: %v", c.at, err)
			} else if _, err := ev.Envelope(); err != nil {
				t.Errorf("created_at %v: envelope: %v", c.at, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), "created_at") {
			t.Errorf("created_at %v: error %v, want invalid naming created_at", c.at, err)
		}
	}
}

// TestNewEventFromChangeRefusesBlankID: the id is the deduplication key and
// the bus's message id; a text id column may hold ”.
func TestNewEventFromChangeRefusesBlankID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"", "  "} {
		_, err := NewEventFromChange(RawChange{ID: id, CreatedAt: time.Now(), ObjectType: "Order", ModificationType: "INSERT", ObjectID: "1"})
		if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), "empty id") {
			t.Errorf("id %q: error %v, want invalid naming the empty id", id, err)
		}
	}
}

// TestNewEventFromChangePayloadDepth: a payload nested deeper than
// MaxPayloadDepth is an invalid event (its envelope, a few levels deeper,
// must stay decodable by encoding/json, which stops at 10000), on the fast
// parser's path and on encoding/json's; MaxPayloadDepth itself is fine,
// and its envelope decodes again.
func TestNewEventFromChangePayloadDepth(t *testing.T) {
	t.Parallel()
	nest := func(depth int, inner string) string {
		return strings.Repeat(`{"a":`, depth) + inner + strings.Repeat("}", depth)
	}
	for _, c := range []struct {
		name, data, before string
		valid              bool
	}{
		{"at the limit", nest(MaxPayloadDepth, "1"), "", true},
		{"at the limit, arrays", `{"a":` + strings.Repeat("[", MaxPayloadDepth-1) + strings.Repeat("]", MaxPayloadDepth-1) + "}", "", true},
		{"one over", nest(MaxPayloadDepth+1, "1"), "", false},
		{"one over in the pre-image", "{}", nest(MaxPayloadDepth+1, "1"), false},
		{"an update at the limit", nest(MaxPayloadDepth, "2"), nest(MaxPayloadDepth, "1"), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := RawChange{ID: "e1", CreatedAt: time.Now(), ObjectType: "Order", ModificationType: "INSERT", ObjectID: "1", ObjectData: []byte(c.data)}
			if c.before != "" {
				r.ModificationType, r.ObjectDataBefore = "UPDATE", []byte(c.before)
			}
			ev, err := NewEventFromChange(r)
			if !c.valid {
				if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), "levels deep") {
					t.Fatalf("error %v, want invalid naming the depth", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			env, err := ev.Envelope()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeEvent(env); err != nil {
				t.Fatalf("the envelope does not decode again: %v", err)
			}
		})
	}
}

// TestEnvelopeErrorIsPermanent: an event that cannot be encoded fails
// for good (no store or attempt can change it) and as an invalid event.
func TestEnvelopeErrorIsPermanent(t *testing.T) {
	t.Parallel()
	ev := Event{ID: "e1", EventType: EventInsert, EntityType: "Order", Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	_, err := ev.Envelope()
	if !IsPermanent(err) || !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), "e1") {
		t.Fatalf("error %v, want permanent, invalid and naming the event", err)
	}
}

// TestValueDepthMatchesTheFastParser: the depth measured on what
// encoding/json decoded (its path in decodeObject) is the fast parser's.
func TestValueDepthMatchesTheFastParser(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{}`, `{"a":1}`, `{"a":{}}`, `{"a":[]}`, `{"a":[1,{"b":[[2]]}],"c":{"d":3}}`, `{"a":[[[[[[]]]]]]}`} {
		m, fastDepth, ok := decodeObjectDepth([]byte(in))
		if !ok {
			t.Fatalf("%s: the fast parser refused it", in)
		}
		if got := valueDepth(m); got != fastDepth {
			t.Errorf("%s: valueDepth %d, the fast parser %d", in, got, fastDepth)
		}
	}
}
