package admin_test

import (
	"context"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// In multi-database, [database] may be one of the sources: an event is
// looked for in the sources first, where it carries its source's name (as
// its bridge publishes it). Before, the primary store came first, and the
// event ran with no source (a condition on event.source false, a nats
// action's subject changed).
func TestResendFindsTheEventInASourceFirst(t *testing.T) {
	t.Parallel()
	newLog := func(source string) *memory.Source {
		src, err := memory.NewSource(nil, memory.SourceConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Append(t.Context(), domain.Event{ID: "ev-1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "1", Source: source}); err != nil {
			t.Fatal(err)
		}
		return src
	}
	var sources []string
	exec := func(_ context.Context, ev *domain.Event, _ *domain.Observer, _ *domain.Action) error {
		sources = append(sources, ev.Source)
		return nil
	}
	m := domain.NewMatcher([]domain.Observer{{Name: "hooks", Entity: "Order", Events: []domain.EventType{domain.EventInsert},
		Retry: domain.DefaultRetryPolicy, Actions: []domain.Action{{Name: "log", Type: domain.ActionLog}}}})
	r := &admin.Resend{
		Stores: admin.Stores{
			Primary: &admin.Store{Name: "database", ChangeLog: newLog("")},
			Sources: func(context.Context) ([]*admin.Store, error) {
				return []*admin.Store{{Name: "databases.alpha", ChangeLog: newLog("alpha")}}, nil
			},
		},
		Resender: func(context.Context) (*application.Resender, error) {
			return &application.Resender{Executor: ports.ActionExecutorFunc(exec), Matcher: func() *domain.Matcher { return m }}, nil
		},
	}
	rep, err := r.Resend(t.Context(), admin.ResendRequest{EventID: "ev-1"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Store != "databases.alpha" || len(sources) != 1 || sources[0] != "alpha" {
		t.Errorf("resend found the event in %q and ran it with sources %q, want databases.alpha and alpha", rep.Store, sources)
	}
}
