package slack_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/slack"
	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestPreview(t *testing.T) {
	t.Parallel()
	ev := &domain.Event{ID: "e1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "o-1"}
	act := &domain.Action{Name: "s", Type: domain.ActionSlack, Slack: &domain.SlackAction{
		WebhookURL: "https://hooks.slack.com/services/T000/B000/secret-path", Channel: "#ops"}}
	p := slack.Previewer.Preview(ev, &domain.Observer{Name: "o"}, act)
	msg, ok := p.Details.(slack.MessagePreview)
	if !ok || msg.Host != "hooks.slack.com" || msg.Channel != "#ops" || msg.Text != "INSERT Order o-1" {
		t.Fatalf("details = %+v", p.Details)
	}
	if len(p.Lines) != 1 || p.Lines[0] != "post to Slack (hooks.slack.com) #ops: INSERT Order o-1" {
		t.Errorf("lines = %q", p.Lines)
	}
	if strings.Contains(fmt.Sprint(p), "secret-path") {
		t.Errorf("preview shows the webhook path: %+v", p)
	}
	act.Slack.MessageTemplate = domain.MustCompileTemplate("{{ nope }}")
	if p := slack.Preview(ev, nil, act); len(p.Missing) != 1 || p.Missing[0] != "nope" {
		t.Errorf("missing = %v", p.Missing)
	}
}
