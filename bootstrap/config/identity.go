package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strings"
)

// actionIdentity derives the identity of an action that has no name from
// its configuration as written: the type and every key that is set.
// *_env keys count by the variable's name, never its value, and secret
// values never enter it (a signing secret counts only as set; a Slack
// webhook URL by its scheme and host; a URL without its user
// information and query values). So reordering the actions of a file
// changes no identity, rotating a secret keeps it, and any other edit
// makes a new action; batching (batch) is how the action delivers, not
// what, and does not count. The result reads "<type>-<8 hex digits>", e.g.
// "webhook-3f2a9c1e".
func actionIdentity(ac ActionConfig) string {
	v := reflect.ValueOf(ac)
	t := v.Type()
	keys := map[string]any{}
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("koanf")
		f := v.Field(i)
		if key == "" || key == "name" || key == "batch" || f.IsZero() {
			continue
		}
		keys[key] = identityValue(key, f.Interface())
	}
	b, err := json.Marshal(keys) // map keys are sorted
	if err != nil {
		b = fmt.Appendf(nil, "%#v", keys) // params holding nan or inf: fmt sorts map keys too
	}
	sum := sha256.Sum256(b)
	return ac.Type + "-" + hex.EncodeToString(sum[:4])
}

// identityValue is what key's value contributes to an identity.
func identityValue(key string, v any) any {
	switch {
	case isSecretKey(key):
		return "(set)"
	case key == "webhook_url": // a Slack incoming-webhook URL: its path is the credential
		if s, ok := v.(string); ok {
			if u, err := url.Parse(s); err == nil {
				return u.Scheme + "://" + u.Host
			}
			return "(set)"
		}
	case key == "url":
		if s, ok := v.(string); ok {
			return urlForIdentity(s)
		}
	}
	return v
}

// isSecretKey reports keys whose values are secrets given directly.
func isSecretKey(key string) bool {
	if strings.HasSuffix(key, "_env") {
		return false
	}
	for _, w := range []string{"secret", "password", "token"} {
		if strings.Contains(key, w) {
			return true
		}
	}
	return false
}

// urlForIdentity drops user information and query values (they may carry
// credentials); the query's keys stay.
func urlForIdentity(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	u.User = nil
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{""}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
