package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// parkedRetries counts the retries parked in s (nil when it keeps none,
// or its database predates the retry store).
func parkedRetries(ctx context.Context, s *Store) (*ports.RetryCounts, error) {
	if s.Retries == nil {
		return nil, nil
	}
	c, err := s.Retries.Counts(ctx)
	switch {
	case errors.Is(err, ports.ErrNotMigrated):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("count parked retries: %w", err)
	}
	return &c, nil
}

// endpointStates lists the circuit states reported to s (nil when it
// keeps none, or its database predates them).
func endpointStates(ctx context.Context, s *Store) ([]ports.EndpointState, error) {
	if s.Endpoints == nil {
		return nil, nil
	}
	states, err := s.Endpoints.List(ctx)
	switch {
	case errors.Is(err, ports.ErrNotMigrated):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("list endpoint states: %w", err)
	}
	return states, nil
}

// EndpointView is an endpoint's health as the admin API shows it: the
// circuit, limits and counts of this process (absent for an endpoint this
// process has not called) and the parked retries waiting for it.
type EndpointView struct {
	Endpoint string                      `json:"endpoint"`
	Parked   int64                       `json:"parked"`
	Live     *application.EndpointStatus `json:"live,omitempty"`
}

// Endpoints reports endpoint health.
type Endpoints struct {
	// Live is this process's endpoint guard (nil: it runs no actions).
	Live func() []application.EndpointStatus
	// Retries counts the parked retries (nil: none are kept).
	Retries ports.RetryCounter
}

// List returns every endpoint this process called or that has parked
// retries, in name order.
func (e *Endpoints) List(ctx context.Context) ([]EndpointView, error) {
	byName := map[string]*EndpointView{}
	view := func(name string) *EndpointView {
		v, ok := byName[name]
		if !ok {
			v = &EndpointView{Endpoint: name}
			byName[name] = v
		}
		return v
	}
	if e.Live != nil {
		for _, st := range e.Live() {
			view(st.Endpoint).Live = &st
		}
	}
	if e.Retries != nil {
		c, err := e.Retries.Counts(ctx)
		if err != nil && !errors.Is(err, ports.ErrNotMigrated) {
			return nil, fmt.Errorf("count parked retries: %w", err)
		}
		for name, n := range c.ByEndpoint {
			view(name).Parked = n
		}
	}
	out := make([]EndpointView, 0, len(byName))
	for _, v := range byName {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b EndpointView) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
	return out, nil
}
