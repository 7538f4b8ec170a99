package config

import (
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// Redacted replaces a secret in the effective configuration.
const Redacted = "(redacted)"

// Effective is the configuration the service runs with, as a tree of
// keys (the TOML keys) for printing: defaults, then the file, then the
// FRAISEQL_* variables, with the topology's defaults applied (and a
// batched action's batch defaults); observers holds those of the main file followed by those of observers_file.
// Secrets are redacted: values of keys naming a password, secret or token;
// the password and secret parameters of connection strings; every query
// value of an action URL; the path of a Slack webhook URL; header values
// whose names suggest credentials. *_env keys name variables and are kept.
// redactConn hides the password of a connection string (the adapters
// know their formats: bootstrap passes postgres.Redact).
func Effective(cfg Config, redactConn func(string) string) (map[string]any, error) {
	observers, err := LoadObserverConfigs(cfg)
	if err != nil {
		return nil, err
	}
	for i := range observers {
		observers[i].Actions = slices.Clone(observers[i].Actions) // the caller's configuration is left as it is
		for j, ac := range observers[i].Actions {
			if ac.Batch != nil { // the batch keys left out run with their defaults: show them
				b := ac.Batch.batching()
				observers[i].Actions[j].Batch = &BatchConfig{MaxEvents: &b.MaxEvents, MaxBytes: &b.MaxBytes, MaxWait: &b.MaxWait}
			}
		}
	}
	cfg.Observers = observers
	tree, _ := effective{redactConn: redactConn}.value(reflect.ValueOf(cfg), "", false).(map[string]any)
	return tree, nil
}

// effective converts a configuration into the printed tree.
type effective struct {
	redactConn func(string) string
}

// value converts v (found at key) into plain values, redacted.
// With sparse (observers: most keys belong to other action types) empty
// values are left out.
func (e effective) value(v reflect.Value, key string, sparse bool) any {
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return e.value(v.Elem(), key, sparse)
	case reflect.Struct:
		out := map[string]any{}
		t := v.Type()
		for i := range t.NumField() {
			tag := t.Field(i).Tag.Get("koanf")
			if tag == "" || tag == "-" || !t.Field(i).IsExported() {
				continue
			}
			fv := v.Field(i)
			if sparse && fv.IsZero() {
				continue
			}
			if val := e.value(fv, tag, sparse || tag == "observers"); val != nil {
				out[tag] = val
			}
		}
		return out
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return []any{}
		}
		out := make([]any, 0, v.Len())
		for i := range v.Len() {
			out = append(out, e.value(v.Index(i), key, sparse))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			name := fmt.Sprint(k)
			val := e.value(v.MapIndex(k), name, sparse)
			if key == "headers" && sensitiveName(name) {
				val = Redacted
			}
			out[name] = val
		}
		return out
	case reflect.String:
		return e.redactValue(key, v.String())
	default:
		return v.Interface()
	}
}

// redactValue hides what a string value of key may carry in secret.
func (e effective) redactValue(key, s string) string {
	switch {
	case s == "" || strings.HasSuffix(key, "_env"):
		return s
	case key == "webhook_url": // a Slack incoming-webhook URL: the path is the credential
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			return u.Scheme + "://" + u.Host + "/" + Redacted
		}
		return Redacted
	case key == "url" && isActionURL(s):
		return domain.RedactActionURL(s) // the path or user name may be the credential
	case key == "url" || strings.HasSuffix(key, "_url"):
		return e.redactConn(s)
	case sensitiveName(key):
		return Redacted
	}
	return s
}

// isActionURL reports whether s is an http(s) URL (a webhook's), whose
// every query value may be a credential.
func isActionURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// sensitiveName reports key or header names whose values are credentials.
func sensitiveName(name string) bool {
	n := strings.ToLower(name)
	if n == "authorization" || n == "proxy-authorization" || n == "cookie" {
		return true
	}
	for _, s := range []string{"password", "secret", "token", "key", "auth", "signature", "credential"} {
		if strings.Contains(n, s) && !strings.HasSuffix(n, "_env") && !strings.HasSuffix(n, "key_prefix") && n != "key_pattern" {
			return true
		}
	}
	return false
}
