package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

func TestParseFunctionName(t *testing.T) {
	t.Parallel()
	good := map[string]string{"notify": `"notify"`, "app.notify_shipping": `"app"."notify_shipping"`, "f$1": `"f$1"`,
		"App.NotifyShipping": `"app"."notifyshipping"`} // folded as PostgreSQL folds an unquoted name
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
		CREATE FUNCTION app.refuse(arg jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused %', arg->'event'->>'id'; END $$;
		CREATE FUNCTION App.RecordCallToo(arg jsonb) RETURNS void LANGUAGE sql AS $$ INSERT INTO app.calls VALUES (arg) $$;`); err != nil {
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
	// A name with capitals, as the function was created without quotes:
	// it was a permanent "function does not exist" before.
	if err := caller.Execute(ctx, ev, &domain.Observer{Name: "o"}, act("App.RecordCallToo")); err != nil {
		t.Errorf("call of a mixed-case name: %v", err)
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

// TestFunctionCallerTimeout: a function that runs longer than the timeout
// is cancelled on the server (its backend is freed, not left sleeping)
// and fails transiently; the timeout does not outlive the call.
func TestFunctionCallerTimeout(t *testing.T) {
	t.Parallel()
	url := testenv.NewDatabase(t)
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 1 // the next query reuses the call's connection
	pool, err := pgxpool.NewWithConfig(t.Context(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION slow(arg jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(30) $$;
		CREATE FUNCTION quick(arg jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(0.05) $$;`); err != nil {
		t.Fatal(err)
	}
	caller, err := NewFunctionCallerConfig(pool, FunctionCallerConfig{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ev := &domain.Event{ID: "e-1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "o-1", Data: map[string]any{}}
	act := func(fn string) *domain.Action {
		return &domain.Action{Name: "db", Type: domain.ActionDatabase, Database: &domain.DatabaseAction{FunctionName: fn}}
	}

	done := make(chan error, 1)
	go func() { done <- caller.Execute(ctx, ev, &domain.Observer{Name: "o"}, act("slow")) }()
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("a 30s function was not stopped by a 300ms timeout")
	}
	if err == nil || domain.IsPermanent(err) {
		t.Fatalf("timed-out call: err = %v, want a transient failure", err)
	}
	if !strings.Contains(err.Error(), "timeout 300ms") {
		t.Errorf("error %q does not name the timeout", err)
	}
	// The server stopped the statement: no backend of this database is
	// still sleeping (a client-side cancel alone would leave it for 30s).
	var sleeping int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%slow(%' AND state = 'active' AND pid <> pg_backend_pid()`).Scan(&sleeping); err != nil {
		t.Fatal(err)
	}
	if sleeping != 0 {
		t.Errorf("%d backends still run the timed-out function", sleeping)
	}
	var st string
	if err := pool.QueryRow(ctx, `SHOW statement_timeout`).Scan(&st); err != nil {
		t.Fatal(err)
	}
	if st != "0" {
		t.Errorf("statement_timeout after the call = %s; the call's timeout leaked to the pooled connection", st)
	}
	if err := caller.Execute(ctx, ev, &domain.Observer{Name: "o"}, act("quick")); err != nil {
		t.Errorf("a call within the timeout: %v", err)
	}
}

func TestFunctionCallerConfig(t *testing.T) {
	t.Parallel()
	if c := NewFunctionCaller(nil); c.timeout != DefaultFunctionTimeout || c.timeoutMS != "30000" {
		t.Errorf("default timeout = %s (%s ms), want 30s", c.timeout, c.timeoutMS)
	}
	for _, bad := range []time.Duration{-time.Second, time.Microsecond} {
		if _, err := NewFunctionCallerConfig(nil, FunctionCallerConfig{Timeout: bad}); err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("timeout %s: err = %v, want one naming timeout", bad, err)
		}
	}
}

// An action's own timeout overrides the executor's default.
func TestFunctionCallerActionTimeout(t *testing.T) {
	t.Parallel()
	pool := newPoolAt(t, testenv.NewDatabase(t))
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `CREATE FUNCTION slow(arg jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(30) $$`); err != nil {
		t.Fatal(err)
	}
	caller := NewFunctionCaller(pool) // 30s default
	ev := &domain.Event{ID: "e-1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "o-1", Data: map[string]any{}}
	act := &domain.Action{Name: "db", Type: domain.ActionDatabase,
		Database: &domain.DatabaseAction{FunctionName: "slow", Timeout: 200 * time.Millisecond}}
	start := time.Now()
	err := caller.Execute(ctx, ev, &domain.Observer{Name: "o"}, act)
	if err == nil || domain.IsPermanent(err) || !strings.Contains(err.Error(), "timeout 200ms") {
		t.Fatalf("err = %v, want a transient failure naming the action's 200ms timeout", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the call took %s: the action's timeout was not applied", took)
	}
}

// TestRetryableSQL: the answers a later attempt can get past are retried;
// the others are dead-lettered at once. Disk full, out of memory, a
// standby's read-only transaction after a failover, a server shutting
// down and a replaced function's cached plan were dead-lettered at once.
func TestRetryableSQL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code, msg string
		retry     bool
	}{
		{"40001", "could not serialize access", true},
		{"40P01", "deadlock detected", true},
		{"57014", "canceling statement due to statement timeout", true},
		{"53300", "too many connections", true},
		{"53100", "could not extend file: No space left on device", true},
		{"53200", "out of memory", true},
		{"25006", "cannot execute SELECT in a read-only transaction", true},
		{"57P01", "terminating connection due to administrator command", true},
		{"08006", "connection failure", true},
		{"58030", "could not write to file", true},
		{"0A000", "cached plan must not change result type", true},
		{"0A000", "unsupported feature", false},
		{"42883", "function does not exist", false},
		{"22P02", "invalid input syntax", false},
		{"42501", "permission denied", false},
	} {
		if got := retryableSQL(&pgconn.PgError{Code: tc.code, Message: tc.msg}); got != tc.retry {
			t.Errorf("%s %q: retryable %v, want %v", tc.code, tc.msg, got, tc.retry)
		}
	}
	if !retryableSQL(errors.New("read tcp: connection reset")) {
		t.Error("an error that is not the server's answer: not retryable, want retryable (the call may not have run)")
	}
}
