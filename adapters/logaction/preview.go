package logaction

import (
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// RecordPreview is the record a log action would write.
type RecordPreview struct {
	Level   string `json:"level"`
	Message string `json:"message"`
}

// Previewer describes log actions for the dry run.
var Previewer ports.ActionPreviewer = ports.ActionPreviewerFunc(Preview)

// Preview renders the record act would log for ev, without logging it.
func Preview(ev *domain.Event, _ *domain.Observer, act *domain.Action) ports.ActionPreview {
	if act.Log == nil {
		return ports.ActionPreview{Problem: "the log action has no configuration"}
	}
	var p ports.ActionPreview
	rec := RecordPreview{Level: act.Log.Level, Message: DefaultMessage}
	if act.Log.MessageTemplate != nil {
		rec.Message, p.Missing = act.Log.MessageTemplate.Render(ev, domain.EscapeNone)
	}
	if _, err := parseLevel(rec.Level); err != nil {
		p.Problem = err.Error()
	}
	p.Details = rec
	p.Lines = []string{"log at " + rec.Level + ": " + rec.Message}
	return p
}
