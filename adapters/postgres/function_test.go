package postgres

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestParseFunctionName(t *testing.T) {
	t.Parallel()
	good := map[string]string{"notify": `"notify"`, "app.notify_shipping": `"app"."notify_shipping"`, "f$1": `"f$1"`}
	for in, want := range good {
		got, err := ParseFunctionName(in)
		if err != nil || got != want {
			t.Errorf("ParseFunctionName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a.b.c", "1fn", "fn()", "fn; drop table x", "a.", `"x"`} {
		if _, err := ParseFunctionName(bad); err == nil {
			t.Errorf("ParseFunctionName(%q) accepted", bad)
		}
	}
}

func TestFunctionCallerCallsWithEventAndParams(t *testing.T) {
	t.Parallel()
	b := setup(t, ChangeLogConfig{})
	ctx := t.Context()
	if _, err := b.pool.Exec(ctx, `
		CREATE SCHEMA app;
		CREATE TABLE app.calls (arg jsonb);
		CREATE FUNCTION app.record_call(arg jsonb) RETURNS void LANGUAGE sql AS $$ INSERT INTO app.calls VALUES (arg) $$;
		CREATE FUNCTION app.refuse(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused %', arg->'event'->>'id'; END $$;`); err != nil {
		t.Fatal(err)
	}
	caller := NewFunctionCaller(b.pool)
	ev := &domain.Event{ID: "e-1", EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o-1",
		Data: map[string]any{"total": json.Number("100.10")}}
	act := func(fn string) *domain.Action {
		return &domain.Action{Name: "db-1", Type: domain.ActionDatabase,
			Database: &domain.DatabaseAction{FunctionName: fn, Params: map[string]any{"queue": "shipping", "priority": int64(2)}}}
	}
	if err := caller.Execute(ctx, ev, &domain.Observer{Name: "o"}, act("app.record_call")); err != nil {
		t.Fatalf("call: %v", err)
	}
	var got struct {
		Event  domain.Event   `json:"event"`
		Params map[string]any `json:"params"`
	}
	var raw string
	if err := b.pool.QueryRow(ctx, `SELECT arg::text FROM app.calls`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Event.ID != "e-1" || got.Event.EntityID != "o-1" || got.Event.Data["total"] != json.Number("100.10") {
		t.Errorf("event argument = %+v", got.Event)
	}
	if got.Params["queue"] != "shipping" || got.Params["priority"] != json.Number("2") {
		t.Errorf("params argument = %v", got.Params)
	}

	for name, fn := range map[string]string{"raises": "app.refuse", "missing": "app.nope"} {
		err := caller.Execute(ctx, ev, &domain.Observer{Name: "o"}, act(fn))
		if err == nil || !domain.IsPermanent(err) {
			t.Errorf("%s: err = %v, want a permanent failure", name, err)
		}
	}
}
