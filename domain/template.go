package domain

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

// Template is a compiled text with `{{ path }}` placeholders (see Path).
// Safe for concurrent use.
type Template struct {
	src   string
	parts []templatePart
}

type templatePart struct {
	text string
	path *Path
	// For a placeholder: where it sits when the template is read as JSON
	// (EscapeJSON). inString: inside a "..." string of the template's own
	// text; afterBackslash: right after an unfinished escape there.
	inString, afterBackslash bool
	// displayName: a placeholder of an address template (EscapeAddress)
	// in a display name's place: outside <...>, and the template's next
	// text other than spaces and placeholders is "<".
	displayName bool
}

// Escaping selects how placeholder values are written.
type Escaping int

// The escapings.
const (
	// EscapeNone writes values as FormatValue renders them.
	EscapeNone Escaping = iota
	// EscapeJSON renders a JSON text. A placeholder inside a string of the
	// template (`"{{ note }}"`, `"id-{{ id }}"`, a key) always yields string
	// content: a string value JSON-escaped, any other value its JSON text
	// (`{"a":1}`, `12.50`, `true`, `null`) escaped the same way, so event
	// data can neither end the string nor add keys. A placeholder outside
	// strings yields a JSON value: numbers and booleans as literals, objects
	// and arrays as JSON, null as `null`, and strings JSON-escaped without
	// quotes (write `"{{ name }}"` for a string). A placeholder right after
	// an unfinished backslash escape inside a string (`"C:\{{ dir }}"` as
	// written in the template) completes it as `\\`, a literal backslash.
	EscapeJSON
	// EscapeGlob writes values as EscapeNone does, with the glob
	// metacharacters * ? [ ] \ backslash-escaped, so event values match
	// only themselves in a Redis key pattern while the template's own text
	// keeps its wildcards.
	EscapeGlob
	// EscapeSubjectToken writes values as EscapeNone does with '.', '*',
	// '>', white space and control characters replaced by '_', so an event
	// value stays one token of a NATS subject.
	EscapeSubjectToken
	// EscapeSlack writes values as EscapeNone does with &, < and >
	// replaced by &amp; &lt; &gt; (Slack's message escaping), so event data
	// cannot mention (`<!channel>`) or disguise a link
	// (`<http://evil|click>`), while the template's own text keeps its
	// Slack markup.
	EscapeSlack
	// EscapeHTML writes values as EscapeNone does with & < > " and '
	// replaced by character references, so an event value is text in an
	// HTML document while the template's own markup stays markup.
	EscapeHTML
	// EscapeAddress renders an address list (an email's to_template): a
	// template that is one placeholder alone takes an array value as the
	// list (`["a@x.com", "b@y.com"]`) and a string value as one address
	// (its , and ; become spaces, so a value such as "me@x.com, you@y.com"
	// cannot add a recipient: it fails to parse); in any other template a
	// value has the list's structure characters (, ; < > " ( ) : \ and
	// control characters) replaced by spaces, and in a display name's
	// place (`{{ name }} <{{ email }}>`) also [ ] and @, so event data
	// cannot add a recipient or change the address, and a name such as
	// "ACME [EU]" stays a name.
	EscapeAddress
)

// CompileTemplate parses src. An unclosed `{{`, an empty placeholder or a
// path that can be known to be wrong (an unknown `event.` field) is an
// error naming the byte offset.
func CompileTemplate(src string) (*Template, error) {
	t := &Template{src: src}
	rest, offset := src, 0
	var js jsonScan
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, templatePart{text: rest})
			}
			markDisplayNames(t.parts)
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{text: rest[:i]})
			js.text(rest[:i])
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("template: unclosed {{ at offset %d", offset+i)
		}
		expr := strings.TrimSpace(rest[i+2 : i+j])
		if expr == "" {
			return nil, fmt.Errorf("template: empty placeholder at offset %d", offset+i)
		}
		p, err := ParsePath(expr)
		if err != nil {
			return nil, fmt.Errorf("template: placeholder at offset %d: %w", offset+i, err)
		}
		t.parts = append(t.parts, templatePart{path: &p, inString: js.inString, afterBackslash: js.escaped})
		js.escaped = false // the placeholder completes a pending escape
		offset += i + j + 2
		rest = rest[i+j+2:]
	}
}

// MustCompileTemplate is CompileTemplate for literals known to be valid.
func MustCompileTemplate(src string) *Template {
	t, err := CompileTemplate(src)
	if err != nil {
		panic(err)
	}
	return t
}

// Source returns the template text as written.
func (t *Template) Source() string {
	if t == nil {
		return ""
	}
	return t.src
}

// IsZero reports whether the template is absent or empty.
func (t *Template) IsZero() bool { return t == nil || t.src == "" }

