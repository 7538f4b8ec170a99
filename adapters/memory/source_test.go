package memory_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// newClock is the tests' settable clock.
func newClock() *testsupport.Clock {
	return testsupport.NewClock(time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC))
}

func readAll(t *testing.T, src *memory.Source) []ports.Record {
	t.Helper()
	b, err := src.Read(t.Context(), ports.Position{}, ports.ReadLimit{Rows: 1000})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return b.Records
}

func TestLoadJSONLines(t *testing.T) {
	t.Parallel()
	const ts = "2026-01-02T03:04:05.123456Z"
	cases := []struct {
		name      string
		input     string
		wantN     int
		wantErr   string // substring; "" means success
		wantTypes []domain.EventType
	}{
		{
			name: "ValidWithBlankLines",
			input: `{"id":"e1","event_type":"INSERT","entity_type":"Order","entity_id":"o1","data":{"total":100.00},"timestamp":"` + ts + `"}` + "\n" +
				"\n   \n" +
				`{"id":"e2","event_type":"update","entity_type":"Order","entity_id":"o1","data":{}}` + "\r\n" +
				`{"event_type":"DELETE","entity_type":"Order","entity_id":"o1"}`, // no id, no timestamp, no final newline
			wantN:     3,
			wantTypes: []domain.EventType{domain.EventInsert, domain.EventUpdate, domain.EventDelete},
		},
		{
			name: "BadLineStopsTheLoad",
			input: `{"id":"e1","event_type":"INSERT","entity_type":"Order"}` + "\n\n" +
				`{"id":"e2","event_type":"INSERT","entity_type":"Order"` + "\n" + // line 3: truncated JSON
				`{"id":"e3","event_type":"INSERT","entity_type":"Order"}` + "\n",
			wantN:     1,
			wantErr:   "line 3",
			wantTypes: []domain.EventType{domain.EventInsert},
		},
		{
			name:      "UnknownEventTypeIsBad",
			input:     `{"id":"e1","event_type":"INSERT","entity_type":"Order"}` + "\n" + `{"id":"e2","event_type":"NOOP","entity_type":"Order"}`,
			wantN:     1,
			wantErr:   "line 2",
			wantTypes: []domain.EventType{domain.EventInsert},
		},
		{
			// An editor's byte-order mark before the first event (it
			// made line 1 invalid).
			name:      "ByteOrderMark",
			input:     "\xef\xbb\xbf" + `{"id":"e1","event_type":"INSERT","entity_type":"Order"}` + "\n",
			wantN:     1,
			wantTypes: []domain.EventType{domain.EventInsert},
		},
		{
			name:    "ArrayIsBad",
			input:   `[1,2]`,
			wantErr: "line 1",
		},
		{
			name:    "MissingEntityTypeIsBad",
			input:   `{"id":"e1","event_type":"INSERT"}`,
			wantErr: "line 1",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			src := newSource(t, clock.Now, time.Minute)
			n, err := src.LoadJSONLines(t.Context(), strings.NewReader(tc.input))
			if tc.wantErr == "" && err != nil {
				t.Fatalf("LoadJSONLines: %v", err)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadJSONLines error = %v, want one naming %q", err, tc.wantErr)
				}
				if !errors.Is(err, domain.ErrInvalidEvent) {
					t.Fatalf("LoadJSONLines error = %v, want it to wrap domain.ErrInvalidEvent", err)
				}
			}
			if n != tc.wantN {
				t.Fatalf("LoadJSONLines = %d, want %d", n, tc.wantN)
			}
			recs := readAll(t, src)
			if len(recs) != len(tc.wantTypes) {
				t.Fatalf("log holds %d entries, want %d", len(recs), len(tc.wantTypes))
			}
			for i, r := range recs {
				if r.Err != nil {
					t.Fatalf("entry %d: Err = %v", i, r.Err)
				}
				if r.Event.EventType != tc.wantTypes[i] {
					t.Fatalf("entry %d: EventType = %q, want %q", i, r.Event.EventType, tc.wantTypes[i])
				}
				if r.Event.Data == nil {
					t.Fatalf("entry %d: Data is nil", i)
				}
			}
			if tc.name != "ValidWithBlankLines" {
				return
			}
			if got := recs[0].Event.Data["total"]; got != json.Number("100.00") {
				t.Fatalf("data.total = %#v, want json.Number 100.00", got)
			}
			if want, _ := time.Parse(time.RFC3339Nano, ts); !recs[0].Event.Timestamp.Equal(want) {
				t.Fatalf("timestamp = %v, want %v", recs[0].Event.Timestamp, want)
			}
			if _, err := uuid.Parse(recs[2].Event.ID); err != nil {
				t.Fatalf("an event without id got ID %q, want a UUID", recs[2].Event.ID)
			}
			if !recs[2].Event.Timestamp.Equal(clock.Now()) {
				t.Fatalf("an event without timestamp got %v, want the clock's %v", recs[2].Event.Timestamp, clock.Now())
			}
		})
	}
}

