package domain

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestEndpoint(t *testing.T) {
	t.Parallel()
	obs := &Observer{Name: "orders"}
	hook := func(u string) *Action {
		return &Action{Name: "webhook-1", Type: ActionWebhook, Webhook: &WebhookAction{URL: u}}
	}
	tests := []struct {
		name string
		act  *Action
		want string
	}{
		{"https default port", hook("https://Hooks.Example.com/a/b?token=x"), "https://hooks.example.com:443"},
		{"http default port", hook("http://example.com/a"), "http://example.com:80"},
		{"explicit port", hook("https://example.com:8443/a"), "https://example.com:8443"},
		{"same host other path", hook("https://hooks.example.com/other"), "https://hooks.example.com:443"},
		{"user info dropped", hook("https://user:pw@example.com/a"), "https://example.com:443"},
		{"ipv6", hook("http://[::1]:9000/hook"), "http://[::1]:9000"},
		{"slack", &Action{Name: "slack-1", Type: ActionSlack, Slack: &SlackAction{WebhookURL: "https://hooks.slack.com/services/T/B/secret"}}, "https://hooks.slack.com:443"},
		{"unparsable url falls back to the action", hook("https://exa mple.com:x/"), "webhook:orders/webhook-1"},
		{"log", &Action{Name: "log-9", Type: ActionLog, Log: &LogAction{}}, "log:orders/log-9"},
		{"cache", &Action{Name: "c", Type: ActionCache, Cache: &CacheAction{}}, "cache:orders/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Endpoint(obs, tt.act); got != tt.want {
				t.Errorf("Endpoint = %q, want %q", got, tt.want)
			}
		})
	}
	for _, raw := range []string{"ftp://example.com/x", "mailto:a@example.com", "/relative", ""} {
		if ep, ok := URLEndpoint(raw); ok {
			t.Errorf("URLEndpoint(%q) = %q, want not ok", raw, ep)
		}
	}
}

func TestDeferredError(t *testing.T) {
	t.Parallel()
	until := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	d := &DeferredError{Endpoint: "https://x:443", Reason: DeferRate, Until: until}
	wrapped := fmt.Errorf("dispatch: %w", d)
	got, ok := AsDeferred(wrapped)
	if !ok || got != d {
		t.Fatalf("AsDeferred(wrapped) = %v, %v", got, ok)
	}
	if _, ok := AsDeferred(errors.New("boom")); ok {
		t.Error("AsDeferred(plain error) = ok")
	}
	if IsPermanent(d) {
		t.Error("a deferral is permanent")
	}
}
