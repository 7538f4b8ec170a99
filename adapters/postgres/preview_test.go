package postgres

import (
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestPreviewCall(t *testing.T) {
	t.Parallel()
	ev := &domain.Event{ID: "e1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "o-1"}
	act := &domain.Action{Type: domain.ActionDatabase, Database: &domain.DatabaseAction{FunctionName: "app.notify", Params: map[string]any{"queue": "q"}}}
	p := FunctionPreviewer.Preview(ev, nil, act)
	call, ok := p.Details.(CallPreview)
	if !ok || call.Function != `"app"."notify"` || !strings.Contains(call.Argument, `"entity_id":"o-1"`) || !strings.Contains(call.Argument, `"params":{"queue":"q"}`) {
		t.Fatalf("details = %+v", p.Details)
	}
	if p.Problem != "" || len(p.Lines) != 1 || !strings.HasPrefix(p.Lines[0], `SELECT "app"."notify"($1::jsonb) with $1 = {`) {
		t.Errorf("preview = %+v", p)
	}
	// A name written with capitals is called as PostgreSQL folds it.
	act.Database.FunctionName = "App.NotifyShipping"
	if p := PreviewCall(ev, nil, act); p.Details.(CallPreview).Function != `"app"."notifyshipping"` {
		t.Errorf("mixed-case name: preview %+v, want the folded, quoted name sent", p.Details)
	}
	act.Database.FunctionName = "fn; drop table x"
	if p := PreviewCall(ev, nil, act); !strings.Contains(p.Problem, "not an identifier") {
		t.Errorf("bad function name: problem %q", p.Problem)
	}
}
