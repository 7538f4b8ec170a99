package application_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestDispatcher(t *testing.T) {
	t.Parallel()
	errWebhook := errors.New("webhook down")
	var routed []domain.ActionType
	route := func(answer error) ports.ActionExecutorFunc {
		return func(_ context.Context, _ *domain.Event, _ *domain.Observer, act *domain.Action) error {
			routed = append(routed, act.Type)
			return answer
		}
	}
	table := map[domain.ActionType]ports.ActionExecutor{
		domain.ActionWebhook: route(errWebhook),
		domain.ActionLog:     route(nil),
	}
	d := application.NewDispatcher(table)
	table[domain.ActionSlack] = route(nil) // the dispatcher keeps its own copy

	tests := []struct {
		name          string
		typ           domain.ActionType
		wantRouted    bool
		wantErr       error // nil: success
		wantPermanent bool
	}{
		{name: "log executor", typ: domain.ActionLog, wantRouted: true},
		{name: "webhook executor's error passes through", typ: domain.ActionWebhook, wantRouted: true, wantErr: errWebhook},
		{name: "type added to the table afterwards", typ: domain.ActionSlack, wantErr: domain.ErrPermanent, wantPermanent: true},
		{name: "unknown type", typ: domain.ActionType("fax"), wantErr: domain.ErrPermanent, wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the executors share routed.
			routed = nil
			ev := event("e1", "order", "o1", nil)
			obs := observer("obs", "order", "act")
			act := domain.Action{Name: "act", Type: tt.typ}
			err := d.Execute(t.Context(), &ev, &obs, &act)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("Execute = %v, want %v", err, tt.wantErr)
			}
			if domain.IsPermanent(err) != tt.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, domain.IsPermanent(err), tt.wantPermanent)
			}
			if got := len(routed) == 1 && routed[0] == tt.typ; got != tt.wantRouted {
				t.Errorf("routed to %v, want routed=%v", routed, tt.wantRouted)
			}
			if d.Supports(tt.typ) != tt.wantRouted {
				t.Errorf("Supports(%s) = %v, want %v", tt.typ, d.Supports(tt.typ), tt.wantRouted)
			}
		})
	}
}
