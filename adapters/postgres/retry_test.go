package postgres

import (
	"testing"
	"time"

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

// TestRetriesRepairReleasesAStrandedKey strands a key by deleting its due
// head behind the store's back (as an operator's DELETE would) and checks
// that Repair makes the next item due, and that the store copes with
// texts PostgreSQL cannot hold.
func TestRetriesRepairReleasesAStrandedKey(t *testing.T) {
	t.Parallel()
	pool, newSchema := newStateSchemas(t)
	schema := newSchema(t)
	r, err := NewRetries(pool, schema)
	if err != nil {
		t.Fatal(err)
	}
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
