package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	neturl "net/url"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// actionKeys lists the keys each action type reads; any other key set on
// an action of that type is an error (nothing is read and ignored).
var actionKeys = map[domain.ActionType][]string{
	domain.ActionWebhook: {"url", "url_env", "method", "headers", "headers_env", "body_template", "timeout",
		"signing_secret", "signing_secret_env", "signing_secrets_env", "batch"},
	domain.ActionEmail: {"to", "to_template", "cc", "bcc", "reply_to", "subject", "subject_template",
		"body_template", "html_body_template"},
	domain.ActionLog:      {"level", "message_template"},
	domain.ActionCache:    {"key_pattern", "key_prefix", "action", "timeout"},
	domain.ActionDatabase: {"function_name", "params", "timeout"},
	domain.ActionSlack:    {"webhook_url", "webhook_url_env", "channel", "message_template"},
	domain.ActionNATS:     {"subject"},
}

// DefaultWebhookTimeout applies when a webhook action sets no timeout.
const DefaultWebhookTimeout = 10 * time.Second

// Checks are the action adapters' own checks of configured values, run
// while observers load so that a value the adapter would refuse is a
// ConfigError naming its key at start, not a failure at the first event.
// This package imports no adapter: the composition root passes them. A nil
// check is skipped.
type Checks struct {
	// SigningSecret checks one webhook signing secret. Its error must not
	// contain the secret.
	SigningSecret func(secret string) error
	// Email checks an email action's fixed addresses; the error names the
	// field ("cc[1]: ...").
	Email func(*domain.EmailAction) error
}

// BuildObservers compiles observer configs into domain observers: it
// checks keys per action type, resolves *_env secrets from lookupEnv,
// compiles conditions and templates, runs checks, and validates the set.
// Errors name the observer and the key. Retry keys an observer leaves
// unset take domain.DefaultRetryPolicy (LoadObservers uses [retry]
// instead).
func BuildObservers(cfgs []ObserverConfig, lookupEnv func(string) (string, bool), checks Checks) ([]domain.Observer, error) {
	return buildObservers(cfgs, domain.DefaultRetryPolicy, lookupEnv, checks)
}