// Render fills the placeholders from ev. Values that are missing render
// empty (under EscapeJSON outside a string, `null`, so that the document
// stays JSON) and are listed in missing so the caller can log them.
func (t *Template) Render(ev *Event, esc Escaping) (out string, missing []string) {
	if t == nil {
		return "", nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.path == nil {
			b.WriteString(p.text)
			continue
		}
		if esc == EscapeJSON && p.afterBackslash {
			b.WriteByte('\\')
		}
		v, ok := p.path.Resolve(ev)
		if !ok {
			missing = append(missing, p.path.String())
			if esc == EscapeJSON && !p.inString {
				b.WriteString("null")
			}
			continue
		}
		switch esc {
		case EscapeJSON:
			if p.inString {
				writeJSONStringContent(&b, jsonText(v))
			} else {
				writeJSONValue(&b, v)
			}
		case EscapeSlack:
			b.WriteString(SlackEscape(FormatValue(v)))
		case EscapeGlob:
			b.WriteString(GlobEscape(FormatValue(v)))
		case EscapeSubjectToken:
			b.WriteString(subjectToken(FormatValue(v)))
		case EscapeHTML:
			b.WriteString(htmlEscaper.Replace(FormatValue(v)))
		case EscapeAddress:
			switch x := v.(type) {
			case string:
				if len(t.parts) == 1 {
					b.WriteString(oneAddress(x))
				} else {
					b.WriteString(addressPart(x, p.displayName))
				}
			default:
				if len(t.parts) == 1 {
					b.WriteString(FormatValue(v)) // an array: the list
				} else {
					b.WriteString(addressPart(FormatValue(v), p.displayName))
				}
			}
		default:
			b.WriteString(FormatValue(v))
		}
	}
	return b.String(), missing
}

// jsonScan follows the template's own text as JSON far enough to know
// whether a position is inside a string.
type jsonScan struct {
	inString, escaped bool
}

func (s *jsonScan) text(t string) {
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case !s.inString:
			s.inString = c == '"'
		case s.escaped:
			s.escaped = false
		case c == '\\':
			s.escaped = true
		case c == '"':
			s.inString = false
		}
	}
}

// jsonText is a value's text inside a JSON string: a string as it is,
// null as "null", anything else as its JSON text.
func jsonText(v any) string {
	if v == nil {
		return "null"
	}
	return FormatValue(v)
}

// writeJSONStringContent writes s JSON-escaped, without the quotes.
func writeJSONStringContent(b *strings.Builder, s string) {
	enc, _ := json.Marshal(s) // a string always marshals
	b.Write(enc[1 : len(enc)-1])
}

func writeJSONValue(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		writeJSONStringContent(b, x)
	default:
		b.WriteString(FormatValue(x))
	}
}

// SlackEscape replaces &, < and > with &amp; &lt; &gt;, the three
// characters Slack reads as markup in message text.
func SlackEscape(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	return slackEscaper.Replace(s)
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// GlobEscape backslash-escapes the glob metacharacters * ? [ ] and \.
func GlobEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// HasGlob reports whether pattern contains an unescaped glob
// metacharacter (* ? or [).
func HasGlob(pattern string) bool {
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// GlobUnescape removes the backslash escapes of a pattern without
// wildcards, giving the literal key.
func GlobUnescape(pattern string) string {
	if !strings.Contains(pattern, `\`) {
		return pattern
	}
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '\\' && i+1 < len(pattern) {
			i++
		}
		b.WriteByte(pattern[i])
	}
	return b.String()
}

// htmlEscaper escapes the five characters html.EscapeString escapes.
var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")

// subjectToken makes s safe as one NATS subject token.
func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return '_'
		}
		return r
	}, s)
}

// addressPart replaces an address list's structure characters in s by
// spaces, and in a display name also those of an address (EscapeAddress).
func addressPart(s string, displayName bool) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || strings.ContainsRune(`,;<>"():\`, r) || displayName && strings.ContainsRune("[]@", r) {
			return ' '
		}
		return r
	}, s)
}

// oneAddress makes a string value one address at most: its list
// separators become spaces (EscapeAddress, a template that is one
// placeholder).
func oneAddress(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ',' || r == ';' {
			return ' '
		}
		return r
	}, s)
}

// markDisplayNames sets displayName on the placeholders of parts that sit
// in a display name's place: outside <...> (angle brackets counted in the
// template's text, from the last list separator), with "<" as the next
// text that is not a space or a placeholder.
func markDisplayNames(parts []templatePart) {
	inAngle := false
	for i := range parts {
		if parts[i].path == nil {
			for _, r := range parts[i].text {
				switch r {
				case '<':
					inAngle = true
				case '>', ',', ';':
					inAngle = false
				}
			}
			continue
		}
		if inAngle {
			continue
		}
	next:
		for _, q := range parts[i+1:] {
			if q.path != nil {
				continue
			}
			for _, r := range q.text {
				if !unicode.IsSpace(r) {
					parts[i].displayName = r == '<'
					break next
				}
			}
		}
	}
}
