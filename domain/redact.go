package domain

import (
	"net/url"
	"strings"
	"unicode"
)

// URLRedacted is what RedactActionURL puts in place of a credential.
const URLRedacted = "redacted"

// RedactActionURL returns u, an action's URL, fit to show (a dry run, a
// printed configuration): the password, a token-like user name, every
// query value, a token-like query key without a value, every token-like
// path segment (TokenLike) and the fragment replaced by URLRedacted. Many receivers take their credential in the path (a
// Discord, Slack or Teams hook) or as the user name; words such as
// "hooks" or "orders" stay, so the URL can still be recognised. An
// unparsable u gives "(unparsable url)".
func RedactActionURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable url)"
	}
	if p.User != nil {
		name := p.User.Username()
		if TokenLike(name) {
			name = URLRedacted
		}
		if _, ok := p.User.Password(); ok {
			p.User = url.UserPassword(name, URLRedacted)
		} else {
			p.User = url.User(name)
		}
	}
	if p.RawQuery != "" {
		parts := strings.Split(p.RawQuery, "&")
		for i, part := range parts {
			k, _, hasValue := strings.Cut(part, "=")
			key, err := url.QueryUnescape(k)
			switch {
			case err != nil || !hasValue && TokenLike(key): // ?SECRET: the key is the credential
				parts[i] = URLRedacted
			default:
				parts[i] = k + "=" + URLRedacted
			}
		}
		p.RawQuery = strings.Join(parts, "&")
	}
	if p.Fragment != "" {
		p.Fragment, p.RawFragment = URLRedacted, ""
	}
	if p.Path != "" {
		segs := strings.Split(p.EscapedPath(), "/")
		changed := false
		for i, seg := range segs {
			if un, err := url.PathUnescape(seg); err == nil && TokenLike(un) {
				segs[i], changed = URLRedacted, true
			}
		}
		if changed {
			escaped := strings.Join(segs, "/")
			p.Path, _ = url.PathUnescape(escaped)
			p.RawPath = escaped
		}
	}
	return p.String()
}

// TokenLike reports whether a URL part may be a credential: 16 bytes or
// more, or 8 or more mixing letters and digits.
func TokenLike(seg string) bool {
	if len(seg) >= 16 {
		return true
	}
	if len(seg) < 8 {
		return false
	}
	return strings.ContainsAny(seg, "0123456789") && strings.IndexFunc(seg, unicode.IsLetter) >= 0
}