func buildObservers(cfgs []ObserverConfig, retry domain.RetryPolicy, lookupEnv func(string) (string, bool), checks Checks) ([]domain.Observer, error) {
	out := make([]domain.Observer, 0, len(cfgs))
	for i, oc := range cfgs {
		o, err := buildObserver(oc, retry, lookupEnv, checks)
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

func buildObserver(oc ObserverConfig, retry domain.RetryPolicy, lookupEnv func(string) (string, bool), checks Checks) (domain.Observer, error) {
	if strings.TrimSpace(oc.Name) == "" {
		return domain.Observer{}, errors.New("name: required")
	}
	if err := checkName(oc.Name); err != nil {
		return domain.Observer{}, fmt.Errorf("name: %w", err)
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
		a, err := buildAction(ac, lookupEnv, checks)
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

func buildAction(ac ActionConfig, lookupEnv func(string) (string, bool), checks Checks) (domain.Action, error) {
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
	if ac.Name != "" {
		if err := checkName(ac.Name); err != nil {
			return domain.Action{}, fmt.Errorf("name: %w", err)
		}
	}
	a := domain.Action{Type: t, Name: ac.Name}
	switch t {
	case domain.ActionWebhook:
		url, err := valueOrEnv("url", ac.URL, ac.URLEnv, lookupEnv)
		if err != nil {
			return a, err
		}
		if err := checkActionURL(keyOrEnv("url", ac.URLEnv), url); err != nil {
			return a, err
		}
		secrets, err := signingSecrets(ac, lookupEnv, checks.SigningSecret)
		if err != nil {
			return a, err
		}
		if err := checkHeaders("headers", ac.Headers); err != nil {
			return a, err
		}
		secretHeaders, err := headersFromEnv(ac.HeadersEnv, ac.Headers, lookupEnv)
		if err != nil {
			return a, err
		}
		w := &domain.WebhookAction{
			URL:            url,
			Method:         strings.ToUpper(ac.Method),
			Headers:        ac.Headers,
			SecretHeaders:  secretHeaders,
			Timeout:        DefaultWebhookTimeout,
			SigningSecrets: secrets,
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
		if ac.Batch != nil {
			w.Batch = ac.Batch.batching()
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
		if err := checkActionURL(keyOrEnv("webhook_url", ac.WebhookURLEnv), u); err != nil {
			return a, err
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
		if err := domain.ValidSubjectTemplate(subject); err != nil {
			// Every event would fail (dead-lettered at once): refused here.
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
		if _, err := json.Marshal(ac.Params); err != nil { // nan or inf: every call would fail
			return a, fmt.Errorf("params: not representable in JSON: %w", err)
		}
		a.Database = &domain.DatabaseAction{FunctionName: ac.FunctionName, Params: ac.Params}
		if ac.Timeout != nil {
			if *ac.Timeout < time.Millisecond {
				return a, fmt.Errorf("timeout: %s is below 1ms", *ac.Timeout)
			}
			a.Database.Timeout = *ac.Timeout
		}
	case domain.ActionEmail:
		if strings.Contains(ac.Subject, "{{") {
			return a, errors.New("subject: a subject is sent as written, not filled in: use subject_template for {{ }} placeholders")
		}
		e := &domain.EmailAction{To: ac.To, Cc: ac.Cc, Bcc: ac.Bcc, ReplyTo: ac.ReplyTo, Subject: ac.Subject}
		for _, t := range []struct {
			key, src string
			dst      **domain.Template
		}{
			{"to_template", ac.ToTemplate, &e.ToTemplate},
			{"subject_template", ac.SubjectTemplate, &e.SubjectTemplate},
			{"body_template", ac.BodyTemplate, &e.BodyTemplate},
			{"html_body_template", ac.HTMLBodyTemplate, &e.HTMLBodyTemplate},
		} {
			if t.src == "" {
				continue
			}
			tmpl, err := domain.CompileTemplate(t.src)
			if err != nil {
				return a, fmt.Errorf("%s: %w", t.key, err)
			}
			*t.dst = tmpl
		}
		if checks.Email != nil {
			if err := checks.Email(e); err != nil {
				return a, err
			}
		}
		a.Email = e
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

// batching is b with its defaults (checked by domain.Batching.Validate).
func (b *BatchConfig) batching() *domain.Batching {
	out := &domain.Batching{MaxEvents: DefaultBatchEvents, MaxBytes: DefaultBatchBytes, MaxWait: DefaultBatchWait}
	if b.MaxEvents != nil {
		out.MaxEvents = *b.MaxEvents
	}
	if b.MaxBytes != nil {
		out.MaxBytes = *b.MaxBytes
	}
	if b.MaxWait != nil {
		out.MaxWait = *b.MaxWait
	}
	return out
}

// keyOrEnv names where a value came from: key, or key_env (variable).
func keyOrEnv(key, envName string) string {
	if envName == "" {
		return key
	}
	return key + "_env (variable " + envName + ")"
}

// checkActionURL refuses a webhook or Slack URL that every delivery would
// fail on: not http(s), no host, or holding whitespace or control
// characters (a trailing newline read from a secret file). The URL is not
// quoted: its path, query or user information may be a credential.
func checkActionURL(key, raw string) error {
	if strings.Contains(raw, "{{") {
		return fmt.Errorf("%s: the URL is sent as written, not filled in: {{ }} placeholders work in body_template only", key)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("%s: the URL holds whitespace or a control character (a trailing newline?)", key)
	}
	u, err := neturl.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%s: not a valid URL", key)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%s: must start with https:// (or http://)", key)
	case u.Hostname() == "":
		return fmt.Errorf("%s: the URL has no host", key)
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

// signingSecrets resolves a webhook's signing secrets, in order:
// signing_secret or signing_secret_env, then each variable named by
// signing_secrets_env. Each is checked; an error names the key and the
// variable, never the secret.
func signingSecrets(ac ActionConfig, lookupEnv func(string) (string, bool), check func(string) error) ([]string, error) {
	type source struct{ key, value string }
	var srcs []source
	one, err := valueOrEnv("signing_secret", ac.SigningSecret, ac.SigningSecretEnv, lookupEnv)
	if err != nil {
		return nil, err
	}
	switch {
	case one != "" && ac.SigningSecretEnv != "":
		srcs = append(srcs, source{fmt.Sprintf("signing_secret_env (%s)", ac.SigningSecretEnv), one})
	case one != "":
		srcs = append(srcs, source{"signing_secret", one})
	}
	for i, name := range ac.SigningSecretsEnv {
		key := fmt.Sprintf("signing_secrets_env[%d]", i)
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%s: names no environment variable", key)
		}
		v, ok := lookupEnv(name)
		if !ok || v == "" {
			return nil, fmt.Errorf("%s: environment variable %s is not set", key, name)
		}
		srcs = append(srcs, source{fmt.Sprintf("%s (%s)", key, name), v})
	}
	out := make([]string, 0, len(srcs))
	for i, src := range srcs {
		if check != nil {
			if err := check(src.value); err != nil {
				return nil, fmt.Errorf("%s: %w", src.key, err)
			}
		}
		for _, prev := range srcs[:i] {
			if prev.value == src.value {
				return nil, fmt.Errorf("%s: the same secret as %s", src.key, prev.key)
			}
		}
		out = append(out, src.value)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// headersFromEnv resolves headers_env (header name -> environment variable)
// into header values. A header may not be set in headers too. Errors name
// the header and the variable, never the value.
func headersFromEnv(names, fixed map[string]string, lookupEnv func(string) (string, bool)) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(names))
	for _, h := range slices.Sorted(maps.Keys(names)) {
		key := "headers_env." + h
		if !domain.IsHTTPToken(h) {
			return nil, fmt.Errorf("%s: %q is not a header name", key, h)
		}
		if caseTwin(h, serviceHeaders) != "" {
			return nil, serviceHeaderError(key)
		}
		if caseTwin(h, slices.Collect(maps.Keys(fixed))) != "" {
			return nil, fmt.Errorf("%s: header %s is also set in headers: set it in one place", key, h)
		}
		if other := caseTwin(h, slices.Collect(maps.Keys(out))); other != "" {
			return nil, fmt.Errorf("%s: header %s is also set as %s (header names ignore case)", key, h, other)
		}
		env := names[h]
		if strings.TrimSpace(env) == "" {
			return nil, fmt.Errorf("%s: names no environment variable", key)
		}
		v, ok := lookupEnv(env)
		if !ok || v == "" {
			return nil, fmt.Errorf("%s: environment variable %s is not set", key, env)
		}
		if !domain.IsHeaderValue(v) {
			return nil, fmt.Errorf("%s: environment variable %s holds a control character (a line break, NUL, ...); a header value is one line of text (a trailing newline from a secret file?)", key, env)
		}
		out[h] = v
	}
	return out, nil
}

// caseTwin returns the name among names that is header name h, header
// names ignoring case ("" when none).
func caseTwin(h string, names []string) string {
	if i := slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, h) }); i >= 0 {
		return names[i]
	}
	return ""
}

// serviceHeaders are the headers the service sets itself on every
// request (the framing, and the Standard Webhooks signature's): a value
// configured for one would be dropped or overwritten.
var serviceHeaders = []string{"Content-Length", "Transfer-Encoding", "Connection", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"}

// serviceHeaderError refuses the header at key (headers.X,
// headers_env.X): one of serviceHeaders.
func serviceHeaderError(key string) error {
	return fmt.Errorf("%s: the service sets this header itself (%s); remove it", key, strings.Join(serviceHeaders, ", "))
}

// checkHeaders checks the names and values of fixed headers: header
// names, one line each, not a header the service sets, not the same name
// twice in another case, and not a template (headers are sent as
// written).
func checkHeaders(key string, headers map[string]string) error {
	names := slices.Sorted(maps.Keys(headers))
	for i, h := range names {
		switch {
		case !domain.IsHTTPToken(h):
			return fmt.Errorf("%s.%s: %q is not a header name", key, h, h)
		case !domain.IsHeaderValue(headers[h]):
			return fmt.Errorf("%s.%s: the value holds a control character (a line break, NUL, ...); a header value is one line of text", key, h)
		case caseTwin(h, serviceHeaders) != "":
			return serviceHeaderError(key + "." + h)
		case strings.Contains(headers[h], "{{"):
			return fmt.Errorf("%s.%s: a header value is sent as written, not filled in: {{ }} placeholders work in body_template only", key, h)
		}
		if other := caseTwin(h, names[:i]); other != "" {
			return fmt.Errorf("%s: header %s is also set as %s (header names ignore case)", key, h, other)
		}
	}
	return nil
}

// checkName refuses a name (an observer's, an action's) that begins or
// ends with a space or holds a control character: names go into metrics
// labels, dedup keys and dead letters, where such a character is a
// mistake nobody can see.
func checkName(name string) error {
	switch {
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%q holds a control character (a tab?)", name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%q begins or ends with a space", name)
	}
	return nil
}
