package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

func TestDeadLettersConformance(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	porttest.RunDeadLetterStore(t, func(t *testing.T) ports.DeadLetterStore {
		d, err := NewDeadLetters(pool, newSchema(t))
		if err != nil {
			t.Fatalf("NewDeadLetters: %v", err)
		}
		return d
	})
}

// newDeadLetters returns a store on a fresh schema, and its pool.
func newDeadLetters(t *testing.T) (*pgxpool.Pool, *DeadLetters) {
	t.Helper()
	pool, newSchema := newStateSchemas(t)
	s, err := NewDeadLetters(pool, newSchema(t))
	if err != nil {
		t.Fatalf("NewDeadLetters: %v", err)
	}
	return pool, s
}

func TestDeadLettersCountDurabilityAndErrors(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	schema := newSchema(t)
	ctx := t.Context()
	s, err := NewDeadLetters(pool, schema)
	if err != nil {
		t.Fatalf("NewDeadLetters: %v", err)
	}
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Fatalf("Count of an empty queue = %d, %v", n, err)
	}
	var ids []int64
	for range 3 {
		id, err := s.Add(ctx, ports.DeadLetter{Observer: "o", Action: "log-1", Error: "boom", Attempts: 1,
			Event: domain.Event{ID: "e", EventType: domain.EventInsert, EntityType: "Order"}})
		if err != nil {
			t.Fatalf("Add: %v", err)
		}
		ids = append(ids, id)
	}
	if err := s.Remove(ctx, ids[0]); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	// A second instance on the same schema (another process, a restart)
	// sees the same queue.
	other, err := NewDeadLetters(pool, schema)
	if err != nil {
		t.Fatalf("NewDeadLetters: %v", err)
	}
	if n, err := other.Count(ctx); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
	if err := other.MarkRetried(ctx, ids[0], "x", time.Now()); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("MarkRetried(removed) = %v, want ports.ErrNotFound", err)
	}
	if _, err := other.List(ctx, ports.DeadLetterFilter{Limit: -1}); err == nil {
		t.Fatal("List with a negative limit succeeded")
	}
	// A missing table is a plain error, not "not found".
	missing, err := NewDeadLetters(pool, "no_such_schema")
	if err != nil {
		t.Fatalf("NewDeadLetters: %v", err)
	}
	if _, err := missing.Get(ctx, 1); err == nil || errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("Get on a missing table = %v, want an error other than ErrNotFound", err)
	}
}

