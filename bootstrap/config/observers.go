package config

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// actionKeys lists the keys each action type reads; any other key set on
// an action of that type is an error (nothing is read and ignored).
var actionKeys = map[domain.ActionType][]string{
	domain.ActionWebhook:  {"url", "url_env", "method", "headers", "body_template", "timeout", "signing_secret", "signing_secret_env"},
	domain.ActionLog:      {"level", "message_template"},
	domain.ActionCache:    {"key_pattern", "key_prefix", "action", "timeout"},
	domain.ActionDatabase: {"function_name", "params", "timeout"},
	domain.ActionSlack:    {"webhook_url", "webhook_url_env", "channel", "message_template"},
	domain.ActionNATS:     {"subject"},
}

// DefaultWebhookTimeout applies when a webhook action sets no timeout.
const DefaultWebhookTimeout = 10 * time.Second

// BuildObservers compiles observer configs into domain observers: it
// checks keys per action type, resolves *_env secrets from lookupEnv,
// compiles conditions and templates, and validates the set. Errors name
// the observer and the key. Retry keys an observer leaves unset take
// domain.DefaultRetryPolicy (LoadObservers uses [retry] instead).
func BuildObservers(cfgs []ObserverConfig, lookupEnv func(string) (string, bool)) ([]domain.Observer, error) {
	return buildObservers(cfgs, domain.DefaultRetryPolicy, lookupEnv)
}

func buildObservers(cfgs []ObserverConfig, retry domain.RetryPolicy, lookupEnv func(string) (string, bool)) ([]domain.Observer, error) {
	out := make([]domain.Observer, 0, len(cfgs))
	for i, oc := range cfgs {
		o, err := buildObserver(oc, retry, lookupEnv)
		if err != nil {
			where := fmt.Sprintf("observers[%d]", i)
			if oc.Name != "" {
				where += fmt.Sprintf(" (%q)", oc.Name)
			}
			return nil, &ConfigError{Key: where, Msg: err.Error()}
		}
		out = append(out, o)
	}
	if err := domain.ValidateObservers(out); err != nil {
		return nil, &ConfigError{Key: "observers", Msg: err.Error()}
	}
	return out, nil
}

func buildObserver(oc ObserverConfig, retry domain.RetryPolicy, lookupEnv func(string) (string, bool)) (domain.Observer, error) {
	if strings.TrimSpace(oc.Name) == "" {
		return domain.Observer{}, errors.New("name: required")
	}
	o := domain.Observer{
		Name:      oc.Name,
		Entity:    oc.Entity,
		OnFailure: domain.FailurePolicy(oc.OnFailure),
	}
	if o.OnFailure == "" {
		o.OnFailure = domain.FailureDLQ
	}
	if o.Entity == "" {
		return o, errors.New("entity: required (an entity type, or \"*\" for any)")
	}
	if len(oc.Events) == 0 {
		return o, errors.New("events: required (one or more of INSERT, UPDATE, DELETE, CUSTOM)")
	}
	for j, e := range oc.Events {
		t, err := domain.ParseEventType(e)
		if err != nil {
			return o, fmt.Errorf("events[%d]: %q is not one of INSERT, UPDATE, DELETE, CUSTOM", j, e)
		}
		o.Events = append(o.Events, t)
	}
	if strings.TrimSpace(oc.Condition) != "" {
		c, err := domain.CompileCondition(oc.Condition)
		if err != nil {
			return o, fmt.Errorf("condition: %w", err)
		}
		o.Condition = c
	}
	var err error
	if o.Retry, err = applyRetry(retry, oc.Retry); err != nil {
		return o, fmt.Errorf("retry: %w", err)
	}
	if len(oc.Actions) == 0 {
		return o, errors.New("actions: at least one action is required")
	}
	derived := map[string]int{} // identity -> index of the unnamed action that has it
	for j, ac := range oc.Actions {
		a, err := buildAction(ac, lookupEnv)
		if err != nil {
			return o, fmt.Errorf("actions[%d]: %w", j, err)
		}
		if a.Name == "" {
			a.Name = actionIdentity(ac)
			if k, dup := derived[a.Name]; dup {
				return o, fmt.Errorf("actions[%d]: identical to actions[%d]; give each a name (name = \"...\") to tell them apart", j, k)
			}
			derived[a.Name] = j
		}
		if err := a.Validate(); err != nil {
			return o, fmt.Errorf("actions[%d]: %w", j, err)
		}
		o.Actions = append(o.Actions, a)
	}
	return o, o.Validate()
}

