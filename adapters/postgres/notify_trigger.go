package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// This file installs the statement-level trigger that wakes a waiting
// reader (the reader's side is listen.go).

// notifyTriggerName is the statement-level trigger Migrate installs on the
// change log.
const notifyTriggerName = "fraiseql_observer_notify"

// notifyFunctionName is the trigger function, in the observer schema, that
// wakes the reader of channel TG_ARGV[0] (see notifyFunctionBody).
const notifyFunctionName = "notify_change_log"

// notifyFunctionBody wakes a waiting reader without costing the writers
// their commit rate. PostgreSQL serialises the commits of transactions
// that issued NOTIFY (a database-wide lock held through commit), so the
// writers notify only while a reader waits: a reader about to block holds
// the advisory lock (wakeLockClass, hashtext(channel)) in exclusive mode
// (ChangeLog.Wait), and a writer's share-mode probe fails exactly then.
//
// The probe is the trigger's WHEN clause (notifyWhen), so that the
// function runs only to notify: a statement whose probe succeeds costs
// the writer one trip through the lock manager and no PL/pgSQL call. The
// probe is transaction-level: it is released when the writer's
// transaction ends (no second trip to release it), and until then a
// reader cannot arm (its exclusive try fails and it polls), so no writer
// that probed before an arm can commit after it without notifying. The
// function probes again itself, so that the trigger of an installation
// without the WHEN clause still notifies only a waiting reader. Probes of
// concurrent writers never conflict with each other; the body reads no
// table and no snapshot, needs no privilege beyond EXECUTE, and a
// REPEATABLE READ writer sees the reader's current state.
//
// The payload is the writer's transaction id: a reader that keeps its arm
// between notifications (listener.keepArm) learns from it which rows it
// must read before it may wait again.
var notifyFunctionBody = `
BEGIN
	IF NOT pg_catalog.pg_try_advisory_xact_lock_shared(` + strconv.Itoa(int(wakeLockClass)) + `, pg_catalog.hashtext(TG_ARGV[0])) THEN
		PERFORM pg_catalog.pg_notify(TG_ARGV[0], pg_catalog.pg_current_xact_id()::text);
	END IF;
	RETURN NULL;
END
`

// notifyWhen is the trigger's WHEN clause for a channel whose
// hashtext is key: the transaction-level share-mode probe of the wake-up
// lock, true (fire the function) when a reader holds it.
func notifyWhen(key int32) string {
	return `NOT pg_catalog.pg_try_advisory_xact_lock_shared(` + strconv.Itoa(int(wakeLockClass)) + `, ` + strconv.Itoa(int(key)) + `)`
}

func migrateNotify(ctx context.Context, tx pgx.Tx, tbl tableName, observerSchema, channel string) error {
	fn := pgx.Identifier{observerSchema, notifyFunctionName}.Sanitize()
	// The function is replaced in place (same oid, so the trigger keeps
	// pointing at it): an installation with the notify-always body of
	// earlier versions is upgraded without touching the table. An
	// up-to-date body is left alone, so that no session has to recompile it.
	var body string
	err := tx.QueryRow(ctx, `SELECT coalesce((SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = to_regprocedure($1)), '')`,
		fn+"()").Scan(&body)
	if err != nil {
		return interpretError("look up notify function", err)
	}
	if body != notifyFunctionBody {
		if _, err := tx.Exec(ctx, `CREATE OR REPLACE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS `+
			dollarQuote(notifyFunctionBody)); err != nil {
			return interpretError("create notify function", err)
		}
	}
	// The trigger is replaced only when missing, pointing at another
	// channel or function, or without its WHEN clause (earlier versions),
	// so that a routine migrate (or an upgrade of the function) takes no
	// table lock.
	var current string
	err = tx.QueryRow(ctx, `
		SELECT t.tgfoid::regprocedure::text || '|' || encode(t.tgargs, 'escape') || '|' || coalesce(pg_catalog.pg_get_expr(t.tgqual, t.tgrelid), '')
		FROM pg_trigger t
		WHERE t.tgrelid = to_regclass($1) AND t.tgname = $2`,
		tbl.Sanitize(), notifyTriggerName).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return interpretError("look up notify trigger", err)
	}
	var want string
	var key int32
	if err := tx.QueryRow(ctx, `SELECT to_regprocedure($1)::text || '|' || encode(convert_to($2, 'UTF8') || '\x00'::bytea, 'escape'), pg_catalog.hashtext($2)`,
		fn+"()", channel).Scan(&want, &key); err != nil {
		return interpretError("look up notify function", err)
	}
	if prefix, qual, ok := cutLast(current, "|"); ok && prefix == want && currentWhen(qual, key) {
		return nil
	}
	trg := pgx.Identifier{notifyTriggerName}.Sanitize()
	if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS `+trg+` ON `+tbl.Sanitize()); err != nil {
		return interpretError("drop notify trigger", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TRIGGER `+trg+` AFTER INSERT ON `+tbl.Sanitize()+
		` FOR EACH STATEMENT WHEN (`+notifyWhen(key)+`) EXECUTE FUNCTION `+fn+`(`+quoteLiteral(channel)+`)`); err != nil {
		return interpretError("create notify trigger", err)
	}
	return nil
}

