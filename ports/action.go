package ports

import (
	"context"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// ActionExecutor runs one action of one observer for one event.
//
// Execute returns nil on success. A failure that retrying cannot fix is
// returned as domain.Permanent(err); any other error is transient and may
// carry domain.Transient(err, retryAfter). Executors do not retry
// themselves and return promptly when ctx ends, with an error that is not
// permanent. An error's text never carries a secret: a target appears as
// scheme, host and port at most, never with its path, query, user
// information, header values, signing secret or password. Safe for
// concurrent use. porttest.RunActionExecutor checks this contract.
type ActionExecutor interface {
	Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error
}

// ActionExecutorFunc adapts a function to ActionExecutor.
type ActionExecutorFunc func(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error

// Execute calls f.
func (f ActionExecutorFunc) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	return f(ctx, ev, obs, act)
}