func TestAppendRawStoresInvalidEntries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		raw    string
		wantID string
	}{
		{"NotJSON", `not json at all`, ""},
		{"Array", `[{"id":"a"}]`, ""},
		{"UnknownEventType", `{"id":"e-1","event_type":"BOGUS","entity_type":"Order","entity_id":"o-1"}`, "e-1"},
		{"SkippedEventType", `{"id":"e-2","event_type":"READ","entity_type":"Order"}`, "e-2"},
		{"MissingEntityType", `{"id":"e-3","event_type":"INSERT"}`, "e-3"},
		{"DataNotAnObject", `{"id":"e-4","event_type":"INSERT","entity_type":"Order","data":[1]}`, "e-4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := newSource(t, nil, time.Minute)
			ctx := t.Context()
			if _, err := src.AppendRaw(ctx, []byte(tc.raw)); err != nil {
				t.Fatalf("AppendRaw: %v", err)
			}
			good := `{"id":"ok","event_type":"INSERT","entity_type":"Order"}`
			if _, err := src.AppendRaw(ctx, []byte(good)); err != nil {
				t.Fatalf("AppendRaw: %v", err)
			}
			recs := readAll(t, src)
			if len(recs) != 2 {
				t.Fatalf("log holds %d entries, want 2", len(recs))
			}
			bad := recs[0]
			if !errors.Is(bad.Err, domain.ErrInvalidEvent) {
				t.Fatalf("Err = %v, want domain.ErrInvalidEvent", bad.Err)
			}
			if string(bad.Raw) != tc.raw {
				t.Fatalf("Raw = %q, want %q", bad.Raw, tc.raw)
			}
			if tc.wantID != "" && bad.Event.ID != tc.wantID {
				t.Fatalf("Event.ID = %q, want %q", bad.Event.ID, tc.wantID)
			}
			if recs[1].Err != nil || recs[1].Event.ID != "ok" {
				t.Fatalf("entry after the invalid one = %+v", recs[1])
			}
		})
	}
}

func TestAppend(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		give    domain.Event
		wantErr bool
	}{
		{"Valid", domain.Event{ID: "e1", EventType: domain.EventInsert, EntityType: "Order"}, false},
		{"LowerCaseType", domain.Event{ID: "e1", EventType: "custom", EntityType: "Order"}, false},
		{"NoID", domain.Event{EventType: domain.EventInsert, EntityType: "Order"}, false},
		{"EmptyEntityType", domain.Event{ID: "e1", EventType: domain.EventInsert, EntityType: " "}, true},
		{"UnknownType", domain.Event{ID: "e1", EventType: "MERGE", EntityType: "Order"}, true},
		{"SkippedType", domain.Event{ID: "e1", EventType: "NOOP", EntityType: "Order"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			src := newSource(t, clock.Now, time.Minute)
			pos, err := src.Append(t.Context(), tc.give)
			if tc.wantErr {
				if !errors.Is(err, domain.ErrInvalidEvent) {
					t.Fatalf("Append error = %v, want domain.ErrInvalidEvent", err)
				}
				if src.Len() != 0 {
					t.Fatalf("a refused event was stored")
				}
				return
			}
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if pos != (ports.Position{Seq: 1}) {
				t.Fatalf("Append position = %+v, want Seq 1", pos)
			}
			ev := readAll(t, src)[0].Event
			if _, err := domain.ParseEventType(string(ev.EventType)); err != nil || string(ev.EventType) != strings.ToUpper(string(tc.give.EventType)) {
				t.Fatalf("EventType = %q", ev.EventType)
			}
			if tc.give.ID == "" && ev.ID == "" || tc.give.ID != "" && ev.ID != tc.give.ID {
				t.Fatalf("ID = %q (given %q)", ev.ID, tc.give.ID)
			}
			if !ev.Timestamp.Equal(clock.Now()) || ev.Data == nil {
				t.Fatalf("defaults not applied: timestamp %v, data %v", ev.Timestamp, ev.Data)
			}
		})
	}
}

