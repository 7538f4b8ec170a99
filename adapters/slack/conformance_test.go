package slack_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/httpguard"
	"github.com/fraiseql/fraiseql-observer/adapters/slack"
	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// hookSecret is the last part of an incoming-webhook path: the credential.
const hookSecret = "XoXoSeCrEt24chars0000000"

func TestExecutorConformance(t *testing.T) {
	t.Parallel()
	// target posts to a receiver of its own at /<mode>/services/T/B/secret
	// (see testsupport.Receiver for the answers by path).
	target := func(t *testing.T, mode string) (porttest.ActionTarget, *testsupport.Receiver) {
		t.Helper()
		recv := testsupport.StartReceiver(t)
		act := &domain.Action{Name: "slack-1", Type: domain.ActionSlack, Slack: &domain.SlackAction{
			WebhookURL:      recv.URL + mode + "/services/T0001/B0001/" + hookSecret,
			MessageTemplate: domain.MustCompileTemplate("event {{ event.id }}"),
		}}
		return porttest.ActionTarget{Executor: newExecutor(t), Action: act}, recv
	}
	status := func(code string) func(t *testing.T) porttest.ActionTarget {
		return func(t *testing.T) porttest.ActionTarget {
			tg, _ := target(t, "/status/"+code)
			return tg
		}
	}
	porttest.RunActionExecutor(t, porttest.ActionHarness{
		Features: porttest.ActionFeatures{TransientFailures: true, PermanentFailures: true, Blocks: true},
		Success: func(t *testing.T) porttest.ActionTarget {
			tg, recv := target(t, "/ok")
			tg.Took = func(_ context.Context, ev *domain.Event) (bool, error) {
				for _, r := range recv.Requests() {
					var m map[string]string
					if json.Unmarshal(r.Body, &m) == nil && strings.Contains(m["text"], ev.ID) {
						return true, nil
					}
				}
				return false, nil
			}
			return tg
		},
		Transient: map[string]func(t *testing.T) porttest.ActionTarget{
			"429 rate limited": status("429"),
			"500":              status("500"),
		},
		Permanent: map[string]func(t *testing.T) porttest.ActionTarget{
			"404 no_service":        status("404"),
			"400 invalid_payload":   status("400"),
			"403 action_prohibited": status("403"),
		},
		Blocking: func(t *testing.T) porttest.ActionTarget {
			tg, recv := target(t, "/hang")
			tg.Reached = porttest.ReachedWhen(recv.Hung())
			return tg
		},
		Secrets: []string{hookSecret},
	})
}

// newExecutor posts through a webhook executor that may reach loopback.
func newExecutor(t *testing.T) *slack.Executor {
	t.Helper()
	policy, err := httpguard.ParsePolicy(false, []string{"127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	wh, err := webhook.NewExecutor(webhook.Config{Policy: policy}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wh.Close)
	return slack.NewExecutor(wh, logger)
}
