package application_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestResender(t *testing.T) {
	t.Parallel()
	big := withCondition(t, observer("big", "Order", "b1", "b2"), "total > 100")
	all := observer("all", "Order", "a1")
	other := observer("parcels", "Parcel", "p1")
	m := domain.NewMatcher([]domain.Observer{big, all, other})
	exec, calls := recording(func(_ context.Context, _ *domain.Event, _ *domain.Observer, act *domain.Action) error {
		if act.Name == "b2" {
			return errors.New("status 500")
		}
		return nil
	})
	r := &application.Resender{Executor: exec, Matcher: func() *domain.Matcher { return m }}
	small := event("e1", "Order", "1", map[string]any{"total": 5})
	cases := []struct {
		name      string
		observer  string
		action    string
		wantRun   []string
		wantSkips int
		wantErr   error
	}{
		{"matching observers", "", "", []string{"all/a1"}, 2, nil},
		{"named observer, condition not asked", "big", "", []string{"big/b1", "big/b2"}, 0, nil},
		{"one action", "big", "b2", []string{"big/b2"}, 0, nil},
		{"unknown observer", "nope", "", nil, 0, application.ErrNoSuchTarget},
		{"observer of another entity", "parcels", "", nil, 0, application.ErrNoSuchTarget},
		{"unknown action", "", "zz", nil, 0, application.ErrNoSuchTarget},
	}
	for _, tc := range cases {
		before := calls.len()
		out, err := r.Resend(t.Context(), &small, tc.observer, tc.action)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.wantErr)
			continue
		}
		var ran []string
		skips := 0
		for _, o := range out {
			if o.Skipped != "" {
				skips++
				continue
			}
			ran = append(ran, o.Observer+"/"+o.Action)
			if want := o.Action != "b2"; o.Succeeded != want || (o.Error != "") == want {
				t.Errorf("%s: outcome %+v", tc.name, o)
			}
		}
		if len(ran) != len(tc.wantRun) || calls.len()-before != len(tc.wantRun) || skips != tc.wantSkips {
			t.Errorf("%s: ran %v (%d calls), %d skipped; want %v, %d skipped", tc.name, ran, calls.len()-before, skips, tc.wantRun, tc.wantSkips)
		}
		for i := range ran {
			if ran[i] != tc.wantRun[i] {
				t.Errorf("%s: ran %v, want %v", tc.name, ran, tc.wantRun)
				break
			}
		}
	}
}

// An action name that two observers of the event share, asked for without
// an observer, is refused naming both (it ran in both before: action
// names are unique within an observer only); with the observer, only
// that one runs.
func TestResendActionNameSharedByObservers(t *testing.T) {
	t.Parallel()
	m := domain.NewMatcher([]domain.Observer{observer("a", "Order", "notify"), observer("b", "Order", "notify", "other")})
	exec, calls := recording(func(context.Context, *domain.Event, *domain.Observer, *domain.Action) error { return nil })
	r := &application.Resender{Executor: exec, Matcher: func() *domain.Matcher { return m }}
	ev := event("e1", "Order", "1", nil)
	_, err := r.Resend(t.Context(), &ev, "", "notify")
	if !errors.Is(err, application.ErrNoSuchTarget) || !strings.Contains(err.Error(), "a, b") || calls.len() != 0 {
		t.Fatalf("ambiguous action: %v after %d calls, want ErrNoSuchTarget naming a and b, no call", err, calls.len())
	}
	out, err := r.Resend(t.Context(), &ev, "b", "notify")
	if err != nil || len(out) != 1 || out[0].Observer != "b" || calls.len() != 1 {
		t.Fatalf("with the observer: %+v, %v (%d calls), want b/notify only", out, err, calls.len())
	}
	if _, err := r.Resend(t.Context(), &ev, "", "other"); err != nil || calls.len() != 2 {
		t.Fatalf("a name one observer has: %v (%d calls)", err, calls.len())
	}
}
