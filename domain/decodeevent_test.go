package domain

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeEventCases are envelopes the fast decoder must decode exactly as
// encoding/json, or leave to it.
var decodeEventCases = []string{
	`{"id":"e1","event_type":"INSERT","entity_type":"Order","entity_id":"1","data":{"a":1,"b":[1.5,"x",null,true],"c":{"d":{}}},"timestamp":"2026-01-02T03:04:05.123456789Z"}`,
	`{"id":"e1","event_type":"UPDATE","entity_type":"Order","entity_id":"1","data":{"a":2},"before":{"a":1},"changes":{"a":{"old":1,"new":2}},"tenant_id":"t","user_id":"u","timestamp":"2026-01-02T03:04:05+02:00","source":"shop"}`,
	`{"id":"e1","data":null,"before":null,"changes":null,"timestamp":null,"source":null}`,
	`{"changes":{"a":null,"b":{},"c":{"old":null}}}`,
	`{}`, ` { "id" : "e1" } `, `{"id":"e1"}x`, `{"id":"e1",}`, `[]`, `null`, `"s"`,
	`{"ID":"e1"}`, `{"Id":"e1","id":"e2"}`, `{"id":"e1","id":"e2"}`, `{"data":{"a":1},"data":{"b":2}}`,
	`{"id":1}`, `{"data":[1]}`, `{"data":"x"}`, `{"changes":{"a":1}}`, `{"changes":{"a":{"OLD":1}}}`, `{"changes":{"a":{"old":1,"old":2}}}`,
	`{"timestamp":"2026-01-02"}`, `{"timestamp":"\u0032026-01-02T03:04:05Z"}`, `{"timestamp":"2026-01-02T03:04:05+24:00"}`, `{"timestamp":5}`,
	`{"unknown":1}`, `{"id":"\u00e9\ud800","entity_type":"a\"b"}`, `{"id":"e1","extra":{"x":[1,2]}}`,
	`{"data":{"n":12345678901234567890123456789,"f":-0.5e-7}}`,
}

func TestDecodeEventFastMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, in := range decodeEventCases {
		checkDecodeEvent(t, []byte(in))
	}
	deep := `{"id":"e1","data":` + strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth) + `}`
	checkDecodeEvent(t, []byte(deep))
}

// TestDecodeEventFastTakesTheEnvelopes: what Envelope writes is decoded by
// the fast path (else the speed is lost without a test failing).
func TestDecodeEventFastTakesTheEnvelopes(t *testing.T) {
	t.Parallel()
	ev := Event{ID: "e1", EventType: EventUpdate, EntityType: "Order", EntityID: "1", Data: map[string]any{"a": "x\n\"y\"", "n": []any{}},
		Before: map[string]any{"a": nil}, Changes: map[string]Change{"a": {Old: nil, New: "x"}}, TenantID: "t", UserID: "u",
		Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("", -5*3600)), Source: "s"}
	env, err := ev.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := decodeEventFast(env); !ok {
		t.Fatalf("the fast path refused the envelope %s", env)
	}
	checkDecodeEvent(t, env)
}

func checkDecodeEvent(t *testing.T, in []byte) {
	t.Helper()
	want, wantErr := decodeEventStd(in)
	got, err := decodeEventJSON(in)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decodeEventJSON(%.100q) error = %v, encoding/json: %v", in, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeEventJSON(%.100q) =\n%#v\nencoding/json:\n%#v", in, got, want)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range decodeEventCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkDecodeEvent(t, []byte(in))
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	ev := Event{ID: "0b6f3c1e-2a4d-4d6e-9f00-000000000001", EventType: EventInsert, EntityType: "Order", EntityID: "0b6f3c1e-2a4d-4d6e-9f00-0000000000aa",
		Data:      map[string]any{"id": "12345", "status": "shipped", "total": "99.90", "customer": map[string]any{"tier": "gold"}, "items": []any{"x", "y"}},
		Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Source: "shop"}
	in, err := ev.Envelope()
	if err != nil {
		b.Fatal(err)
	}
	for name, decode := range map[string]func([]byte) (Event, error){"fast": decodeEventJSON, "encoding/json": decodeEventStd} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decode(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
