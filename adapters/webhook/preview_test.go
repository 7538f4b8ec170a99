package webhook_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/domain"
)

// Valid Standard Webhooks secrets (24 and 32 bytes), a rotated pair.
const (
	newSigningSecret = "whsec_YS1icmFuZC1uZXctMzItYnl0ZS1zaWduaW5nLWtleSE="
	oldSigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

func TestPreview(t *testing.T) {
	t.Parallel()
	ev := &domain.Event{ID: "e1", EventType: domain.EventUpdate, EntityType: "Order", EntityID: "o-42", Data: map[string]any{"note": `a "b"`}}
	obs := &domain.Observer{Name: "shipped"}
	act := &domain.Action{Name: "hook", Type: domain.ActionWebhook, Webhook: &domain.WebhookAction{
		URL: "https://user:pass-word@hooks.example.com/orders/AbCdEfPathToken123456?token=abc123", Method: "POST",
		Headers:        map[string]string{"Authorization": "Bearer top-secret", "X-Api-Key": "k-123", "X-Team": "logistics"},
		BodyTemplate:   domain.MustCompileTemplate(`{"order": "{{ event.entity_id }}", "note": "{{ note }}", "gift": "{{ gift }}"}`),
		SecretHeaders:  map[string]string{"X-Receiver-Token": "env-token-42"},
		SigningSecrets: []string{newSigningSecret, oldSigningSecret},
	}}
	p := webhook.Previewer.Preview(ev, obs, act)
	req, ok := p.Details.(webhook.RequestPreview)
	if !ok {
		t.Fatalf("details = %T, want RequestPreview", p.Details)
	}
	if req.Method != "POST" || req.Signing != "signed with 2 secrets" || req.Signatures != 2 || req.Headers["X-Team"] != "logistics" ||
		req.Headers["X-Receiver-Token"] != "(redacted) (from the environment)" ||
		req.Headers["webhook-id"] != domain.DeliveryID("e1", "shipped", "hook") ||
		req.Body != `{"order": "o-42", "note": "a \"b\"", "gift": ""}` {
		t.Errorf("request = %+v", req)
	}
	if len(p.Missing) != 1 || p.Missing[0] != "gift" || p.Problem != "" {
		t.Errorf("missing %v, problem %q", p.Missing, p.Problem)
	}
	if p.Lines[0] != "POST https://user:redacted@hooks.example.com/orders/redacted?token=redacted (signed with 2 secrets)" || !strings.HasPrefix(p.Lines[len(p.Lines)-1], "body: ") {
		t.Errorf("lines = %q", p.Lines)
	}
	text := fmt.Sprintf("%+v %q", p.Details, p.Lines)
	for _, secret := range []string{"pass-word", "AbCdEfPathToken123456", "abc123", "top-secret", "k-123", "env-token-42", "whsec_", newSigningSecret[6:], oldSigningSecret[6:]} {
		if strings.Contains(text, secret) {
			t.Errorf("preview shows the secret %q: %s", secret, text)
		}
	}

	act.Webhook.SigningSecrets = act.Webhook.SigningSecrets[:1]
	if req := webhook.Preview(ev, obs, act).Details.(webhook.RequestPreview); req.Signing != "signed with 1 secret" || req.Signatures != 1 {
		t.Errorf("one secret: signing %q, %d signatures", req.Signing, req.Signatures)
	}
	act.Webhook.BodyTemplate, act.Webhook.SigningSecrets = nil, nil
	p = webhook.Preview(ev, obs, act)
	if req := p.Details.(webhook.RequestPreview); !strings.Contains(req.Body, `"entity_id":"o-42"`) || req.Signing != "unsigned" || req.Signatures != 0 {
		t.Errorf("default body preview = %+v", req)
	}
	if p := webhook.Preview(ev, obs, &domain.Action{Type: domain.ActionWebhook}); p.Problem == "" || p.Details != nil {
		t.Errorf("preview without config = %+v", p)
	}
}
