package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
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

// dbPassword is planted in every connection URL of the conformance suite;
// the test server trusts loopback, so it is never checked, only carried.
const dbPassword = "DBPASSWORD-61c0e9"

func TestFunctionCallerConformance(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewDatabase(t)
	admin := newPoolAt(t, dbURL)
	if _, err := admin.Exec(t.Context(), `
		CREATE SCHEMA app;
		CREATE TABLE app.calls (arg jsonb);
		CREATE FUNCTION app.record_call(arg jsonb) RETURNS void LANGUAGE sql AS $$ INSERT INTO app.calls VALUES (arg) $$;
		CREATE FUNCTION app.refuse(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused %', arg->'event'->>'id'; END $$;
		CREATE FUNCTION app.lose_connection(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); END $$;
		CREATE FUNCTION app.hang(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(600); END $$;`); err != nil {
		t.Fatal(err)
	}
	// target calls fn through a pool of its own, named so that its sessions
	// can be found in pg_stat_activity, with the password in its URL.
	target := func(t *testing.T, rawURL, fn string) (porttest.ActionTarget, string) {
		t.Helper()
		u, err := url.Parse(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), dbPassword)
		app := testenv.Name("conformance")
		q := u.Query()
		q.Set("application_name", app)
		u.RawQuery = q.Encode()
		act := &domain.Action{Name: "db-1", Type: domain.ActionDatabase, Database: &domain.DatabaseAction{FunctionName: fn}}
		return porttest.ActionTarget{Executor: NewFunctionCaller(newPoolAt(t, u.String())), Action: act}, app
	}
	call := func(fn string) func(t *testing.T) porttest.ActionTarget {
		return func(t *testing.T) porttest.ActionTarget {
			tg, _ := target(t, dbURL, fn)
			return tg
		}
	}
	porttest.RunActionExecutor(t, porttest.ActionHarness{
		Features: porttest.ActionFeatures{TransientFailures: true, PermanentFailures: true, Blocks: true},
		Success: func(t *testing.T) porttest.ActionTarget {
			tg, _ := target(t, dbURL, "app.record_call")
			tg.Took = func(ctx context.Context, ev *domain.Event) (bool, error) {
				var n int
				err := admin.QueryRow(ctx, `SELECT count(*) FROM app.calls WHERE arg->'event'->>'id' = $1`, ev.ID).Scan(&n)
				return n == 1, err
			}
			return tg
		},
		Transient: map[string]func(t *testing.T) porttest.ActionTarget{
			"connection lost during the call": call("app.lose_connection"),
			"server unreachable": func(t *testing.T) porttest.ActionTarget {
				tg, _ := target(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/nowhere?sslmode=disable&connect_timeout=5", testsupport.FreePort(t)), "app.record_call")
				return tg
			},
		},
		Permanent: map[string]func(t *testing.T) porttest.ActionTarget{
			"function raises":  call("app.refuse"),
			"no such function": call("app.nope"),
			"invalid name":     call("app.nope; DROP TABLE app.calls"),
		},
		Blocking: func(t *testing.T) porttest.ActionTarget {
			tg, app := target(t, dbURL, "app.hang")
			tg.Reached = func(ctx context.Context) error {
				for {
					var sleeping bool
					if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
						WHERE application_name = $1 AND wait_event = 'PgSleep')`, app).Scan(&sleeping); err != nil || sleeping {
						return err
					}
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			return tg
		},
		Secrets: []string{dbPassword},
	})
}

// newPoolAt opens a pool on rawURL, closed when the test ends.
func newPoolAt(t *testing.T, rawURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), rawURL)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