// currentWhen reports whether qual, a WHEN clause as PostgreSQL prints it
// back, is notifyWhen(key): "(NOT pg_try_advisory_xact_lock_shared(C, K))"
// with a negative K printed as '-K'::integer.
func currentWhen(qual string, key int32) bool {
	call := "pg_try_advisory_xact_lock_shared(" + strconv.Itoa(int(wakeLockClass)) + ", "
	k := strconv.Itoa(int(key))
	return strings.Contains(qual, call+k+")") || strings.Contains(qual, call+"'"+k+"'::integer)")
}

// cutLast slices s around the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// dropNotify removes the notify trigger from the change log when it is
// there (a routine migrate of a table without it takes no table lock). The
// function stays: other change logs may use it.
func dropNotify(ctx context.Context, tx pgx.Tx, tbl tableName) error {
	present, err := notifyTriggerPresent(ctx, tx, tbl.Sanitize())
	if err != nil {
		return err
	}
	if !present {
		return nil
	}
	if _, err := tx.Exec(ctx, `DROP TRIGGER `+pgx.Identifier{notifyTriggerName}.Sanitize()+` ON `+tbl.Sanitize()); err != nil {
		return interpretError("drop notify trigger", err)
	}
	return nil
}

// warnOnTrigger logs a warning when the change log's notify trigger does
// not suit how this reader is woken (migrate sets it as database.wake
// says): a reader that polls while the trigger is installed leaves the
// writers paying for it, and one woken by NOTIFY without it finds new rows
// only at its poll interval. A database that cannot be asked is not an
// error here.
func (c *ChangeLog) warnOnTrigger(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	present, err := notifyTriggerPresent(ctx, c.pool, c.table)
	if err != nil {
		c.logger.Debug("cannot look up the notify trigger", "error", err)
		return
	}
	switch {
	case present && c.cfg.PollOnly:
		c.logger.Warn("the change log has the notify trigger but this reader polls (database.wake = \"poll\"): the writers pay for a trigger no one needs; run `fraiseql-observer migrate` with this configuration, or start with database.migrate_on_start, to drop it",
			"table", c.table, "trigger", notifyTriggerName)
	case !present && !c.cfg.PollOnly:
		c.logger.Warn("the change log has no notify trigger but this reader waits for NOTIFY (database.wake = \"notify\"): new rows are found only at each poll interval; run `fraiseql-observer migrate` with this configuration, or start with database.migrate_on_start, to install it",
			"table", c.table, "trigger", notifyTriggerName, "poll_interval", c.cfg.PollInterval)
	}
}

// warnOnPreparedTransactions logs a warning when the server allows
// prepared transactions while this reader waits for NOTIFY: PostgreSQL
// refuses to PREPARE a transaction that notified, and the change log's
// trigger notifies a waiting reader, so such a writer would fail whenever
// it found the reader waiting. A server that cannot be asked is not an
// error here.
func (c *ChangeLog) warnOnPreparedTransactions(ctx context.Context) {
	if c.cfg.PollOnly {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int
	if err := c.pool.QueryRow(ctx, `SELECT current_setting('max_prepared_transactions')::int`).Scan(&n); err != nil {
		c.logger.Debug("cannot read max_prepared_transactions", "error", err)
		return
	}
	if msg := preparedTransactionsWarning(n); msg != "" {
		c.logger.Warn(msg, "max_prepared_transactions", n)
	}
}

// preparedTransactionsWarning is the warning of a notify reader on a
// server allowing n prepared transactions ("" when n is 0).
func preparedTransactionsWarning(n int) string {
	if n <= 0 {
		return ""
	}
	return "the server allows prepared transactions and this reader waits for NOTIFY (database.wake = \"notify\"): a writer that PREPAREs a transaction after writing the change log fails (\"cannot PREPARE a transaction that has executed ... NOTIFY\") whenever it finds the reader waiting; with two-phase commit, set database.wake = \"poll\" and migrate"
}

// notifyTriggerPresent reports whether the change log table (quoted) has
// the notify trigger.
func notifyTriggerPresent(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, table string,
) (bool, error) {
	var present bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2)`,
		table, notifyTriggerName).Scan(&present); err != nil {
		return false, interpretError("look up notify trigger", err)
	}
	return present, nil
}
