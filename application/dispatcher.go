package application

import (
	"context"
	"fmt"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// Dispatcher routes each action to the executor registered for its type.
// It implements ports.ActionExecutor.
type Dispatcher struct {
	executors map[domain.ActionType]ports.ActionExecutor
}

var _ ports.ActionExecutor = (*Dispatcher)(nil)

// NewDispatcher copies the executor table.
func NewDispatcher(executors map[domain.ActionType]ports.ActionExecutor) *Dispatcher {
	m := make(map[domain.ActionType]ports.ActionExecutor, len(executors))
	for k, v := range executors {
		m[k] = v
	}
	return &Dispatcher{executors: m}
}

// Supports reports whether an executor is registered for t.
func (d *Dispatcher) Supports(t domain.ActionType) bool { _, ok := d.executors[t]; return ok }

// Execute runs act with the executor for its type. An action type without
// an executor is a permanent failure.
func (d *Dispatcher) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	ex, ok := d.executors[act.Type]
	if !ok {
		return domain.Permanent(fmt.Errorf("no executor for action type %q in this topology", act.Type))
	}
	return ex.Execute(ctx, ev, obs, act)
}