func TestSourceDoesNotShareMaps(t *testing.T) {
	t.Parallel()
	src := newSource(t, nil, time.Minute)
	nested := map[string]any{"tier": "gold"}
	ev := domain.Event{ID: "e1", EventType: domain.EventInsert, EntityType: "Order",
		Data: map[string]any{"customer": nested, "tags": []any{"a"}}}
	if _, err := src.Append(t.Context(), ev); err != nil {
		t.Fatalf("Append: %v", err)
	}
	nested["tier"] = "changed by the caller"
	got := readAll(t, src)[0].Event
	if tier := got.Data["customer"].(map[string]any)["tier"]; tier != "gold" {
		t.Fatalf("stored event changed with the caller's map: tier = %v", tier)
	}
	got.Data["customer"].(map[string]any)["tier"] = "changed by a reader"
	got.Data["tags"].([]any)[0] = "b"
	again := readAll(t, src)[0].Event
	if again.Data["customer"].(map[string]any)["tier"] != "gold" || again.Data["tags"].([]any)[0] != "a" {
		t.Fatalf("stored event changed through a Read result: %v", again.Data)
	}
}

func TestSourceWait(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		poll  time.Duration
		setup func(t *testing.T, src *memory.Source)
	}{
		// Append between a reader's Read and its Wait: the wake-up is not lost
		// even though the poll interval is far longer than the test's timeout.
		{"AppendBeforeWait", time.Hour, func(t *testing.T, src *memory.Source) {
			readAll(t, src)
			if _, err := src.Append(t.Context(), domain.Event{EventType: domain.EventInsert, EntityType: "Order"}); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}},
		// A partial Read leaves entries to read: Wait does not block.
		{"PartialRead", time.Hour, func(t *testing.T, src *memory.Source) {
			for range 3 {
				if _, err := src.Append(t.Context(), domain.Event{EventType: domain.EventInsert, EntityType: "Order"}); err != nil {
					t.Fatalf("Append: %v", err)
				}
			}
			if _, err := src.Read(t.Context(), ports.Position{}, ports.ReadLimit{Rows: 2}); err != nil {
				t.Fatalf("Read: %v", err)
			}
		}},
		// Nothing appended: the poll interval ends the wait.
		{"PollInterval", 50 * time.Millisecond, func(t *testing.T, src *memory.Source) { readAll(t, src) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := newSource(t, nil, tc.poll)
			tc.setup(t, src)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := src.Wait(ctx); err != nil {
				t.Fatalf("Wait = %v, want nil", err)
			}
		})
	}
}

