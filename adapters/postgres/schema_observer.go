package postgres

import (
	"github.com/jackc/pgx/v5"
)

// observerSchemaStatements creates the observer's own state in schema:
// checkpoints, dead letters and leases, then the durable delivery state
// (durableStatements). Every statement is idempotent.
func observerSchemaStatements(schema string) []string {
	s := pgx.Identifier{schema}.Sanitize()
	return append([]string{
		`CREATE SCHEMA IF NOT EXISTS ` + s,
		`CREATE TABLE IF NOT EXISTS ` + s + `.checkpoints (
			name        text PRIMARY KEY,
			txid        bigint NOT NULL,
			seq         bigint NOT NULL,
			updated_at  timestamptz NOT NULL DEFAULT now()
		)`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.dead_letters (
			id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			event_id      text NOT NULL,
			event         jsonb NOT NULL,
			observer      text NOT NULL DEFAULT '',
			action        text NOT NULL DEFAULT '',
			action_type   text NOT NULL DEFAULT '',
			error         text NOT NULL,
			attempts      integer NOT NULL,
			raw           bytea,
			created_at    timestamptz NOT NULL DEFAULT now(),
			last_retry_at timestamptz
		)`,
		`CREATE INDEX IF NOT EXISTS dead_letters_observer_idx ON ` + s + `.dead_letters (observer, id)`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.leases (
			name        text PRIMARY KEY,
			holder      text NOT NULL,
			expires_at  timestamptz NOT NULL
		)`,
	}, durableStatements(schema)...)
}
