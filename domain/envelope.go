package domain

import (
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Envelope is the event as sent to receivers (webhook default body, NATS
// payload, dead-letter record): exactly the bytes of json.Marshal(e).
func (e Event) Envelope() ([]byte, error) {
	return e.AppendEnvelope(make([]byte, 0, 256+e.estimateSize()))
}

// AppendEnvelope appends the Envelope to dst. The values decoded from JSON
// (maps, slices, strings, json.Number, booleans, nil) are written by
// appending bytes; an event holding anything else (or a json.Number that
// is not a number, which json.Marshal refuses) is encoded by json.Marshal,
// so the bytes and the errors are always json.Marshal's.
func (e Event) AppendEnvelope(dst []byte) ([]byte, error) {
	if out, ok := e.appendFast(dst); ok {
		return out, nil
	}
	b, err := json.Marshal(e)
	if err != nil { // no attempt can change that: permanent
		return dst, Permanent(fmt.Errorf("encode event %q as JSON: %w: %w", e.ID, err, ErrInvalidEvent))
	}
	return append(dst, b...), nil
}

// appendFast writes the fields in json.Marshal's order with its omit rules;
// ok is false when a value needs json.Marshal (dst is then unchanged in
// its first len(dst) bytes).
func (e *Event) appendFast(dst []byte) ([]byte, bool) {
	start := len(dst)
	var ok bool
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, e.ID)
	dst = append(dst, `,"event_type":`...)
	dst = appendJSONString(dst, string(e.EventType))
	dst = append(dst, `,"entity_type":`...)
	dst = appendJSONString(dst, e.EntityType)
	dst = append(dst, `,"entity_id":`...)
	dst = appendJSONString(dst, e.EntityID)
	dst = append(dst, `,"data":`...)
	if dst, ok = appendJSONObject(dst, e.Data); !ok {
		return dst[:start], false
	}
	if e.Before != nil { // omitzero: a nil map is left out, an empty one is {}
		dst = append(dst, `,"before":`...)
		if dst, ok = appendJSONObject(dst, e.Before); !ok {
			return dst[:start], false
		}
	}
	if e.Changes != nil {
		dst = append(dst, `,"changes":`...)
		if dst, ok = appendChanges(dst, e.Changes); !ok {
			return dst[:start], false
		}
	}
	if e.TenantID != "" {
		dst = append(dst, `,"tenant_id":`...)
		dst = appendJSONString(dst, e.TenantID)
	}
	if e.UserID != "" {
		dst = append(dst, `,"user_id":`...)
		dst = appendJSONString(dst, e.UserID)
	}
	dst = append(dst, `,"timestamp":"`...)
	ts, err := e.Timestamp.AppendText(dst) // MarshalJSON's form and errors
	if err != nil {
		return dst[:start], false
	}
	dst = ts
	dst = append(dst, '"')
	if e.Source != "" {
		dst = append(dst, `,"source":`...)
		dst = appendJSONString(dst, e.Source)
	}
	return append(dst, '}'), true
}

// estimateSize is a rough size of the values, to size the buffer once.
func (e *Event) estimateSize() int {
	n := len(e.ID) + len(e.EntityType) + len(e.EntityID) + len(e.TenantID) + len(e.UserID) + len(e.Source)
	return n + 32*(len(e.Data)+len(e.Before)+2*len(e.Changes))
}

// sortedKeys appends m's keys to buf and sorts them (json.Marshal's
// order); a caller passes a small array's slice to spare the allocation.
func sortedKeys[V any](m map[string]V, buf []string) []string {
	for k := range m {
		buf = append(buf, k)
	}
	slices.Sort(buf)
	return buf
}

func appendChanges(dst []byte, m map[string]Change) ([]byte, bool) {
	var small [16]string
	keys := sortedKeys(m, small[:0])
	dst = append(dst, '{')
	var ok bool
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		c := m[k]
		dst = append(dst, `:{"old":`...)
		if dst, ok = appendJSONValue(dst, c.Old); !ok {
			return dst, false
		}
		dst = append(dst, `,"new":`...)
		if dst, ok = appendJSONValue(dst, c.New); !ok {
			return dst, false
		}
		dst = append(dst, '}')
	}
	return append(dst, '}'), true
}

// appendJSONObject writes m as json.Marshal does: null for a nil map, keys
// sorted.
func appendJSONObject(dst []byte, m map[string]any) ([]byte, bool) {
	if m == nil {
		return append(dst, "null"...), true
	}
	var small [16]string
	keys := sortedKeys(m, small[:0])
	dst = append(dst, '{')
	var ok bool
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		if dst, ok = appendJSONValue(dst, m[k]); !ok {
			return dst, false
		}
	}
	return append(dst, '}'), true
}

// appendJSONValue writes the values JSON decoding yields; ok is false for
// anything else (json.Marshal writes those).
func appendJSONValue(dst []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case string:
		return appendJSONString(dst, x), true
	case json.Number:
		if x == "" {
			return append(dst, '0'), true // as json.Marshal
		}
		if !isJSONNumber(string(x)) {
			return dst, false // json.Marshal's error
		}
		return append(dst, x...), true
	case bool:
		if x {
			return append(dst, "true"...), true
		}
		return append(dst, "false"...), true
	case map[string]any:
		return appendJSONObject(dst, x)
	case []any:
		if x == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '[')
		var ok bool
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, ok = appendJSONValue(dst, e); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	default:
		return dst, false
	}
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s quoted as json.Marshal does (HTML-safe: <, >
// and & escaped; invalid UTF-8 as \ufffd; U+2028 and U+2029 escaped).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// isJSONNumber reports whether s is a JSON number (RFC 8259's grammar),
// as json.Marshal checks a json.Number.
func isJSONNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		if s = s[1:]; s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			if s = s[1:]; s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
