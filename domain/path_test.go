package domain

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in          string
		want        Path
		wantString  string
		errMentions string
	}{
		{in: "status", want: Path{Root: RootData, Segments: []string{"status"}}, wantString: "status"},
		{in: " status ", want: Path{Root: RootData, Segments: []string{"status"}}, wantString: "status"},
		{in: "customer.tier", want: Path{Root: RootData, Segments: []string{"customer", "tier"}}, wantString: "customer.tier"},
		{in: "data.customer.tier", want: Path{Root: RootData, Segments: []string{"customer", "tier"}}, wantString: "customer.tier"},
		{in: "data", want: Path{Root: RootData, Segments: []string{}}, wantString: "data"},
		{in: "before.status", want: Path{Root: RootBefore, Segments: []string{"status"}}, wantString: "before.status"},
		{in: "before", want: Path{Root: RootBefore, Segments: []string{}}, wantString: "before"},
		{in: "changes.status.old", want: Path{Root: RootChanges, Segments: []string{"status", "old"}}, wantString: "changes.status.old"},
		{in: "event.id", want: Path{Root: RootEvent, Segments: []string{"id"}}, wantString: "event.id"},
		{in: "event.tenant_id", want: Path{Root: RootEvent, Segments: []string{"tenant_id"}}, wantString: "event.tenant_id"},
		{in: "", errMentions: "empty segment"},
		{in: "a..b", errMentions: "empty segment"},
		{in: ".a", errMentions: "empty segment"},
		{in: "a.", errMentions: "empty segment"},
		{in: "data.", errMentions: "empty segment"},
		{in: "event.nope", errMentions: `unknown event field "nope"`},
		{in: "event", errMentions: "event."},
		{in: "event.id.x", errMentions: "event."},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePath(tt.in)
			if tt.errMentions != "" {
				if err == nil {
					t.Fatalf("ParsePath(%q) = %+v, want an error", tt.in, got)
				}
				if !strings.Contains(err.Error(), tt.errMentions) {
					t.Errorf("ParsePath(%q) error %q does not mention %q", tt.in, err, tt.errMentions)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePath(%q): %v", tt.in, err)
			}
			if got.Root != tt.want.Root || !reflect.DeepEqual(append([]string{}, got.Segments...), tt.want.Segments) {
				t.Errorf("ParsePath(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.wantString {
				t.Errorf("String() = %q, want %q", s, tt.wantString)
			}
		})
	}
}

func TestParsePathAcceptsEveryEventField(t *testing.T) {
	t.Parallel()
	for _, f := range EventFields {
		if _, err := ParsePath("event." + f); err != nil {
			t.Errorf("ParsePath(event.%s): %v", f, err)
		}
	}
}

func pathTestEvent() *Event {
	return &Event{
		ID:         "ev-1",
		EventType:  EventUpdate,
		EntityType: "Order",
		EntityID:   "o-1",
		Data: map[string]any{
			"status":   "shipped",
			"total":    num("10.50"),
			"customer": map[string]any{"tier": "gold", "address": map[string]any{"city": "Lyon"}},
			"tags":     []any{"a", "b"},
			"gone":     nil,
		},
		Before:    map[string]any{"status": "paid"},
		Changes:   map[string]Change{"status": {Old: "paid", New: "shipped"}, "note": {Old: nil, New: "x"}},
		TenantID:  "t-1",
		Timestamp: time.Date(2026, 5, 6, 7, 8, 9, 500, time.FixedZone("X", 3600)),
	}
}

func TestPathResolve(t *testing.T) {
	t.Parallel()
	noBefore := pathTestEvent()
	noBefore.Before, noBefore.Changes = nil, nil
	tests := []struct {
		path   string
		ev     *Event
		want   any
		wantOK bool
	}{
		{path: "status", want: "shipped", wantOK: true},
		{path: "data.status", want: "shipped", wantOK: true},
		{path: "total", want: num("10.50"), wantOK: true},
		{path: "customer.tier", want: "gold", wantOK: true},
		{path: "data.customer.address.city", want: "Lyon", wantOK: true},
		{path: "customer", want: map[string]any{"tier": "gold", "address": map[string]any{"city": "Lyon"}}, wantOK: true},
		{path: "gone", want: nil, wantOK: true},
		{path: "missing", wantOK: false},
		{path: "customer.missing", wantOK: false},
		{path: "status.length", wantOK: false},
		{path: "tags.0", wantOK: false},
		{path: "total.x", wantOK: false},
		{path: "gone.x", wantOK: false},
		{path: "before.status", want: "paid", wantOK: true},
		{path: "before.missing", wantOK: false},
		{path: "before.status", ev: noBefore, wantOK: false},
		{path: "before", ev: noBefore, wantOK: false},
		{path: "changes.status.old", want: "paid", wantOK: true},
		{path: "changes.status.new", want: "shipped", wantOK: true},
		{path: "changes.note.old", want: nil, wantOK: true},
		{path: "changes.status", want: map[string]any{"old": "paid", "new": "shipped"}, wantOK: true},
		{path: "changes.total", wantOK: false},
		{path: "changes.status", ev: noBefore, wantOK: false},
		{path: "event.id", want: "ev-1", wantOK: true},
		{path: "event.event_type", want: "UPDATE", wantOK: true},
		{path: "event.entity_type", want: "Order", wantOK: true},
		{path: "event.entity_id", want: "o-1", wantOK: true},
		{path: "event.tenant_id", want: "t-1", wantOK: true},
		{path: "event.user_id", want: nil, wantOK: true},
		{path: "event.source", want: nil, wantOK: true},
		{path: "event.timestamp", want: "2026-05-06T06:08:09.0000005Z", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			ev := tt.ev
			if ev == nil {
				ev = pathTestEvent()
			}
			p, err := ParsePath(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := p.Resolve(ev)
			if ok != tt.wantOK {
				t.Fatalf("Resolve(%s) ok = %v, want %v (value %#v)", tt.path, ok, tt.wantOK, got)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Resolve(%s) = %#v, want %#v", tt.path, got, tt.want)
			}
		})
	}
}

func TestFormatValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   any
		want string
	}{
		{name: "null", in: nil, want: ""},
		{name: "string", in: `a "q"`, want: `a "q"`},
		{name: "number as written", in: num("1.50"), want: "1.50"},
		{name: "true", in: true, want: "true"},
		{name: "false", in: false, want: "false"},
		{name: "object", in: map[string]any{"a": num("1"), "b": "x"}, want: `{"a":1,"b":"x"}`},
		{name: "array", in: []any{num("1"), nil, "s"}, want: `[1,null,"s"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := FormatValue(tt.in); got != tt.want {
				t.Errorf("FormatValue(%#v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
