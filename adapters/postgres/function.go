package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// DefaultFunctionTimeout bounds one database action call.
const DefaultFunctionTimeout = 30 * time.Second

// functionClientGrace is how long after the server's statement_timeout
// the client gives up on its own (a server that does not answer at all).
const functionClientGrace = 2 * time.Second

// FunctionCallerConfig tunes the database action.
type FunctionCallerConfig struct {
	// Timeout bounds one call (default 30s): the server cancels the
	// statement after it (statement_timeout, set for the call's own
	// transaction only) and the client gives up 2s later. A call that
	// times out is a transient failure.
	Timeout time.Duration
}

func (c FunctionCallerConfig) withDefaults() FunctionCallerConfig {
	c.Timeout = cmp.Or(c.Timeout, DefaultFunctionTimeout)
	return c
}

// Validate reports invalid settings, naming the key.
func (c FunctionCallerConfig) Validate() error {
	if c.Timeout < time.Millisecond {
		return fmt.Errorf("timeout: %s is below 1ms", c.Timeout)
	}
	return nil
}

// FunctionCaller runs `database` actions: `SELECT fn($1::jsonb)` with
// {"event": <the event envelope>, "params": <the action's params>}, each
// call bounded by a timeout. Safe for concurrent use.
type FunctionCaller struct {
	pool      *pgxpool.Pool
	timeout   time.Duration
	timeoutMS string // statement_timeout value
}

var _ ports.ActionExecutor = (*FunctionCaller)(nil)

// NewFunctionCaller calls functions in the database of pool with the
// default timeout (30s).
func NewFunctionCaller(pool *pgxpool.Pool) *FunctionCaller {
	f, _ := NewFunctionCallerConfig(pool, FunctionCallerConfig{}) // the defaults are valid
	return f
}

// NewFunctionCallerConfig calls functions in the database of pool as cfg
// says.
func NewFunctionCallerConfig(pool *pgxpool.Pool, cfg FunctionCallerConfig) (*FunctionCaller, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("postgres: new function caller: %w", err)
	}
	return &FunctionCaller{pool: pool, timeout: cfg.Timeout, timeoutMS: strconv.FormatInt(cfg.Timeout.Milliseconds(), 10)}, nil
}

// ParseFunctionName checks a function name, optionally schema-qualified
// ("notify_shipping" or "app.notify_shipping"), with
// domain.SplitFunctionName and returns it quoted for SQL, folded to lower
// case as PostgreSQL folds a name written without quotes: the name a
// `CREATE FUNCTION NotifyShipping(...)` stores is notifyshipping.
func ParseFunctionName(name string) (string, error) {
	parts, err := domain.SplitFunctionName(name)
	if err != nil {
		return "", err
	}
	for i, p := range parts {
		parts[i] = strings.ToLower(p) // identifiers are ASCII (SplitFunctionName)
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
	// One round trip: the batch runs as one implicit transaction, so the
	// statement_timeout set for it (set_config's is_local) ends with it.
	timeout, timeoutMS := f.timeout, f.timeoutMS
	if t := act.Database.Timeout; t > 0 {
		timeout, timeoutMS = t, strconv.FormatInt(t.Milliseconds(), 10)
	}
	callCtx, cancel := context.WithTimeout(ctx, timeout+functionClientGrace)
	defer cancel()
	batch := &pgx.Batch{}
	batch.Queue(`SELECT set_config('statement_timeout', $1, true)`, timeoutMS)
	batch.Queue(`SELECT `+fn+`($1::jsonb)`, string(arg))
	if err := f.pool.SendBatch(callCtx, batch).Close(); err != nil {
		werr := interpretError("call "+fn, err)
		if isStatementTimeout(err) || callCtx.Err() != nil {
			return domain.Transient(fmt.Errorf("%w (timeout %s)", werr, timeout), 0)
		}
		if errors.Is(werr, ports.ErrUnavailable) || retryableSQL(err) {
			return domain.Transient(werr, 0)
		}
		return domain.Permanent(werr)
	}
	return nil
}

// isStatementTimeout reports a statement cancelled by statement_timeout
// (or any other cancel request: 57014).
func isStatementTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57014"
}

// retryableSQL reports errors that a later attempt can get past.
func retryableSQL(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true // not an answer from the server: the call may not have run
	}
	switch pgErr.Code {
	case "40001", "40P01", "40003", "55P03", "57014": // serialization, deadlock, completion unknown, lock not available, canceled
		return true
	case "57P01", "57P02", "57P03": // the server shutting down, crashed, or starting: a restart or a failover
		return true
	case "25006": // read-only transaction: a connection that landed on a standby (after a failover)
		return true
	case "0A000":
		// "cached plan must not change result type": the function was
		// replaced with another return type; pgx drops the statement
		// cache after it, so the next attempt runs. Other 0A000s (a
		// feature not supported) stay permanent.
		return strings.Contains(pgErr.Message, "cached plan")
	}
	// 08: connection exceptions; 53: insufficient resources (disk full,
	// out of memory, too many connections); 58: system and I/O errors.
	return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "53") || strings.HasPrefix(pgErr.Code, "58")
}
