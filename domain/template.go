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
}

// Escaping selects how placeholder values are written.
type Escaping int

// The escapings.
const (
	// EscapeNone writes values as FormatValue renders them.
	EscapeNone Escaping = iota
	// EscapeJSON writes strings JSON-escaped without surrounding quotes (so
	// `"{{ name }}"` stays a valid JSON string), numbers and booleans as
	// literals, objects and arrays as JSON and null as `null`.
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
	// EscapeHTML writes values as EscapeNone does with & < > " and '
	// replaced by character references, so an event value is text in an
	// HTML document while the template's own markup stays markup.
	EscapeHTML
)

// CompileTemplate parses src. An unclosed `{{`, an empty placeholder or a
// path that can be known to be wrong (an unknown `event.` field) is an
// error naming the byte offset.
func CompileTemplate(src string) (*Template, error) {
	t := &Template{src: src}
	rest, offset := src, 0
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, templatePart{text: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{text: rest[:i]})
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
		t.parts = append(t.parts, templatePart{path: &p})
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
// empty and are listed in missing so the caller can log them.
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
		v, ok := p.path.Resolve(ev)
		if !ok {
			missing = append(missing, p.path.String())
			continue
		}
		switch esc {
		case EscapeJSON:
			writeJSONValue(&b, v)
		case EscapeGlob:
			b.WriteString(GlobEscape(FormatValue(v)))
		case EscapeSubjectToken:
			b.WriteString(subjectToken(FormatValue(v)))
		case EscapeHTML:
			b.WriteString(htmlEscaper.Replace(FormatValue(v)))
		default:
			b.WriteString(FormatValue(v))
		}
	}
	return b.String(), missing
}

func writeJSONValue(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		enc, _ := json.Marshal(x) // a string always marshals
		b.Write(enc[1 : len(enc)-1])
	default:
		b.WriteString(FormatValue(x))
	}
}

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
