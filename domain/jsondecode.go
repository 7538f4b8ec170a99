package domain

import (
	"bytes"
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
	m := map[string]any{}
	for more := p.open(); more; {
		k, v, _, next, ok := p.member()
		if !ok {
			return nil, false
		}
		m[k] = v
		more = next
	}
	return m, true
}

// open passes the '{' at p.i and the space after it: more reports a
// member to come (false after "{}").
func (p *jsonParser) open() (more bool) {
	p.i++ // {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return false
	}
	return true
}

// member parses `"key": value` at p.i and the ',' or '}' after it: more
// reports another member to come; raw is the value's literal.
func (p *jsonParser) member() (k string, v any, raw []byte, more, ok bool) {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", nil, nil, false, false
	}
	if k, ok = p.str(); !ok {
		return "", nil, nil, false, false
	}
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != ':' {
		return "", nil, nil, false, false
	}
	p.i++
	p.space()
	start := p.i
	if v, ok = p.value(); !ok {
		return "", nil, nil, false, false
	}
	raw = p.b[start:p.i]
	more, ok = p.next('}')
	return k, v, raw, more, ok
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

// decodeEventFast decodes an envelope as DecodeEvent's encoding/json
// decoder does, for the envelopes this service writes: an object whose
// keys are exactly Event's JSON names, each once, with values of their
// types (or null). ok is false for anything else (other or differently
// cased keys, a key twice, another type, a timestamp time does not
// parse): the caller then decodes with encoding/json, which has the last
// word.
func decodeEventFast(b []byte) (ev Event, ok bool) {
	p := jsonParser{b: b, s: string(b)}
	p.space()
	if p.i >= len(b) || b[p.i] != '{' {
		return Event{}, false
	}
	p.depth++
	var seen uint16
	for more := p.open(); more; {
		k, v, raw, next, ok := p.member()
		if !ok || k == "timestamp" && bytes.IndexByte(raw, '\\') >= 0 {
			// (time.Time decodes the literal as written: an escape fails it)
			return Event{}, false
		}
		bit, ok := ev.setField(k, v)
		if !ok || seen&bit != 0 {
			return Event{}, false
		}
		seen |= bit
		more = next
	}
	p.space()
	return ev, p.i == len(b)
}

// setField sets the field named k (its exact JSON name) to v, as
// encoding/json would; bit identifies the field. ok is false for another
// key or a value encoding/json would refuse or treat otherwise.
func (e *Event) setField(k string, v any) (bit uint16, ok bool) {
	str := func(dst *string) bool {
		switch v := v.(type) {
		case nil: // null leaves a string as it is
			return true
		case string:
			*dst = v
			return true
		}
		return false
	}
	obj := func(dst *map[string]any) bool {
		switch v := v.(type) {
		case nil:
			return true
		case map[string]any:
			*dst = v
			return true
		}
		return false
	}
	switch k {
	case "id":
		return 1 << 0, str(&e.ID)
	case "event_type":
		s := string(e.EventType)
		ok = str(&s)
		e.EventType = EventType(s)
		return 1 << 1, ok
	case "entity_type":
		return 1 << 2, str(&e.EntityType)
	case "entity_id":
		return 1 << 3, str(&e.EntityID)
	case "data":
		return 1 << 4, obj(&e.Data)
	case "before":
		return 1 << 5, obj(&e.Before)
	case "changes":
		return 1 << 6, e.setChanges(v)
	case "tenant_id":
		return 1 << 7, str(&e.TenantID)
	case "user_id":
		return 1 << 8, str(&e.UserID)
	case "timestamp":
		var s string
		if v == nil || !str(&s) {
			return 1 << 9, v == nil // null leaves the time as it is
		}
		return 1 << 9, e.Timestamp.UnmarshalJSON([]byte(`"`+s+`"`)) == nil
	case "source":
		return 1 << 10, str(&e.Source)
	}
	return 0, false
}

// setChanges sets Changes from v: null, or an object whose values are
// null or objects with the keys old and new (each at most once, as the
// parser's map holds).
func (e *Event) setChanges(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case map[string]any:
		out := make(map[string]Change, len(v))
		for k, c := range v {
			switch c := c.(type) {
			case nil:
				out[k] = Change{}
			case map[string]any:
				var ch Change
				for ck, cv := range c {
					switch ck {
					case "old":
						ch.Old = cv
					case "new":
						ch.New = cv
					default:
						return false
					}
				}
				out[k] = ch
			default:
				return false
			}
		}
		e.Changes = out
		return true
	}
	return false
}
