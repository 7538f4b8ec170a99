package slack

import (
	"net/url"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// MessagePreview is the message a slack action would post. Only the
// webhook URL's host is shown: its path is the secret.
type MessagePreview struct {
	Host    string `json:"host"`
	Channel string `json:"channel,omitempty"`
	Text    string `json:"text"`
}

// Previewer describes slack actions for the dry run.
var Previewer ports.ActionPreviewer = ports.ActionPreviewerFunc(Preview)

// Preview renders the message act would post for ev, without posting it.
func Preview(ev *domain.Event, _ *domain.Observer, act *domain.Action) ports.ActionPreview {
	sl := act.Slack
	if sl == nil {
		return ports.ActionPreview{Problem: "the slack action has no configuration"}
	}
	tmpl := sl.MessageTemplate
	if tmpl == nil {
		tmpl = defaultTemplate
	}
	var p ports.ActionPreview
	msg := MessagePreview{Host: "(unparsable url)", Channel: sl.Channel}
	msg.Text, p.Missing = tmpl.Render(ev, domain.EscapeSlack)
	if u, err := url.Parse(sl.WebhookURL); err == nil {
		msg.Host = u.Host
	}
	p.Details = msg
	p.Lines = []string{"post to Slack (" + msg.Host + ") " + msg.Channel + ": " + msg.Text}
	return p
}