func TestSourceReadAndConfigErrors(t *testing.T) {
	t.Parallel()
	if _, err := memory.NewSource(nil, memory.SourceConfig{PollInterval: -time.Second}); err == nil {
		t.Fatal("NewSource with a negative poll interval succeeded")
	}
	src := newSource(t, nil, 0)
	if _, err := src.Read(t.Context(), ports.Position{}, ports.ReadLimit{Rows: 0}); err == nil {
		t.Fatal("Read with limit 0 succeeded")
	}
	if _, err := src.Append(t.Context(), domain.Event{EventType: domain.EventInsert, EntityType: "Order"}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	// A change-log position (with a TxID) lies after every entry of this log.
	b, err := src.Read(t.Context(), ports.Position{TxID: 1}, ports.ReadLimit{Rows: 10})
	if err != nil || len(b.Records) != 0 || b.End != (ports.Position{TxID: 1}) {
		t.Fatalf("Read after a TxID position = %+v, %v", b, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := src.Append(ctx, domain.Event{EventType: domain.EventInsert, EntityType: "Order"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled ctx = %v", err)
	}
}

// The log keeps every entry for replay, within its bounds: an append past
// the entries or the bytes allowed is refused with ErrLogFull (wrapping
// ports.ErrUnavailable), and nothing is stored.
func TestSourceRefusesAppendsPastItsBounds(t *testing.T) {
	t.Parallel()
	ev := func(i int) domain.Event {
		return domain.Event{EntityType: "Order", EventType: domain.EventInsert, Data: map[string]any{"n": i}}
	}
	t.Run("entries", func(t *testing.T) {
		t.Parallel()
		src, err := memory.NewSource(nil, memory.SourceConfig{MaxEntries: 3})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := src.Append(t.Context(), ev(i)); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		_, err = src.Append(t.Context(), ev(3))
		if !errors.Is(err, memory.ErrLogFull) || !errors.Is(err, ports.ErrUnavailable) {
			t.Fatalf("append past 3 entries = %v, want ErrLogFull", err)
		}
		if _, err := src.AppendRaw(t.Context(), []byte("not json")); !errors.Is(err, memory.ErrLogFull) {
			t.Errorf("raw append past 3 entries = %v, want ErrLogFull", err)
		}
		if b, err := src.Read(t.Context(), ports.Position{}, ports.ReadLimit{Rows: 10}); err != nil || len(b.Records) != 3 {
			t.Errorf("read %d records (%v), want the 3 appended", len(b.Records), err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		t.Parallel()
		src, err := memory.NewSource(nil, memory.SourceConfig{MaxBytes: 6000})
		if err != nil {
			t.Fatal(err)
		}
		n, err := src.LoadJSONLines(t.Context(), strings.NewReader(strings.Repeat(`{"entity_type":"Order","event_type":"INSERT","data":{"blob":"`+strings.Repeat("x", 1000)+`"}}`+"\n", 5)))
		if !errors.Is(err, memory.ErrLogFull) || !strings.Contains(err.Error(), "line 3") || n != 2 {
			t.Errorf("load of five 1 KB events into 6 000 bytes = %d, %v; want 2 loaded, ErrLogFull at line 3", n, err)
		}
	})
}

// AppendJSONLines (posted input) does not stop at a line that is not an
// event: the line is refused (not stored: a wrong file fills neither the
// log nor the dead-letter queue), reported by number, and the lines after
// it go on.
func TestAppendJSONLinesGoesOnPastABadLine(t *testing.T) {
	t.Parallel()
	src := newSource(t, newClock().Now, time.Minute)
	var input strings.Builder
	input.WriteString(`{"id":"e1","event_type":"INSERT","entity_type":"Order"}` + "\n")
	input.WriteString(`{"id":"e2","event_type":"NOOP","entity_type":"Order"}` + "\n") // line 2: unknown event type
	for range memory.MaxReportedLines + 5 {
		input.WriteString("not json\n")
	}
	input.WriteString(`{"id":"e3","event_type":"DELETE","entity_type":"Order"}`)
	res, err := src.AppendJSONLines(t.Context(), strings.NewReader(input.String()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 2 || res.Invalid != memory.MaxReportedLines+6 || len(res.InvalidLines) != memory.MaxReportedLines ||
		res.InvalidLines[0].Line != 2 || !strings.Contains(res.InvalidLines[0].Error, "NOOP") || res.InvalidLines[1].Line != 3 {
		t.Fatalf("result = %+v", res)
	}
	recs := readAll(t, src)
	if len(recs) != 2 || recs[0].Event.ID != "e1" || recs[1].Event.ID != "e3" || recs[0].Err != nil || recs[1].Err != nil {
		t.Fatalf("records = %+v; want events e1 and e3 alone", recs)
	}
}
