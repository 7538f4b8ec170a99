// Package slack implements the slack action: a message posted to a Slack
// incoming webhook, over the webhook adapter's guarded HTTP client and
// status policy.
package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// DefaultMessage is sent when an action has no message_template.
const DefaultMessage = "{{ event.event_type }} {{ event.entity_type }} {{ event.entity_id }}"

var defaultTemplate = domain.MustCompileTemplate(DefaultMessage)

// Timeout bounds one post.
const Timeout = 10 * time.Second

// Executor posts slack actions. Safe for concurrent use.
type Executor struct {
	http   *webhook.Executor
	logger *slog.Logger
	// missingNotes limits the missing-placeholder warnings (one a minute
	// per action).
	missingNotes ports.NoteLimiter
}

var _ ports.ActionExecutor = (*Executor)(nil)

// NewExecutor posts through httpExec (its SSRF policy and status policy:
// 2xx ok; 408, 425, 429 with Retry-After and 5xx retried; other statuses
// permanent).
func NewExecutor(httpExec *webhook.Executor, logger *slog.Logger) *Executor {
	return &Executor{http: httpExec, logger: logger}
}

// message is the incoming-webhook payload.
type message struct {
	Text    string `json:"text"`
	Channel string `json:"channel,omitempty"`
}

// Execute renders the message and posts it.
func (e *Executor) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	if act.Slack == nil || act.Slack.WebhookURL == "" {
		return domain.Permanent(errors.New("slack: action without webhook_url"))
	}
	tmpl := act.Slack.MessageTemplate
	if tmpl == nil {
		tmpl = defaultTemplate
	}
	text, missing := tmpl.Render(ev, domain.EscapeSlack) // event data cannot add Slack markup
	if len(missing) > 0 {
		e.missingNotes.MissingPlaceholders(ctx, e.logger, "slack message template has missing placeholders", ev, obs, act, missing)
	}
	body, err := json.Marshal(message{Text: text, Channel: act.Slack.Channel})
	if err != nil {
		return domain.Permanent(fmt.Errorf("slack: encode message: %w", err))
	}
	if err := e.http.Post(ctx, act.Slack.WebhookURL, body, Timeout); err != nil {
		return fmt.Errorf("slack: %w", err)
	}
	return nil
}
