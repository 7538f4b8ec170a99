package postgres

import "github.com/jackc/pgx/v5"

// durableStatements creates the durable delivery state in schema: the
// retry store (parked actions, one row per event and observer), the
// delivery log and the endpoints' last reported circuit states. Every
// statement is idempotent.
func durableStatements(schema string) []string {
	s := pgx.Identifier{schema}.Sanitize()
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + s + `.retries (
			id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			event_id    text NOT NULL,
			observer    text NOT NULL,
			entity_key  text NOT NULL,
			event       jsonb NOT NULL,
			actions     jsonb NOT NULL,
			endpoints   text[] NOT NULL,
			due_at      timestamptz NOT NULL,
			state       text NOT NULL CHECK (state IN ('due', 'waiting')),
			holder      text,
			claim_until timestamptz,
			created_at  timestamptz NOT NULL DEFAULT now(),
			UNIQUE (event_id, observer)
		)`,
		`CREATE INDEX IF NOT EXISTS retries_due_idx ON ` + s + `.retries (due_at, id) WHERE state = 'due'`,
		`CREATE INDEX IF NOT EXISTS retries_key_idx ON ` + s + `.retries (observer, entity_key, id)`,
		`CREATE INDEX IF NOT EXISTS retries_endpoints_idx ON ` + s + `.retries USING gin (endpoints)`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.deliveries (
			id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			at          timestamptz NOT NULL,
			event_id    text NOT NULL,
			observer    text NOT NULL,
			action      text NOT NULL,
			action_type text NOT NULL,
			endpoint    text NOT NULL,
			attempt     integer NOT NULL,
			trigger     text NOT NULL,
			outcome     text NOT NULL,
			status_code integer,
			latency_us  bigint NOT NULL,
			error       text NOT NULL DEFAULT '',
			response    text NOT NULL DEFAULT ''
		)`,
		`CREATE INDEX IF NOT EXISTS deliveries_at_idx ON ` + s + `.deliveries (at)`,
		`CREATE INDEX IF NOT EXISTS deliveries_event_idx ON ` + s + `.deliveries (event_id, id)`,
		`CREATE INDEX IF NOT EXISTS deliveries_endpoint_idx ON ` + s + `.deliveries (endpoint, id)`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.endpoint_states (
			endpoint             text PRIMARY KEY,
			holder               text NOT NULL,
			state                text NOT NULL,
			consecutive_failures integer NOT NULL,
			since                timestamptz NOT NULL,
			next_probe           timestamptz,
			last_error           text NOT NULL DEFAULT '',
			reported_at          timestamptz NOT NULL
		)`,
	}
}
