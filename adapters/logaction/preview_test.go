package logaction_test

import (
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/logaction"
	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestPreview(t *testing.T) {
	t.Parallel()
	ev := &domain.Event{ID: "e1", EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o-42", Data: map[string]any{"status": "shipped"}}
	act := &domain.Action{Type: domain.ActionLog, Log: &domain.LogAction{Level: "warn",
		MessageTemplate: domain.MustCompileTemplate("order {{ event.entity_id }} is {{ status }} ({{ nope }})")}}
	p := logaction.Previewer.Preview(ev, nil, act)
	if rec, ok := p.Details.(logaction.RecordPreview); !ok || rec.Level != "warn" || rec.Message != "order o-42 is shipped ()" {
		t.Errorf("details = %+v", p.Details)
	}
	if len(p.Lines) != 1 || p.Lines[0] != "log at warn: order o-42 is shipped ()" || len(p.Missing) != 1 || p.Problem != "" {
		t.Errorf("preview = %+v", p)
	}
	act.Log = &domain.LogAction{Level: "info"}
	if rec := logaction.Preview(ev, nil, act).Details.(logaction.RecordPreview); rec.Message != logaction.DefaultMessage {
		t.Errorf("default message = %q", rec.Message)
	}
}
