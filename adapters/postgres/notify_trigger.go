package postgres

import (
	"context"
	"errors"
	"strconv"

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
// function notifies only while a reader waits: a reader about to block
// holds the advisory lock (wakeLockClass, hashtext(channel)) in exclusive
// mode (ChangeLog.Wait), and the share-mode probe here fails exactly then.
// Probes of concurrent writers never conflict with each other, and a
// successful probe is released in the same expression, so it is never
// held past this call (nor across an interruption). A writer that probed
// just before a reader armed does not notify: the reader covers it by
// watching that transaction end (see ChangeLog.Wait). The body reads no
// table and no snapshot, needs no privilege beyond EXECUTE, and a
// REPEATABLE READ writer sees the reader's current state.
var notifyFunctionBody = `
BEGIN
	IF NOT (pg_catalog.pg_try_advisory_lock_shared(` + strconv.Itoa(int(wakeLockClass)) + `, pg_catalog.hashtext(TG_ARGV[0]))
	        AND pg_catalog.pg_advisory_unlock_shared(` + strconv.Itoa(int(wakeLockClass)) + `, pg_catalog.hashtext(TG_ARGV[0]))) THEN
		PERFORM pg_catalog.pg_notify(TG_ARGV[0], '');
	END IF;
	RETURN NULL;
END
`

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
	// The trigger is replaced only when missing or pointing at another
	// channel or function, so that a routine migrate (or an upgrade of the
	// function) takes no table lock.
	var current string
	err = tx.QueryRow(ctx, `
		SELECT t.tgfoid::regprocedure::text || '|' || encode(t.tgargs, 'escape')
		FROM pg_trigger t
		WHERE t.tgrelid = to_regclass($1) AND t.tgname = $2`,
		tbl.Sanitize(), notifyTriggerName).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return interpretError("look up notify trigger", err)
	}
	var want string
	if err := tx.QueryRow(ctx, `SELECT to_regprocedure($1)::text || '|' || encode(convert_to($2, 'UTF8') || '\x00'::bytea, 'escape')`,
		fn+"()", channel).Scan(&want); err != nil {
		return interpretError("look up notify function", err)
	}
	if current == want {
		return nil
	}
	trg := pgx.Identifier{notifyTriggerName}.Sanitize()
	if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS `+trg+` ON `+tbl.Sanitize()); err != nil {
		return interpretError("drop notify trigger", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TRIGGER `+trg+` AFTER INSERT ON `+tbl.Sanitize()+
		` FOR EACH STATEMENT EXECUTE FUNCTION `+fn+`(`+quoteLiteral(channel)+`)`); err != nil {
		return interpretError("create notify trigger", err)
	}
	return nil
}

// dropNotify removes the notify trigger from the change log when it is
// there (a routine migrate of a table without it takes no table lock). The
// function stays: other change logs may use it.
func dropNotify(ctx context.Context, tx pgx.Tx, tbl tableName) error {
	var present bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2)`,
		tbl.Sanitize(), notifyTriggerName).Scan(&present); err != nil {
		return interpretError("look up notify trigger", err)
	}
	if !present {
		return nil
	}
	if _, err := tx.Exec(ctx, `DROP TRIGGER `+pgx.Identifier{notifyTriggerName}.Sanitize()+` ON `+tbl.Sanitize()); err != nil {
		return interpretError("drop notify trigger", err)
	}
	return nil
}
