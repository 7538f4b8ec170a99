package webhook

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strings"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// This file removes a request's credentials from what a receiver echoes
// back (the delivery log's recorded answer, errors).

// echoSecrets are the credentials a request to rawURL with wh's headers
// carries (wh may be nil): headers_env values and header values whose
// names say they are credentials, "Bearer <token>"'s token alone, the
// URL's password (and the Basic-Auth header made of it), and the user
// name, query values and path segments that look like tokens (or whose
// query key names a credential; a Slack webhook's path is its
// credential), each also as the URL carries it encoded and with "/"
// escaped as JSON may write it. A receiver may echo any of them back in
// its answer, which goes to the delivery log, logs and dead letters:
// redactText removes them.
func echoSecrets(rawURL string, wh *domain.WebhookAction) []string {
	var secrets []string
	add := func(v string) {
		if len(v) < minEchoed {
			return
		}
		secrets = append(secrets, v)
		if strings.Contains(v, "/") {
			secrets = append(secrets, strings.ReplaceAll(v, "/", `\/`))
		}
		if fields := strings.Fields(v); len(fields) > 1 {
			for _, f := range fields {
				if len(f) >= minEchoed {
					secrets = append(secrets, f)
				}
			}
		}
	}
	if wh != nil {
		for _, v := range wh.SecretHeaders {
			add(v)
		}
		for k, v := range wh.Headers {
			if sensitiveHeader(k) {
				add(v)
			}
		}
	}
	if u, err := url.Parse(rawURL); err == nil {
		if u.User != nil {
			if name := u.User.Username(); domain.TokenLike(name) {
				add(name)
			}
			if pw, ok := u.User.Password(); ok {
				add(pw)
				add(base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + pw))) // the Basic-Auth header
			}
		}
		for seg := range strings.SplitSeq(strings.Trim(u.EscapedPath(), "/"), "/") {
			if un, err := url.PathUnescape(seg); err == nil && domain.TokenLike(un) {
				add(seg) // as sent
				add(un)
			} // else "hooks", "orders": words a receiver's message may use
		}
		for part := range strings.SplitSeq(u.RawQuery, "&") {
			k, raw, _ := strings.Cut(part, "=")
			key, _ := url.QueryUnescape(k)
			v, err := url.QueryUnescape(raw)
			if err != nil || !sensitiveHeader(key) && !domain.TokenLike(v) {
				continue // ?format=json, ?page=2: not credentials
			}
			add(raw) // as sent
			add(v)
		}
	}
	// Longest first, so that a secret containing another is removed whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(secrets)
}

// echoKey names the credentials of one configured URL and action (wh nil
// for a Slack URL).
type echoKey struct {
	url string
	wh  *domain.WebhookAction
}

// echoed is echoSecrets(rawURL, wh), worked out once per configured URL
// and action (wh is immutable once loaded).
func (e *Executor) echoed(rawURL string, wh *domain.WebhookAction) []string {
	k := echoKey{rawURL, wh}
	if s, ok := e.echoes.get(k); ok {
		return s
	}
	s := echoSecrets(rawURL, wh)
	e.echoes.put(k, s)
	return s
}

// redactText replaces every secret in s by "(redacted)"; when s was cut
// by a length limit (cut), a start of one (at least minEchoed bytes) that
// s ends with too.
func redactText(s string, secrets []string, cut bool) string {
	for _, v := range secrets {
		s = strings.ReplaceAll(s, v, redacted)
		if !cut {
			continue
		}
		for n := min(len(v)-1, len(s)); n >= minEchoed; n-- {
			if rest, ok := strings.CutSuffix(s, v[:n]); ok {
				s = rest + redacted
				break
			}
		}
	}
	return s
}
