package admin_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestDryRun(t *testing.T) {
	t.Parallel()
	cond, err := domain.CompileCondition("status == 'shipped' && total > 100")
	if err != nil {
		t.Fatal(err)
	}
	observers := []domain.Observer{
		{Name: "shipped", Entity: "Order", Events: []domain.EventType{domain.EventUpdate}, Condition: cond, Actions: []domain.Action{
			{Name: "hook", Type: domain.ActionWebhook}, {Name: "mail", Type: domain.ActionEmail},
		}},
		{Name: "created", Entity: "Order", Events: []domain.EventType{domain.EventInsert}, Actions: []domain.Action{{Name: "l", Type: domain.ActionLog}}},
		{Name: "users", Entity: "User", Events: []domain.EventType{domain.EventUpdate}, Actions: []domain.Action{{Name: "l", Type: domain.ActionLog}}},
	}
	type details struct {
		Target string `json:"target"`
	}
	var seen []string
	dry := admin.DryRun{Previewers: map[domain.ActionType]ports.ActionPreviewer{
		domain.ActionWebhook: ports.ActionPreviewerFunc(func(ev *domain.Event, obs *domain.Observer, act *domain.Action) ports.ActionPreview {
			seen = append(seen, obs.Name+"/"+act.Name+"@"+ev.EntityID)
			return ports.ActionPreview{Missing: []string{"gift"}, Problem: "would fail", Details: details{Target: "x"}, Lines: []string{"send to x"}}
		}),
	}}
	ev := domain.Event{ID: "e1", EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o-42",
		Data: map[string]any{"status": "shipped", "total": json.Number("250")}}
	rep := dry.Run(ev, true, observers)

	if !rep.ChangesComputed || len(rep.Matched) != 1 || len(rep.NotMatched) != 2 {
		t.Fatalf("report = %+v", rep)
	}
	m := rep.Matched[0]
	if m.Name != "shipped" || !m.Result || m.Condition != "status == 'shipped' && total > 100" || len(m.Trace) == 0 {
		t.Errorf("matched = %+v", m)
	}
	if len(seen) != 1 || seen[0] != "shipped/hook@o-42" {
		t.Errorf("previewer calls = %v, want one for shipped/hook", seen)
	}
	hook, mail := m.Actions[0], m.Actions[1]
	if hook.Details != (details{Target: "x"}) || hook.Problem != "would fail" || len(hook.Missing) != 1 || hook.Lines[0] != "send to x" {
		t.Errorf("previewed action = %+v", hook)
	}
	if mail.Details != nil || mail.Lines != nil || mail.Type != "email" {
		t.Errorf("action without a previewer = %+v, want no details", mail)
	}
	reasons := map[string]string{}
	for _, s := range rep.NotMatched {
		reasons[s.Name] = s.Reason
	}
	if reasons["created"] != "handles INSERT events, not UPDATE" || reasons["users"] != "entity User, not Order" {
		t.Errorf("not matched = %v", reasons)
	}

	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`{"name":"hook","type":"webhook","missing_placeholders":["gift"],"problem":"would fail","webhook":{"target":"x"}}`,
		`{"name":"mail","type":"email"}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	var back admin.DebugReport
	if err := json.Unmarshal(b, &back); err != nil || len(back.Matched) != 1 || back.Matched[0].Actions[0].Problem != "would fail" {
		t.Errorf("JSON does not decode back: %v %+v", err, back)
	}
}

func TestDecodeEventWithoutID(t *testing.T) {
	t.Parallel()
	ev, _, err := admin.DecodeEvent([]byte(`{"event_type":"INSERT","entity_type":"Order","entity_id":"o1","data":{"total":100.10}}`))
	if err != nil {
		t.Fatalf("an event without id: %v", err)
	}
	if ev.ID != admin.DryRunEventID {
		t.Errorf("id = %q, want the placeholder", ev.ID)
	}
	if got := ev.Data["total"]; fmt.Sprint(got) != "100.10" {
		t.Errorf("total = %v, want 100.10 exactly as written", got)
	}
	if _, _, err := admin.DecodeEvent([]byte(`{"event_type":"INSERT","entity_type":"Order"} trailing`)); err == nil {
		t.Error("trailing data accepted")
	}
}
