package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// TestDatabaseActionCallsTheFunction runs a `database` action end to end:
// the function receives {event, params} once per event, and a function
// that raises is dead-lettered once with its message.
func TestDatabaseActionCallsTheFunction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	if _, err := b.pool.Exec(ctx, `
		CREATE SCHEMA app;
		CREATE TABLE app.shipments (order_id text, queue text, status text);
		CREATE FUNCTION app.enqueue_shipment(arg jsonb) RETURNS void LANGUAGE sql AS $$
			INSERT INTO app.shipments VALUES (arg->'event'->>'entity_id', arg->'params'->>'queue', arg->'event'->'data'->>'status')
		$$;
		CREATE FUNCTION app.reject(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'no carrier for %', arg->'event'->>'entity_id'; END
		$$;`); err != nil {
		t.Fatal(err)
	}
	one := 1
	cfg := b.config(
		config.ObserverConfig{
			Name: "ship", Entity: "Order", Events: []string{"UPDATE"}, Condition: "status == 'shipped'",
			Actions: []config.ActionConfig{{Type: "database", FunctionName: "app.enqueue_shipment", Params: map[string]any{"queue": "express"}}},
		},
		config.ObserverConfig{
			Name: "reject", Entity: "Parcel", Events: []string{"INSERT"}, Retry: &config.RetryConfig{MaxAttempts: &one},
			Actions: []config.ActionConfig{{Type: "database", FunctionName: "app.reject"}},
		},
	)
	app := b.start(t, cfg)
	defer app.stop(t)
	b.insert(t,
		change{Entity: "Order", Kind: "UPDATE", ID: newUUID(), Data: `{"status":"shipped"}`},
		change{Entity: "Order", Kind: "UPDATE", ID: newUUID(), Data: `{"status":"pending"}`},
		change{Entity: "Parcel", Kind: "INSERT", ID: newUUID(), Data: `{}`},
	)
	count := func(q string) int {
		var n int
		if err := b.pool.QueryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, "the shipment row and the rejected parcel's dead letter", func() bool {
		return count(`SELECT count(*) FROM app.shipments`) == 1 && len(b.deadLetters(t)) == 1
	})
	b.waitCheckpointAtEnd(t)
	if n := count(`SELECT count(*) FROM app.shipments WHERE queue = 'express' AND status = 'shipped'`); n != 1 {
		t.Errorf("function received the wrong argument: %d matching rows", n)
	}
	dl := b.deadLetters(t)[0]
	if dl.Observer != "reject" || !strings.Contains(dl.Error, "no carrier for") || dl.Attempts != 1 {
		t.Errorf("dead letter = %+v, want the function's exception after one attempt", dl)
	}
}
