package ports

import "github.com/fraiseql/fraiseql-observer/domain"

// ActionPreview is what an action would do with an event, described
// without doing it (the dry run, `fraiseql-observer debug-event`).
type ActionPreview struct {
	// Missing lists the template placeholders the event has no value for.
	Missing []string
	// Problem says why the action would fail without sending anything; ""
	// when it would run.
	Problem string
	// Details describes the request, message or call as a JSON-able value.
	Details any
	// Lines render Details as text, one line each, unindented.
	Lines []string
}

// ActionPreviewer describes what an action executor would do.
//
// Preview renders act of obs for ev exactly as the executor would run it,
// without network or database I/O and without side effects. It never
// includes a secret: signing secrets, credential headers, URL passwords
// and query values, Slack webhook paths. A previewer is built without
// connecting to anything. Safe for concurrent use.
type ActionPreviewer interface {
	Preview(ev *domain.Event, obs *domain.Observer, act *domain.Action) ActionPreview
}

// ActionPreviewerFunc adapts a function to ActionPreviewer.
type ActionPreviewerFunc func(ev *domain.Event, obs *domain.Observer, act *domain.Action) ActionPreview

// Preview calls f.
func (f ActionPreviewerFunc) Preview(ev *domain.Event, obs *domain.Observer, act *domain.Action) ActionPreview {
	return f(ev, obs, act)
}
