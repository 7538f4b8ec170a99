package main

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observer/internal/ddlturn"
	"github.com/fraiseql/fraiseql-observer/internal/testenv"
)

// TestCreateDatabaseTakesTheTurn: the harness's CREATE and DROP DATABASE
// wait for the server's turn (ddlturn.Lock) that the test suites take, so
// run beside them they hold the suites' readers back no longer than one of
// theirs does. The test holds the turn, sees each statement wait for it
// (pg_locks), and sees it go through once the turn is released.
func TestCreateDatabaseTakesTheTurn(t *testing.T) {
	t.Parallel()
	// The harness's sessions carry a name of this test's own, so that the
	// waiter seen is its statement, not another package's test database.
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	app := testenv.Name("ddlturn")
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	admin := u.String()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	holder, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Close(context.Background()) }()

	inHeldTurn := func(what string, statement func() error) {
		t.Helper()
		if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, ddlturn.Lock[0], ddlturn.Lock[1]); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- statement() }()
		waitForWaiter(ctx, t, holder, app, what, done)
		if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, ddlturn.Lock[0], ddlturn.Lock[1]); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s did not finish once the turn was released", what)
		}
	}

	var db *database
	inHeldTurn("create database", func() error {
		var err error
		d, err := createDatabase(ctx, admin, 1)
		if err == nil {
			t.Cleanup(func() { _ = d.drop() }) // when the test fails before its drop
		}
		db = d
		return err
	})
	if err := db.Pool.Ping(ctx); err != nil {
		t.Fatalf("the created database: %v", err)
	}
	inHeldTurn("drop database", db.drop)
	var n int
	if err := holder.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, db.name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("database %s left after the drop (count %d, %v)", db.name, n, err)
	}
}

// waitForWaiter waits until a session named app waits for the turn,
// failing the test when the statement (done) finishes first: it did not
// wait.
func waitForWaiter(ctx context.Context, t *testing.T, conn *pgx.Conn, app, what string, done <-chan error) {
	t.Helper()
	for {
		var waiting bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = $3
			AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 2)`,
			int64(uint32(ddlturn.Lock[0])), int64(uint32(ddlturn.Lock[1])), app).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("%s ran while the test held the turn (error %v)", what, err)
		case <-ctx.Done():
			t.Fatalf("%s never waited for the turn", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