// TestDeadLetterWritesThatCanNeverSucceedArePermanent: values PostgreSQL
// refuses whatever the retry (a \u0000 in jsonb, SQLSTATE 22P05; a NUL
// byte in text, 22021) are classified permanent, so that callers store a
// fallback form instead of retrying for ever.
func TestDeadLetterWritesThatCanNeverSucceedArePermanent(t *testing.T) {
	t.Parallel()
	_, s := newDeadLetters(t)
	tests := []struct {
		name string
		d    ports.DeadLetter
	}{
		{"NUL in the event's data", ports.DeadLetter{Error: "boom", Attempts: 1,
			Event: domain.Event{ID: "e", EventType: domain.EventInsert, EntityType: "Order", Data: map[string]any{"note": "a\x00b"}}}},
		{"NUL in the error text", ports.DeadLetter{Error: "bad byte \x00 here", Attempts: 1,
			Event: domain.Event{ID: "e", EventType: domain.EventInsert, EntityType: "Order"}}},
		{"invalid UTF-8 in the observer name", ports.DeadLetter{Error: "boom", Observer: "o\xff", Attempts: 1,
			Event: domain.Event{ID: "e", EventType: domain.EventInsert, EntityType: "Order"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.Add(t.Context(), tt.d)
			if err == nil {
				t.Fatal("Add succeeded; the test needs a value PostgreSQL refuses")
			}
			if !domain.IsPermanent(err) || errors.Is(err, ports.ErrUnavailable) {
				t.Fatalf("Add = %v: want a permanent error", err)
			}
		})
	}
}

// TestDeadLetterMarkRetriedStoresAnyErrorText: the error text of a failed
// retry comes from the receiver (an SMTP reply, a response body) and may
// hold NUL bytes or invalid UTF-8, which PostgreSQL text refuses; the
// retry is recorded all the same, with those bytes replaced.
func TestDeadLetterMarkRetriedStoresAnyErrorText(t *testing.T) {
	t.Parallel()
	_, s := newDeadLetters(t)
	ctx := t.Context()
	id, err := s.Add(ctx, ports.DeadLetter{Observer: "o", Action: "email-1", Error: "boom", Attempts: 1,
		Event: domain.Event{ID: "e", EventType: domain.EventInsert, EntityType: "Order"}})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	if err := s.MarkRetried(ctx, id, "550 bad \x00 reply \xff\xfe end", at); err != nil {
		t.Fatalf("MarkRetried with NUL and invalid UTF-8 = %v", err)
	}
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if want := "550 bad \uFFFD reply \uFFFD end"; got.Error != want || got.Attempts != 2 || !got.LastRetryAt.Equal(at) {
		t.Fatalf("after MarkRetried: error %q, attempts %d, last retry %v; want %q, 2, %v", got.Error, got.Attempts, got.LastRetryAt, want, at)
	}
}

// TestDeadLetterBriefListingNotesUndecodableEvents: a brief listing reads
// each event as its skeleton, never the payload, and still notes the
// events a full read cannot decode, with the same error; the events a
// full read decodes carry no note.
func TestDeadLetterBriefListingNotesUndecodableEvents(t *testing.T) {
	t.Parallel()
	pool, s := newDeadLetters(t)
	ctx := t.Context()
	long := strings.Repeat("9", 300)
	tests := []struct {
		name, event string
		decodes     bool
		sameError   bool // the brief note's error text is the full read's
	}{
		{"a whole event with keys no field names", `{"id": "e", "event_type": "INSERT", "entity_type": "Order", "entity_id": "1",
			"data": {"a": [1, {"b": null}], "n": 1e400}, "before": {"a": 1}, "changes": {"a": {"old": 1, "new": 2}, "b": null},
			"tenant_id": "t", "user_id": "u", "timestamp": "2026-01-01T00:00:00.123456789+02:00", "source": "s", "extra": [1, 2]}`, true, true},
		{"null", `null`, true, true},
		{"an empty object", `{}`, true, true},
		{"fields named in another case", `{"ID": "x", "Data": {"a": 1}, "CHANGES": {"c": {"old": 1}}}`, true, true},
		{"an array", `[1, 2]`, false, true},
		{"a string", `"event"`, false, true},
		{"a number", `5`, false, true},
		{"a numeric id", `{"id": 1, "entity_type": "Order"}`, false, true},
		{"data as a string", `{"data": "x"}`, false, true},
		{"data in another case as an array", `{"DATA": [1]}`, false, true},
		{"before as a number", `{"before": 3}`, false, true},
		{"a change that is no object", `{"changes": {"a": {"old": 1}, "b": 5}}`, false, true},
		{"changes in another case as a list", `{"Changes": []}`, false, true},
		{"a tenant that is a boolean", `{"tenant_id": true}`, false, true},
		{"a timestamp that is a number", `{"timestamp": 5}`, false, true},
		{"a date that does not exist", `{"timestamp": "2026-02-31T00:00:00Z"}`, false, true},
		{"a long timestamp", `{"timestamp": "` + long + `"}`, false, false},
	}
	ids := map[int64]int{}
	for i, tt := range tests {
		id, err := s.Add(ctx, ports.DeadLetter{Observer: "o", Action: "hook", Error: "boom", Attempts: 1,
			Event: domain.Event{ID: fmt.Sprintf("e%d", i), EventType: domain.EventInsert, EntityType: "Order"}})
		if err != nil {
			t.Fatalf("Add: %v", err)
		}
		if _, err := pool.Exec(ctx, `UPDATE `+s.table+` SET event = $1::jsonb WHERE id = $2`, tt.event, id); err != nil {
			t.Fatalf("%s: store the event: %v", tt.name, err)
		}
		ids[id] = i
	}
	brief, err := s.List(ctx, ports.DeadLetterFilter{Brief: true})
	if err != nil || len(brief) != len(tests) {
		t.Fatalf("brief List = %d items, %v; want %d", len(brief), err, len(tests))
	}
	const note = " [the stored event cannot be decoded ("
	for _, b := range brief {
		tt := tests[ids[b.ID]]
		full, err := s.Get(ctx, b.ID)
		if err != nil {
			t.Fatalf("Get(%d): %v", b.ID, err)
		}
		if b.Raw != nil || b.Event.ID != fmt.Sprintf("e%d", ids[b.ID]) || b.Event.Data != nil {
			t.Errorf("%s: brief item = %+v, want the event's id alone and no raw", tt.name, b)
		}
		fullNote, briefNote := strings.Contains(full.Error, note), strings.Contains(b.Error, note)
		if fullNote == tt.decodes || briefNote == tt.decodes {
			t.Errorf("%s: error of the full read %q, of the brief listing %q; want a note on both: %v", tt.name, full.Error, b.Error, !tt.decodes)
			continue
		}
		if tt.decodes {
			continue
		}
		fullErr, _, _ := strings.Cut(strings.TrimPrefix(full.Error, "boom"+note), "); ")
		briefErr, where, _ := strings.Cut(strings.TrimPrefix(b.Error, "boom"+note), "); ")
		if tt.sameError && fullErr != briefErr {
			t.Errorf("%s: the brief listing's decoding error %q, the full read's %q", tt.name, briefErr, fullErr)
		}
		if where != "the item read whole has it in raw]" {
			t.Errorf("%s: brief note ends %q", tt.name, where)
		}
	}
}
