package slack_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/fraiseql/fraiseql-observer/domain"
)

func TestSlackPostsTheRenderedMessage(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []map[string]string
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("body %q is not JSON: %v", b, err)
		}
		mu.Lock()
		got = append(got, m)
		code := status
		mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	ex := newExecutor(t)
	ev := &domain.Event{ID: "e1", EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o1",
		Data: map[string]any{"status": `shipped "fast"`}}
	obs := &domain.Observer{Name: "o"}
	act := &domain.Action{Name: "slack-1", Type: domain.ActionSlack, Slack: &domain.SlackAction{
		WebhookURL: srv.URL + "/services/T/B/x", Channel: "#orders",
		MessageTemplate: domain.MustCompileTemplate("Order {{ event.entity_id }} is {{ status }}"),
	}}
	if err := ex.Execute(t.Context(), ev, obs, act); err != nil {
		t.Fatal(err)
	}
	act.Slack.MessageTemplate = nil
	act.Slack.Channel = ""
	if err := ex.Execute(t.Context(), ev, obs, act); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(got) != 2 || got[0]["text"] != `Order o1 is shipped "fast"` || got[0]["channel"] != "#orders" {
		t.Errorf("first message = %v", got)
	}
	if got[1]["text"] != "UPDATE Order o1" || got[1]["channel"] != "" {
		t.Errorf("default message = %v", got[1])
	}
	status = http.StatusNotFound // Slack's "no_service": permanent
	mu.Unlock()
	if err := ex.Execute(t.Context(), ev, obs, act); err == nil || !domain.IsPermanent(err) {
		t.Errorf("404: err = %v, want permanent", err)
	}
	mu.Lock()
	status = http.StatusTooManyRequests
	mu.Unlock()
	if err := ex.Execute(t.Context(), ev, obs, act); err == nil || domain.IsPermanent(err) {
		t.Errorf("429: err = %v, want transient", err)
	}
}