func buildAction(ac ActionConfig, lookupEnv func(string) (string, bool)) (domain.Action, error) {
	t := domain.ActionType(ac.Type)
	allowed, ok := actionKeys[t]
	if !ok {
		if ac.Type == "" {
			return domain.Action{}, errors.New("type: required")
		}
		var known []string
		for k := range actionKeys {
			known = append(known, string(k))
		}
		slices.Sort(known)
		return domain.Action{}, fmt.Errorf("type: %q is not available (supported: %s)", ac.Type, strings.Join(known, ", "))
	}
	if err := checkActionKeys(ac, allowed); err != nil {
		return domain.Action{}, err
	}
	a := domain.Action{Type: t, Name: ac.Name}
	switch t {
	case domain.ActionWebhook:
		url, err := valueOrEnv("url", ac.URL, ac.URLEnv, lookupEnv)
		if err != nil {
			return a, err
		}
		secret, err := valueOrEnv("signing_secret", ac.SigningSecret, ac.SigningSecretEnv, lookupEnv)
		if err != nil {
			return a, err
		}
		w := &domain.WebhookAction{
			URL:     url,
			Method:  strings.ToUpper(ac.Method),
			Headers: ac.Headers,
			Timeout: DefaultWebhookTimeout,
		}
		if secret != "" {
			w.SigningSecrets = []string{secret}
		}
		if w.Method == "" {
			w.Method = http.MethodPost
		}
		if ac.Timeout != nil {
			w.Timeout = *ac.Timeout
		}
		if ac.BodyTemplate != "" {
			if w.BodyTemplate, err = domain.CompileTemplate(ac.BodyTemplate); err != nil {
				return a, fmt.Errorf("body_template: %w", err)
			}
		}
		a.Webhook = w
	case domain.ActionLog:
		l := &domain.LogAction{Level: strings.ToLower(ac.Level)}
		if l.Level == "" {
			l.Level = "info"
		}
		if ac.MessageTemplate != "" {
			var err error
			if l.MessageTemplate, err = domain.CompileTemplate(ac.MessageTemplate); err != nil {
				return a, fmt.Errorf("message_template: %w", err)
			}
		}
		a.Log = l
	case domain.ActionSlack:
		u, err := valueOrEnv("webhook_url", ac.WebhookURL, ac.WebhookURLEnv, lookupEnv)
		if err != nil {
			return a, err
		}
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return a, errors.New("webhook_url: must start with https:// (or http://)")
		}
		sl := &domain.SlackAction{WebhookURL: u, Channel: ac.Channel}
		if ac.MessageTemplate != "" {
			if sl.MessageTemplate, err = domain.CompileTemplate(ac.MessageTemplate); err != nil {
				return a, fmt.Errorf("message_template: %w", err)
			}
		}
		a.Slack = sl
	case domain.ActionNATS:
		if ac.Subject == "" {
			return a, errors.New("subject: required")
		}
		subject, err := domain.CompileTemplate(ac.Subject)
		if err != nil {
			return a, fmt.Errorf("subject: %w", err)
		}
		a.NATS = &domain.NATSAction{Subject: subject}
	case domain.ActionDatabase:
		if ac.FunctionName == "" {
			return a, errors.New("function_name: required")
		}
		if _, err := domain.SplitFunctionName(ac.FunctionName); err != nil {
			return a, fmt.Errorf("function_name: %w", err)
		}
		a.Database = &domain.DatabaseAction{FunctionName: ac.FunctionName, Params: ac.Params}
		if ac.Timeout != nil {
			if *ac.Timeout < time.Millisecond {
				return a, fmt.Errorf("timeout: %s is below 1ms", *ac.Timeout)
			}
			a.Database.Timeout = *ac.Timeout
		}
	case domain.ActionCache:
		c := &domain.CacheAction{Operation: ac.Action, KeyPrefix: ac.KeyPrefix}
		if ac.Timeout != nil {
			if *ac.Timeout <= 0 {
				return a, fmt.Errorf("timeout: %s is not positive", *ac.Timeout)
			}
			c.Timeout = *ac.Timeout
		}
		if c.Operation == "" {
			c.Operation = "invalidate"
		}
		if c.Operation != "invalidate" {
			return a, fmt.Errorf("action: %q is not supported (only \"invalidate\")", ac.Action)
		}
		if ac.KeyPattern == "" {
			return a, errors.New("key_pattern: required")
		}
		var err error
		if c.KeyPattern, err = domain.CompileTemplate(ac.KeyPattern); err != nil {
			return a, fmt.Errorf("key_pattern: %w", err)
		}
		a.Cache = c
	}
	return a, nil
}

// checkActionKeys fails when a key that the action type does not read is
// set.
func checkActionKeys(ac ActionConfig, allowed []string) error {
	v := reflect.ValueOf(ac)
	t := v.Type()
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("koanf")
		if key == "type" || key == "name" || v.Field(i).IsZero() {
			continue
		}
		if !slices.Contains(allowed, key) {
			return fmt.Errorf("%s: not used by %s actions (keys for %s: type, name, %s)", key, ac.Type, ac.Type, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// valueOrEnv resolves a value given directly or through the environment
// variable named by the *_env key.
func valueOrEnv(key, direct, envName string, lookupEnv func(string) (string, bool)) (string, error) {
	if direct != "" && envName != "" {
		return "", fmt.Errorf("%s and %s_env: set only one", key, key)
	}
	if envName == "" {
		return direct, nil
	}
	v, ok := lookupEnv(envName)
	if !ok || v == "" {
		return "", fmt.Errorf("%s_env: environment variable %s is not set", key, envName)
	}
	return v, nil
}
