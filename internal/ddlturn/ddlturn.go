// Package ddlturn lets the test suites (internal/testenv) and the load
// harness (cmd/fraiseql-bench) run their CREATE and DROP DATABASE
// statements one at a time on a PostgreSQL server, whichever process they
// run in. It imports the standard library only: the callers bring their
// own connection.
//
// Each such statement holds a transaction id for as long as it runs, and
// every change-log reader of the cluster (other tests' readers in their
// own databases included) waits for the oldest running transaction before
// it may read later rows. Run side by side under a loaded suite they took
// up to 6 s each (0.1 s alone on the development machine) and held every
// reader back for that long; one at a time, a reader waits for one of
// them at most.
package ddlturn

import (
	"context"
	"fmt"
	"time"
)

// Timeout is what a caller gives a CREATE or DROP DATABASE, the wait for
// the turn included: under a loaded suite the statements ahead take
// seconds each.
const Timeout = 2 * time.Minute

// Lock is the advisory lock's two-int key ("FQLT", 1) that gives the turn.
var Lock = [2]int32{0x46514C54, 1}

// Session runs one SQL statement with its arguments on a single session
// (a connection, not a pool: the advisory lock belongs to the session);
// pgx's *Conn is one, with T its pgconn.CommandTag.
type Session[T any] interface {
	Exec(ctx context.Context, sql string, args ...any) (T, error)
}

// Run runs statement on conn while holding the server's turn (Lock),
// waiting for it as long as ctx allows. The turn is released afterwards
// even when the statement failed or ctx ended (with up to 5 s of its
// own); the session's end would release it in any case.
func Run[T any](ctx context.Context, conn Session[T], statement string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_catalog.pg_advisory_lock($1, $2)`, Lock[0], Lock[1]); err != nil {
		return fmt.Errorf("wait for the turn to run %q: %w", statement, err)
	}
	_, err := conn.Exec(ctx, statement)
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, uerr := conn.Exec(uctx, `SELECT pg_catalog.pg_advisory_unlock($1, $2)`, Lock[0], Lock[1]); uerr != nil && err == nil {
		err = fmt.Errorf("release the turn after %q: %w", statement, uerr)
	}
	return err
}
