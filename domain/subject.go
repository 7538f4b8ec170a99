package domain

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxSubjectBytes bounds a NATS subject well below the server's
// control-line limit (max_control_line, 4 KiB by default), which the
// server enforces by closing the connection.
const MaxSubjectBytes = 1024

// ValidSubject reports why s cannot be published to as a NATS subject:
// longer than MaxSubjectBytes, empty tokens, wildcards, white space or
// control characters.
func ValidSubject(s string) error {
	switch {
	case s == "":
		return errors.New("empty subject")
	case len(s) > MaxSubjectBytes:
		return fmt.Errorf("subject %s of %d bytes is longer than %d", QuoteSubject(s), len(s), MaxSubjectBytes)
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return fmt.Errorf("subject %q has an empty token", s)
		}
		for _, r := range tok {
			if r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
				return fmt.Errorf("subject %q contains %q", s, r)
			}
		}
	}
	return nil
}

// ValidSubjectTemplate reports why a subject template (a nats action's,
// whose placeholders each render one token: EscapeSubjectToken) could
// never render a subject that can be published to, from its own text:
// a wildcard, white space, an empty token. Each placeholder is checked
// as the one-token value "x"; a value that renders empty is the event's
// problem, found when it is sent.
func ValidSubjectTemplate(t *Template) error {
	if t.IsZero() {
		return errors.New("empty subject")
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.path != nil {
			b.WriteString("x")
		} else {
			b.WriteString(p.text)
		}
	}
	if err := ValidSubject(b.String()); err != nil {
		return fmt.Errorf("%q: %w (placeholders read as one token each)", t.src, err)
	}
	return nil
}

// QuoteSubject is subject s quoted for an error message, or its first
// bytes when it is too long to quote whole.
func QuoteSubject(s string) string {
	const keep = 64
	if len(s) <= keep {
		return fmt.Sprintf("%q", s)
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q…", s[:cut])
}
