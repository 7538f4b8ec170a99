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

var (
	_ ports.ActionExecutor = (*Dispatcher)(nil)
	_ ports.BatchExecutor  = (*Dispatcher)(nil)
)

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

// Execute runs act with the executor for its type; under a Batcher's
// batch (its context), it sends the batch instead. An action type without
// an executor is a permanent failure.
func (d *Dispatcher) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	if b := batchOf(ctx); b != nil {
		return d.ExecuteBatch(ctx, *b)
	}
	ex, ok := d.executors[act.Type]
	if !ok {
		return domain.Permanent(fmt.Errorf("no executor for action type %q in this topology", act.Type))
	}
	return ex.Execute(ctx, ev, obs, act)
}

// batcher returns the BatchExecutor of t.
func (d *Dispatcher) batcher(t domain.ActionType) (ports.BatchExecutor, error) {
	ex, ok := d.executors[t]
	if !ok {
		return nil, domain.Permanent(fmt.Errorf("no executor for action type %q in this topology", t))
	}
	bx, ok := ex.(ports.BatchExecutor)
	if !ok {
		return nil, domain.Permanent(fmt.Errorf("action type %q cannot deliver batches", t))
	}
	return bx, nil
}

// BatchBody renders ev's batch entry with the executor of act's type.
func (d *Dispatcher) BatchBody(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) ([]byte, error) {
	bx, err := d.batcher(act.Type)
	if err != nil {
		return nil, err
	}
	return bx.BatchBody(ctx, ev, obs, act)
}

// ExecuteBatch sends b with the executor of its action's type.
func (d *Dispatcher) ExecuteBatch(ctx context.Context, b ports.ActionBatch) error {
	bx, err := d.batcher(b.Action.Type)
	if err != nil {
		return err
	}
	return bx.ExecuteBatch(ctx, b)
}
