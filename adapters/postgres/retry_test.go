package postgres

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

func TestRetriesConformance(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	porttest.RunRetryStore(t, func(t *testing.T) porttest.RetryStores {
		schema := newSchema(t)
		r, err := NewRetries(pool, schema)
		if err != nil {
			t.Fatalf("NewRetries: %v", err)
		}
		d, err := NewDeadLetters(pool, schema)
		if err != nil {
			t.Fatalf("NewDeadLetters: %v", err)
		}
		return porttest.RetryStores{Retries: r, Counter: r, DeadLetters: d}
	})
}

// newRetryStores opens a retry store and its dead letters in a schema of
// their own.
func newRetryStores(t *testing.T) (*pgxpool.Pool, *Retries, *DeadLetters) {
	t.Helper()
	pool, newSchema := newStateSchemas(t)
	schema := newSchema(t)
	r, err := NewRetries(pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := NewDeadLetters(pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	return pool, r, dl
}

// TestRetriesRepairReleasesAStrandedKey strands a key by deleting its due
// head behind the store's back (as an operator's DELETE would) and checks
// that Repair makes the next item due, and that the store copes with
// texts PostgreSQL cannot hold.
func TestRetriesRepairReleasesAStrandedKey(t *testing.T) {
	t.Parallel()
	pool, r, _ := newRetryStores(t)
	ctx := t.Context()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	park := func(id string) ports.RetryItem {
		t.Helper()
		it, _, err := r.Park(ctx, ports.RetryItem{Event: domain.Event{ID: id, EntityType: "Order", EntityID: "1"}, Observer: "o", EntityKey: "Order:1",
			Actions: []ports.RetryAction{{Action: "a", ActionType: domain.ActionWebhook, Endpoint: "e", LastError: "bad \x00 byte \xff", Due: now}}})
		if err != nil {
			t.Fatalf("Park: %v", err)
		}
		return it
	}
	head, second := park("e1"), park("e2")
	if _, err := pool.Exec(ctx, `DELETE FROM `+r.table+` WHERE id = $1`, head.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := r.ClaimDue(ctx, ports.RetryClaim{Holder: "h", Now: now, TTL: time.Minute}, 10, nil); err != nil || len(got) != 0 {
		t.Fatalf("ClaimDue on a stranded key = %v, %v; want nothing", got, err)
	}
	if n, err := r.Repair(ctx); err != nil || n != 1 {
		t.Fatalf("Repair = %d, %v; want 1", n, err)
	}
	got, err := r.ClaimDue(ctx, ports.RetryClaim{Holder: "h", Now: now, TTL: time.Minute}, 10, nil)
	if err != nil || len(got) != 1 || got[0].ID != second.ID {
		t.Fatalf("ClaimDue after Repair = %v, %v; want item %d", got, err, second.ID)
	}
	dead := []ports.DeadLetter{{Event: got[0].Event, Observer: "o", Action: "a", Error: "nul \x00 and \xfe", Attempts: 3}}
	if _, _, err := r.Complete(ctx, got[0], ports.RetryClaim{Holder: "h", Now: now, TTL: time.Minute}, dead); err != nil {
		t.Fatalf("Complete with a dead letter holding NUL and invalid UTF-8: %v", err)
	}
}

func TestDeliveryLogConformance(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	porttest.RunDeliveryLog(t, func(t *testing.T) ports.DeliveryLog {
		l, err := NewDeliveryLog(pool, newSchema(t))
		if err != nil {
			t.Fatalf("NewDeliveryLog: %v", err)
		}
		return l
	})
}

func TestEndpointStatesConformance(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	porttest.RunEndpointStates(t, func(t *testing.T) ports.EndpointStates {
		s, err := NewEndpointStates(pool, newSchema(t))
		if err != nil {
			t.Fatalf("NewEndpointStates: %v", err)
		}
		return s
	})
}

// TestRetriesUndecodableItemIsDeadLettered: an item whose stored event or
// actions the code cannot read back (an older version's, one edited by
// hand) failed every claim of the batch it fell in and, being due first,
// came back in every batch. It is moved to the dead letters (its stored
// event kept, its actions named, the reason given), the other items of
// the batch are claimed, and the dead-letter list shows it.
func TestRetriesUndecodableItemIsDeadLettered(t *testing.T) {
	t.Parallel()
	pool, r, dl := newRetryStores(t)
	ctx := t.Context()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []int64
	for _, id := range []string{"e1", "e2", "e3"} {
		it, _, err := r.Park(ctx, ports.RetryItem{Event: domain.Event{ID: id, EntityType: "Order", EntityID: id}, Observer: "o", EntityKey: "Order:" + id,
			Actions: []ports.RetryAction{{Action: "hook", ActionType: domain.ActionWebhook, Endpoint: "e", Due: now}}})
		if err != nil {
			t.Fatalf("Park: %v", err)
		}
		ids = append(ids, it.ID)
	}
	// e1: an event whose id is a number; e2: actions that are no list.
	if _, err := pool.Exec(ctx, `UPDATE `+r.table+` SET event = '{"id": 1, "entity_type": "Order"}' WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE `+r.table+` SET actions = '{"not": "a list"}' WHERE id = $1`, ids[1]); err != nil {
		t.Fatal(err)
	}
	got, err := r.ClaimDue(ctx, ports.RetryClaim{Holder: "h", Now: now, TTL: time.Minute}, 10, nil)
	if err != nil || len(got) != 1 || got[0].Event.ID != "e3" {
		t.Fatalf("ClaimDue = %+v, %v; want e3 alone", got, err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+r.table).Scan(&left); err != nil || left != 1 {
		t.Fatalf("%d items left in the store (%v), want e3's", left, err)
	}
	dead, err := dl.List(ctx, ports.DeadLetterFilter{})
	if err != nil || len(dead) != 2 {
		t.Fatalf("dead letters = %+v, %v; want the two undecodable items", dead, err)
	}
	for i, want := range []struct{ eventID, action, in string }{{"1", "hook", "event"}, {"e2", "", "actions"}} {
		d := dead[i]
		if d.Event.ID != want.eventID || d.Action != want.action || d.Observer != "o" ||
			!strings.Contains(d.Error, fmt.Sprintf("item %d cannot be decoded (%s:", ids[i], want.in)) {
			t.Errorf("dead letter %d = %+v, want event %q, action %q and the reason naming the %s", i, d, want.eventID, want.action, want.in)
		}
	}
	if !strings.Contains(dead[0].Error, "the stored event cannot be decoded") || !strings.Contains(string(dead[0].Raw), `"id": 1`) {
		t.Errorf("the listed dead letter whose event does not decode: error %q, raw %s; want the note and the stored event", dead[0].Error, dead[0].Raw)
	}
}
