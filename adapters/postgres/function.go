package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// FunctionCaller runs `database` actions: `SELECT fn($1::jsonb)` with
// {"event": <the event envelope>, "params": <the action's params>}.
// Safe for concurrent use.
type FunctionCaller struct {
	pool *pgxpool.Pool
}

var _ ports.ActionExecutor = (*FunctionCaller)(nil)

// NewFunctionCaller calls functions in the database of pool.
func NewFunctionCaller(pool *pgxpool.Pool) *FunctionCaller { return &FunctionCaller{pool: pool} }

// ParseFunctionName checks a function name, optionally schema-qualified
// ("notify_shipping" or "app.notify_shipping"), with
// domain.SplitFunctionName and returns it quoted for SQL.
func ParseFunctionName(name string) (string, error) {
	parts, err := domain.SplitFunctionName(name)
	if err != nil {
		return "", err
	}
	return pgx.Identifier(parts).Sanitize(), nil
}

// Execute calls the function. A function that raises, does not exist or
// rejects its argument fails permanently; lost connections, deadlocks and
// serialization failures are transient.
func (f *FunctionCaller) Execute(ctx context.Context, ev *domain.Event, _ *domain.Observer, act *domain.Action) error {
	if act.Database == nil {
		return domain.Permanent(errors.New("postgres: database action without config"))
	}
	fn, err := ParseFunctionName(act.Database.FunctionName)
	if err != nil {
		return domain.Permanent(fmt.Errorf("postgres: database action: %w", err))
	}
	arg, err := json.Marshal(struct {
		Event  domain.Event   `json:"event"`
		Params map[string]any `json:"params"`
	}{Event: *ev, Params: act.Database.Params})
	if err != nil {
		return domain.Permanent(fmt.Errorf("postgres: database action %s: encode argument: %w", fn, err))
	}
	if _, err := f.pool.Exec(ctx, `SELECT `+fn+`($1::jsonb)`, string(arg)); err != nil {
		werr := interpretError("call "+fn, err)
		if errors.Is(werr, ports.ErrUnavailable) || ctx.Err() != nil || retryableSQL(err) {
			return domain.Transient(werr, 0)
		}
		return domain.Permanent(werr)
	}
	return nil
}

// retryableSQL reports errors that a later attempt can get past.
func retryableSQL(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true // not an answer from the server: the call may not have run
	}
	switch pgErr.Code {
	case "40001", "40P01", "55P03", "57014", "53300": // serialization, deadlock, lock not available, canceled, too many connections
		return true
	}
	return strings.HasPrefix(pgErr.Code, "08")
}
