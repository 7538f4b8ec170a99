package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// identities builds one observer with actions and returns their names.
func identities(t *testing.T, env map[string]string, actions ...config.ActionConfig) ([]string, error) {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	obs, err := config.BuildObservers([]config.ObserverConfig{{Name: "o", Entity: "Order", Events: []string{"INSERT"}, Actions: actions}}, lookup, config.Checks{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range obs[0].Actions {
		out = append(out, a.Name)
	}
	return out, nil
}

func mustIdentities(t *testing.T, env map[string]string, actions ...config.ActionConfig) []string {
	t.Helper()
	ids, err := identities(t, env, actions...)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestActionIdentityFollowsContentNotPosition(t *testing.T) {
	t.Parallel()
	timeout := 5 * time.Second
	hook := config.ActionConfig{Type: "webhook", URL: "https://example.com/orders", Timeout: &timeout, Headers: map[string]string{"X-A": "1", "X-B": "2"}}
	logAct := config.ActionConfig{Type: "log", MessageTemplate: "{{ event.id }}"}
	other := config.ActionConfig{Type: "webhook", URL: "https://example.com/other"}
	named := config.ActionConfig{Type: "webhook", Name: "ledger", URL: "https://example.com/ledger"}

	ids := mustIdentities(t, nil, hook, logAct, other, named)
	reordered := mustIdentities(t, nil, named, other, hook, logAct)
	byContent := map[string]string{ids[0]: "hook", ids[1]: "log", ids[2]: "other", ids[3]: "named"}
	if len(byContent) != 4 {
		t.Fatalf("identities are not distinct: %v", ids)
	}
	for i, want := range []string{ids[3], ids[2], ids[0], ids[1]} {
		if reordered[i] != want {
			t.Errorf("after reordering, actions[%d] = %q, want %q (%s): reordering changed an identity", i, reordered[i], want, byContent[want])
		}
	}
	if ids[3] != "ledger" {
		t.Errorf("named action identity = %q, want its name", ids[3])
	}
	if again := mustIdentities(t, nil, hook); again[0] != ids[0] {
		t.Errorf("the same action got %q, then %q", ids[0], again[0])
	}
}

func TestActionIdentityChangesWithEveryEdit(t *testing.T) {
	t.Parallel()
	base := config.ActionConfig{Type: "webhook", URL: "https://example.com/orders?kind=a", Method: "POST",
		Headers: map[string]string{"X-A": "1"}, BodyTemplate: `{"id": "{{ event.id }}"}`}
	id := mustIdentities(t, nil, base)[0]
	two := 2 * time.Second
	edits := map[string]func(a *config.ActionConfig){
		"url path":      func(a *config.ActionConfig) { a.URL = "https://example.com/orders2?kind=a" },
		"url host":      func(a *config.ActionConfig) { a.URL = "https://example.org/orders?kind=a" },
		"url query key": func(a *config.ActionConfig) { a.URL = "https://example.com/orders?sort=a" },
		"method":        func(a *config.ActionConfig) { a.Method = "PUT" },
		"header value":  func(a *config.ActionConfig) { a.Headers = map[string]string{"X-A": "2"} },
		"header added":  func(a *config.ActionConfig) { a.Headers = map[string]string{"X-A": "1", "X-B": "1"} },
		"body":          func(a *config.ActionConfig) { a.BodyTemplate = `{"id": "{{ event.entity_id }}"}` },
		"timeout":       func(a *config.ActionConfig) { a.Timeout = &two },
		"signing added": func(a *config.ActionConfig) { a.SigningSecret = "whsec_c2VjcmV0" },
	}
	for name, edit := range edits {
		a := base
		edit(&a)
		if got := mustIdentities(t, nil, a)[0]; got == id {
			t.Errorf("edit %q kept the identity %q: an edited action must be a new one", name, got)
		}
	}
}

// TestActionIdentityHoldsNoSecret checks that values of *_env variables
// and secrets never enter an identity: the same configuration with other
// secret values keeps its identity, so the identity cannot reveal them.
func TestActionIdentityHoldsNoSecret(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		a, b config.ActionConfig
		envA map[string]string
		envB map[string]string
	}{
		{"url from the environment",
			config.ActionConfig{Type: "webhook", URLEnv: "HOOK"}, config.ActionConfig{Type: "webhook", URLEnv: "HOOK"},
			map[string]string{"HOOK": "https://a.example.com/x"}, map[string]string{"HOOK": "https://b.example.com/y"}},
		{"signing secret rotated",
			config.ActionConfig{Type: "webhook", URL: "https://example.com/h", SigningSecret: "whsec_b25l"},
			config.ActionConfig{Type: "webhook", URL: "https://example.com/h", SigningSecret: "whsec_dHdv"}, nil, nil},
		{"signing secret from the environment",
			config.ActionConfig{Type: "webhook", URL: "https://example.com/h", SigningSecretEnv: "S"},
			config.ActionConfig{Type: "webhook", URL: "https://example.com/h", SigningSecretEnv: "S"},
			map[string]string{"S": "whsec_b25l"}, map[string]string{"S": "whsec_dHdv"}},
		{"url password and query token",
			config.ActionConfig{Type: "webhook", URL: "https://u:pw1@example.com/h?token=one"},
			config.ActionConfig{Type: "webhook", URL: "https://u:pw2@example.com/h?token=two"}, nil, nil},
		{"slack webhook path",
			config.ActionConfig{Type: "slack", WebhookURL: "https://hooks.slack.com/services/T1/B1/secret1", Channel: "#ops"},
			config.ActionConfig{Type: "slack", WebhookURL: "https://hooks.slack.com/services/T2/B2/secret2", Channel: "#ops"}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := mustIdentities(t, tc.envA, tc.a)[0], mustIdentities(t, tc.envB, tc.b)[0]
			if a != b {
				t.Errorf("identities %q and %q differ only by secret values", a, b)
			}
		})
	}
	// Renaming the variable is an edit.
	env := map[string]string{"A": "https://example.com/h", "B": "https://example.com/h"}
	if x, y := mustIdentities(t, env, config.ActionConfig{Type: "webhook", URLEnv: "A"})[0],
		mustIdentities(t, env, config.ActionConfig{Type: "webhook", URLEnv: "B"})[0]; x == y {
		t.Errorf("url_env A and url_env B share the identity %q", x)
	}
}

func TestIdenticalUnnamedActionsNeedNames(t *testing.T) {
	t.Parallel()
	hook := config.ActionConfig{Type: "webhook", URL: "https://example.com/h"}
	_, err := identities(t, nil, hook, config.ActionConfig{Type: "log"}, hook)
	if err == nil || !strings.Contains(err.Error(), "actions[2]") || !strings.Contains(err.Error(), "identical to actions[0]") ||
		!strings.Contains(err.Error(), "name") {
		t.Fatalf("two identical unnamed actions: error %v, want one naming actions[2], actions[0] and asking for a name", err)
	}
	first, second := hook, hook
	first.Name, second.Name = "primary", "secondary"
	ids := mustIdentities(t, nil, first, second)
	if ids[0] != "primary" || ids[1] != "secondary" {
		t.Errorf("named copies = %v", ids)
	}
	// One named, one not: the unnamed one keeps its derived identity.
	ids = mustIdentities(t, nil, first, hook)
	if ids[0] != "primary" || !strings.HasPrefix(ids[1], "webhook-") {
		t.Errorf("one named copy = %v", ids)
	}
}
