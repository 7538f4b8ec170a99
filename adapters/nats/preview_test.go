package nats

import (
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestPreview(t *testing.T) {
	t.Parallel()
	ev := &domain.Event{ID: "e1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "o.1 *"}
	cases := []struct {
		subject, want string
		problem       bool
	}{
		{"orders.{{ event.entity_id }}", "orders.o_1__", false},
		{"orders.{{ nope }}", "orders.", true},
		{"orders.*", "orders.*", true},
		{"orders." + strings.Repeat("x", maxSubjectBytes), "orders." + strings.Repeat("x", maxSubjectBytes), true},
	}
	for _, c := range cases {
		act := &domain.Action{Type: domain.ActionNATS, NATS: &domain.NATSAction{Subject: domain.MustCompileTemplate(c.subject)}}
		p := Previewer.Preview(ev, nil, act)
		pub, ok := p.Details.(PublishPreview)
		if !ok || pub.Subject != c.want || (p.Problem != "") != c.problem || p.Lines[0] != "publish the event on "+c.want {
			t.Errorf("%s: preview = %+v", c.subject, p)
		}
	}
}
