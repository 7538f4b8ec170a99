package domain

import (
	"encoding/json"
	"unicode/utf8"
)

// maxJSONDepth is encoding/json's nesting limit; deeper input goes to the
// decoder, which refuses it.
const maxJSONDepth = 10000

// decodeObjectFast parses b, a JSON object with optional surrounding
// whitespace, into the values encoding/json yields with UseNumber (maps,
// slices, strings, json.Number, booleans, nil; the last of duplicate keys
// wins). ok is false for anything it does not accept, valid or not: the
// caller then decodes with encoding/json, which has the last word and the
// error messages.
func decodeObjectFast(b []byte) (map[string]any, bool) {
	m, _, ok := decodeObjectDepth(b)
	return m, ok
}

// decodeObjectDepth is decodeObjectFast that also reports how deep the
// object nests (1: no object or array inside).
func decodeObjectDepth(b []byte) (map[string]any, int, bool) {
	p := jsonParser{b: b, s: string(b)}
	p.space()
	if p.i >= len(b) || b[p.i] != '{' {
		return nil, 0, false
	}
	m, ok := p.object()
	if !ok {
		return nil, 0, false
	}
	p.space()
	return m, p.maxDepth, p.i == len(b)
}

// valueDepth is how deep v (as encoding/json decodes) nests: 0 for a
// scalar, 1 for an object or array of scalars.
func valueDepth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			d = max(d, valueDepth(e))
		}
	case []any:
		for _, e := range v {
			d = max(d, valueDepth(e))
		}
	default:
		return 0
	}
	return d + 1
}

type jsonParser struct {
	b        []byte
	s        string // b as a string, copied once: keys, strings and numbers are slices of it
	i        int
	depth    int
	maxDepth int // the deepest depth reached
}

func (p *jsonParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value() (any, bool) {
	p.space()
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		m, ok := p.object()
		return m, ok
	case c == '[':
		return p.array()
	case c == '"':
		s, ok := p.str()
		return s, ok
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	default:
		return nil, false
	}
}

func (p *jsonParser) literal(lit string) bool {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return false
	}
	p.i += len(lit)
	return true
}

// object parses from the '{' at p.i.
func (p *jsonParser) object() (map[string]any, bool) {
	if p.depth++; p.depth > maxJSONDepth {
		return nil, false
	}
	p.maxDepth = max(p.maxDepth, p.depth)
	defer func() { p.depth-- }()
	p.i++ // {
	m := map[string]any{}
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return m, true
	}
	for {
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, false
		}
		k, ok := p.str()
		if !ok {
			return nil, false
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, false
		}
		p.i++
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		m[k] = v
		if more, ok := p.next('}'); !ok {
			return nil, false
		} else if !more {
			return m, true
		}
	}
}

// next passes the ',' or the closing byte after a member or element:
// more is true after a ',', false after closing; ok is false for
// anything else.
func (p *jsonParser) next(closing byte) (more, ok bool) {
	p.space()
	if p.i >= len(p.b) {
		return false, false
	}
	switch p.b[p.i] {
	case ',':
		p.i++
		return true, true
	case closing:
		p.i++
		return false, true
	}
	return false, false
}

// array parses from the '[' at p.i.
func (p *jsonParser) array() (any, bool) {
	if p.depth++; p.depth > maxJSONDepth {
		return nil, false
	}
	p.maxDepth = max(p.maxDepth, p.depth)
	defer func() { p.depth-- }()
	p.i++ // [
	a := []any{}
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return a, true
	}
	for {
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
		if more, ok := p.next(']'); !ok {
			return nil, false
		} else if !more {
			return a, true
		}
	}
}

// str parses the string literal at p.i. A literal with escapes or invalid
// UTF-8 is unquoted by encoding/json itself.
func (p *jsonParser) str() (string, bool) {
	start := p.i
	p.i++ // "
	plain := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			if plain {
				return p.s[start+1 : p.i-1], true
			}
			lit := p.b[start:p.i]
			var s string
			if json.Unmarshal(lit, &s) != nil {
				return "", false
			}
			return s, true
		case c == '\\':
			plain = false
			p.i += 2 // the escaped byte cannot end the literal
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 {
				plain = false // encoding/json writes U+FFFD
			}
			p.i += size
		}
	}
	return "", false
}

// number parses a number per RFC 8259's grammar into a json.Number.
func (p *jsonParser) number() (any, bool) {
	b, start := p.b, p.i
	i := p.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, false
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, false
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	p.i = i
	return json.Number(p.s[start:i]), true
}
