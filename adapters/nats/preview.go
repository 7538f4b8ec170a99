package nats

import (
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// PublishPreview is where a nats action would publish the event.
type PublishPreview struct {
	Subject string `json:"subject"`
}

// Previewer describes nats actions for the dry run, without a connection.
var Previewer ports.ActionPreviewer = ports.ActionPreviewerFunc(Preview)

// Preview renders the subject act would publish ev on, without publishing.
func Preview(ev *domain.Event, _ *domain.Observer, act *domain.Action) ports.ActionPreview {
	if act.NATS == nil || act.NATS.Subject == nil {
		return ports.ActionPreview{Problem: "the nats action has no subject"}
	}
	var p ports.ActionPreview
	pub := PublishPreview{}
	pub.Subject, p.Missing = act.NATS.Subject.Render(ev, domain.EscapeSubjectToken)
	if len(p.Missing) > 0 || domain.ValidSubject(pub.Subject) != nil {
		p.Problem = "the subject is not publishable: the action fails permanently"
	}
	p.Details = pub
	p.Lines = []string{"publish the event on " + pub.Subject}
	return p
}
