package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// EndpointStates keeps the last reported circuit state per endpoint in the
// observer schema's endpoint_states table. Safe for concurrent use.
type EndpointStates struct {
	pool  *pgxpool.Pool
	table string
}

var _ ports.EndpointStates = (*EndpointStates)(nil)

// NewEndpointStates returns a store on schema's endpoint_states table
// (schema "" means "observer"); Migrate creates it.
func NewEndpointStates(pool *pgxpool.Pool, schema string) (*EndpointStates, error) {
	table, err := stateTable(pool, schema, "endpoint_states")
	if err != nil {
		return nil, fmt.Errorf("postgres: new endpoint states: %w", err)
	}
	return &EndpointStates{pool: pool, table: table}, nil
}

// Report stores s for its endpoint, replacing the row.
func (e *EndpointStates) Report(ctx context.Context, s ports.EndpointState) error {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	_, err := e.pool.Exec(ctx, `INSERT INTO `+e.table+`
		(endpoint, holder, state, consecutive_failures, since, next_probe, last_error, reported_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (endpoint) DO UPDATE SET holder = excluded.holder, state = excluded.state,
			consecutive_failures = excluded.consecutive_failures, since = excluded.since,
			next_probe = excluded.next_probe, last_error = excluded.last_error, reported_at = excluded.reported_at`,
		s.Endpoint, s.Holder, s.State, s.ConsecutiveFailures, s.Since, s.NextProbe, storableText(s.LastError), s.ReportedAt)
	return interpretError("report endpoint "+s.Endpoint, err)
}

// List returns every stored state in endpoint order.
func (e *EndpointStates) List(ctx context.Context) ([]ports.EndpointState, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	const op = "list endpoints"
	rows, err := e.pool.Query(ctx, `SELECT endpoint, holder, state, consecutive_failures, since, next_probe, last_error, reported_at
		FROM `+e.table+` ORDER BY endpoint`)
	if err != nil {
		return nil, interpretError(op, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ports.EndpointState, error) {
		var s ports.EndpointState
		return s, row.Scan(&s.Endpoint, &s.Holder, &s.State, &s.ConsecutiveFailures, &s.Since, &s.NextProbe, &s.LastError, &s.ReportedAt)
	})
	if err != nil {
		return nil, interpretError(op, err)
	}
	return out, nil
}
