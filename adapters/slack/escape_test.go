package slack_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/httpguard"
	"github.com/fraiseql/fraiseql-observer/adapters/slack"
	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
)

// TestSlackEscapesEventMarkup: values from the event cannot mention
// everyone or disguise a link; the template's own markup stays.
func TestSlackEscapesEventMarkup(t *testing.T) {
	t.Parallel()
	texts := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("body %q is not JSON: %v", b, err)
		}
		texts <- m["text"]
	}))
	t.Cleanup(srv.Close)
	policy, err := httpguard.ParsePolicy(false, []string{"127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	wh, err := webhook.NewExecutor(webhook.Config{Policy: policy}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ex := slack.NewExecutor(wh, logger)

	tests := []struct {
		name, tmpl string
		data       map[string]any
		want       string
	}{
		{
			name: "mention and disguised link in data",
			tmpl: "<!here> order {{ note }} <https://shop.example/orders|open>",
			data: map[string]any{"note": "<!channel> <http://evil.example|click> & more"},
			want: "<!here> order &lt;!channel&gt; &lt;http://evil.example|click&gt; &amp; more <https://shop.example/orders|open>",
		},
		{
			name: "entity id in the default message",
			data: map[string]any{},
			want: "INSERT Order &lt;@U123&gt;",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: one receiver channel.
			act := &domain.Action{Name: "s", Type: domain.ActionSlack, Slack: &domain.SlackAction{WebhookURL: srv.URL + "/services/T/B/x"}}
			if tt.tmpl != "" {
				act.Slack.MessageTemplate = domain.MustCompileTemplate(tt.tmpl)
			}
			ev := &domain.Event{ID: "e1", EventType: domain.EventInsert, EntityType: "Order", EntityID: "<@U123>", Data: tt.data}
			if err := ex.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, act); err != nil {
				t.Fatal(err)
			}
			if got := <-texts; got != tt.want {
				t.Errorf("text = %q, want %q", got, tt.want)
			}
		})
	}
}
