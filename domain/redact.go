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
// query value and every token-like path segment (TokenLike) replaced by
// URLRedacted. Many receivers take their credential in the path (a
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
		q := p.Query()
		for k := range q {
			q[k] = []string{URLRedacted}
		}
		p.RawQuery = q.Encode()
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
