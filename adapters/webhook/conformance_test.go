package webhook_test

import (
	"context"
	"encoding/base64"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/httpguard"
	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// Secrets planted in every webhook target of the conformance suite: none
// may appear in an error's text.
const (
	pathSecret   = "PATHSECRET-4f1c"
	querySecret  = "QUERYSECRET-9a2e"
	headerSecret = "HEADERSECRET-7d3b"
	envSecret    = "ENVHEADERSECRET-2c6a" // a headers_env value
)

var signingSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("SIGNINGKEY-5e8f-24-bytes-long"))

func TestExecutorConformance(t *testing.T) {
	t.Parallel()
	// target aims a webhook at path on a receiver of its own (see
	// testsupport.Receiver for the answers by path), with a secret in the
	// path, the query, a header, a header from the environment and the
	// signing secret.
	target := func(t *testing.T, cfg webhook.Config, base, mode string, edit func(*domain.WebhookAction)) (porttest.ActionTarget, *testsupport.Receiver) {
		t.Helper()
		recv := testsupport.StartReceiver(t)
		if base == "" {
			base = recv.URL
		}
		if cfg.Policy.Allowed == nil {
			cfg.Policy = loopbackPolicy(t)
		}
		exec, err := webhook.NewExecutor(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("NewExecutor: %v", err)
		}
		t.Cleanup(exec.Close)
		act := newAction(base+mode+"/hooks/"+pathSecret+"?token="+querySecret, func(wh *domain.WebhookAction) {
			wh.Headers = map[string]string{"Authorization": "Bearer " + headerSecret}
			wh.SecretHeaders = map[string]string{"X-Receiver-Token": envSecret}
			wh.SigningSecrets = []string{signingSecret}
			if edit != nil {
				edit(wh)
			}
		})
		return porttest.ActionTarget{Executor: exec, Action: act}, recv
	}
	status := func(code string) func(t *testing.T) porttest.ActionTarget {
		return func(t *testing.T) porttest.ActionTarget {
			tg, _ := target(t, webhook.Config{}, "", "/status/"+code, nil)
			return tg
		}
	}
	porttest.RunActionExecutor(t, porttest.ActionHarness{
		Features: porttest.ActionFeatures{TransientFailures: true, PermanentFailures: true, Blocks: true},
		Success: func(t *testing.T) porttest.ActionTarget {
			tg, recv := target(t, webhook.Config{}, "", "/ok", nil)
			tg.Took = func(_ context.Context, ev *domain.Event) (bool, error) {
				for _, r := range recv.Requests() {
					if strings.HasPrefix(r.Header.Get("webhook-id"), ev.ID+".") && r.Header.Get("Authorization") == "Bearer "+headerSecret &&
						r.Header.Get("X-Receiver-Token") == envSecret {
						return true, nil
					}
				}
				return false, nil
			}
			return tg
		},
		Transient: map[string]func(t *testing.T) porttest.ActionTarget{
			"503": status("503"),
			"429": status("429"),
			"connection refused": func(t *testing.T) porttest.ActionTarget {
				tg, _ := target(t, webhook.Config{}, "http://"+closedAddr(t), "/ok", nil)
				return tg
			},
			"no answer within the action timeout": func(t *testing.T) porttest.ActionTarget {
				tg, _ := target(t, webhook.Config{}, "", "/hang", func(wh *domain.WebhookAction) { wh.Timeout = 100 * time.Millisecond })
				return tg
			},
		},
		Permanent: map[string]func(t *testing.T) porttest.ActionTarget{
			"400":      status("400"),
			"410":      status("410"),
			"redirect": status("301"),
			"address refused by the policy": func(t *testing.T) porttest.ActionTarget {
				strict := webhook.Config{Policy: mustPolicy(t, "10.0.0.0/8")} // loopback not allowed
				tg, _ := target(t, strict, "", "/ok", nil)
				return tg
			},
			"not an http url": func(t *testing.T) porttest.ActionTarget {
				tg, recv := target(t, webhook.Config{}, "", "/ok", nil)
				tg.Action.Webhook.URL = strings.Replace(recv.URL, "http://", "ftp://", 1) + "/hooks/" + pathSecret + "?token=" + querySecret
				return tg
			},
			"invalid method": func(t *testing.T) porttest.ActionTarget {
				tg, _ := target(t, webhook.Config{}, "", "/ok", func(wh *domain.WebhookAction) { wh.Method = "BAD METHOD" })
				return tg
			},
		},
		Blocking: func(t *testing.T) porttest.ActionTarget {
			tg, recv := target(t, webhook.Config{}, "", "/hang", func(wh *domain.WebhookAction) { wh.Timeout = 0 })
			tg.Reached = porttest.ReachedWhen(recv.Hung())
			return tg
		},
		Secrets: []string{pathSecret, querySecret, headerSecret, envSecret, signingSecret},
	})
}

func mustPolicy(t *testing.T, allowed ...string) httpguard.Policy {
	t.Helper()
	p, err := httpguard.ParsePolicy(false, allowed)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(testsupport.FreePort(t))
}
