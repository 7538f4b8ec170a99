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
// themselves and must return when ctx ends. Safe for concurrent use.
type ActionExecutor interface {
	Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error
}

// ActionExecutorFunc adapts a function to ActionExecutor.
type ActionExecutorFunc func(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error

// Execute calls f.
func (f ActionExecutorFunc) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	return f(ctx, ev, obs, act)
}
