package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// EndpointStates keeps the last reported circuit state per endpoint in
// memory. Safe for concurrent use.
type EndpointStates struct {
	mu     sync.Mutex
	states map[string]ports.EndpointState
}

var _ ports.EndpointStates = (*EndpointStates)(nil)

// NewEndpointStates returns an empty store.
func NewEndpointStates() *EndpointStates {
	return &EndpointStates{states: map[string]ports.EndpointState{}}
}

// Report stores s for its endpoint.
func (e *EndpointStates) Report(ctx context.Context, s ports.EndpointState) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: report endpoint %s: %w", s.Endpoint, err)
	}
	if s.NextProbe != nil {
		p := *s.NextProbe
		s.NextProbe = &p
	}
	e.mu.Lock()
	e.states[s.Endpoint] = s
	e.mu.Unlock()
	return nil
}

// List returns every stored state in endpoint order.
func (e *EndpointStates) List(ctx context.Context) ([]ports.EndpointState, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: list endpoints: %w", err)
	}
	e.mu.Lock()
	out := make([]ports.EndpointState, 0, len(e.states))
	for _, s := range e.states {
		out = append(out, s)
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b ports.EndpointState) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
	return out, nil
}
