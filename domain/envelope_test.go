package domain_test

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// envelopeCases are events whose envelope must be json.Marshal's bytes:
// every field set or empty, strings json.Marshal escapes, nested values,
// and values only json.Marshal writes (the fallback).
func envelopeCases() map[string]domain.Event {
	ts := time.Date(2026, 11, 27, 18, 30, 1, 123456789, time.FixedZone("x", 3600))
	full := domain.Event{
		ID: "6f1c", EventType: domain.EventUpdate, EntityType: "Order", EntityID: "e-1",
		Data: map[string]any{
			"status": "shipped", "n": json.Number("100.00"), "ok": true, "no": false, "nil": nil,
			"nested": map[string]any{"z": []any{json.Number("1"), "two", nil, map[string]any{}}, "a": []any{}},
			"html":   "<a href=\"x\">&</a>", "ctl": "\x00\x01\b\f\n\r\t\x1f\x7f", "bad utf8": "a\xffb\xc3",
			"seps": "\u2028 \u2029 é 日本 🎉", "": "empty key", "\\\"key": "quoted key",
		},
		Before:   map[string]any{"status": "new", "n": json.Number("-1.5e+10")},
		Changes:  map[string]domain.Change{"status": {Old: "new", New: "shipped"}, "gone": {Old: json.Number("1"), New: nil}},
		TenantID: "t", UserID: "u", Timestamp: ts, Source: "db<1>",
	}
	return map[string]domain.Event{
		"full":             full,
		"zero":             {},
		"empty maps":       {ID: "x", Data: map[string]any{}, Before: map[string]any{}, Changes: map[string]domain.Change{}},
		"nil slice":        {ID: "x", Data: map[string]any{"s": []any(nil)}},
		"empty number":     {ID: "x", Data: map[string]any{"n": json.Number("")}},
		"float and int":    {ID: "x", Data: map[string]any{"f": 1.5e-7, "i": 42, "u": uint8(3)}},
		"other types":      {ID: "x", Data: map[string]any{"m": map[string]string{"b": "<", "a": "&"}, "l": []string{"x"}}},
		"changes fallback": {ID: "x", Data: map[string]any{}, Changes: map[string]domain.Change{"f": {Old: 1.25, New: int64(2)}}},
		"utc timestamp":    {ID: "x", Timestamp: time.Date(1999, 1, 2, 3, 4, 5, 0, time.UTC)},
		"many keys":        {ID: "x", Data: manyKeys(40)},
	}
}

func manyKeys(n int) map[string]any {
	m := map[string]any{}
	for i := range n {
		m[string(rune('a'+i%26))+string(rune('A'+i/26))] = json.Number("1")
	}
	return m
}

func TestEnvelopeIsJSONMarshal(t *testing.T) {
	t.Parallel()
	for name, ev := range envelopeCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, wantErr := json.Marshal(ev)
			got, err := ev.Envelope()
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
				t.Fatalf("Envelope() =\n%s, %v\njson.Marshal =\n%s, %v", got, err, want, wantErr)
			}
			prefix := []byte("prefix:")
			app, err := ev.AppendEnvelope(prefix)
			if err != nil || !bytes.Equal(app, append([]byte("prefix:"), want...)) {
				t.Fatalf("AppendEnvelope(prefix) = %s, %v", app, err)
			}
		})
	}
}

// TestEnvelopeErrorsAreJSONMarshals: values json.Marshal refuses are
// refused, with dst left as it was.
func TestEnvelopeErrorsAreJSONMarshals(t *testing.T) {
	t.Parallel()
	for name, ev := range map[string]domain.Event{
		"invalid number":     {ID: "x", Data: map[string]any{"n": json.Number("12abc")}},
		"invalid nested":     {ID: "x", Data: map[string]any{"a": []any{json.Number("--1")}}},
		"NaN":                {ID: "x", Data: map[string]any{"f": math.NaN()}},
		"invalid in before":  {ID: "x", Before: map[string]any{"n": json.Number(".5")}},
		"invalid in changes": {ID: "x", Changes: map[string]domain.Change{"n": {New: json.Number("1.")}}},
		"year out of range":  {ID: "x", Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"unsupported type":   {ID: "x", Data: map[string]any{"c": make(chan int)}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, wantErr := json.Marshal(ev); wantErr == nil {
				t.Fatalf("json.Marshal accepts the case: not a refusal case")
			}
			got, err := ev.AppendEnvelope([]byte("keep"))
			if err == nil || string(got) != "keep" {
				t.Fatalf("AppendEnvelope = %q, %v; want \"keep\" and an error", got, err)
			}
		})
	}
}

// FuzzEnvelope: for any JSON object decoded as the change log decodes it,
// the envelope is json.Marshal's bytes.
func FuzzEnvelope(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"s":"<&>\u2028","n":[1,2.50,{"x":null}],"t":true}`, `{"":"\u0000\ud800"}`, `{"k":"\xff"}`} {
		f.Add(s, "Order", "id-1")
	}
	f.Fuzz(func(t *testing.T, data, entity, id string) {
		m, err := domain.DecodeObject([]byte(data))
		if err != nil {
			return
		}
		ev := domain.Event{ID: id, EventType: domain.EventInsert, EntityType: entity, EntityID: id, Data: m, Before: m,
			Changes: domain.ComputeChanges(map[string]any{"x": entity}, m), TenantID: entity, Timestamp: time.Unix(0, int64(len(data))).UTC()}
		want, wantErr := json.Marshal(ev)
		got, err := ev.Envelope()
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("Envelope() =\n%s, %v\njson.Marshal =\n%s, %v", got, err, want, wantErr)
		}
	})
}

func BenchmarkEnvelope(b *testing.B) {
	ev := domain.Event{
		ID: "0b6e4f9c-8d8e-4a53-9a8e-4f6f0e2a7c11", EventType: domain.EventInsert, EntityType: "Order",
		EntityID: "5d7f3b1e-2c4a-4e8b-9f6d-1a2b3c4d5e6f", Timestamp: time.Now().UTC(),
		Data: map[string]any{"n": json.Number("123"), "status": "new", "total": json.Number("99.90"),
			"customer": map[string]any{"email": "a@example.com", "tier": "gold"}, "items": []any{"x", "y"}},
	}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ev.Envelope(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
