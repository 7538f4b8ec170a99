package domain

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonBodyTemplates are webhook body templates with placeholders in every
// position a string can take (value, key, amid text, after escapes) and
// outside strings. want lists the body's keys; the value of "a", when
// wantA is set, is the text of v the placeholder must yield.
var jsonBodyTemplates = []struct {
	src   string
	keys  []string
	wantA func(v string) string
	// unquoted, when set, finds in "a" the value an unquoted {{ v }}
	// yields; only non-string values are tried there.
	unquoted func(a any) any
}{
	{src: `{"a":"{{ v }}","b":1}`, keys: []string{"a", "b"}, wantA: func(v string) string { return v }},
	{src: `{"a":"pre {{ v }} post","b":"{{ s }}"}`, keys: []string{"a", "b"}, wantA: func(v string) string { return "pre " + v + " post" }},
	{src: `{"a":"\"{{ v }}\"","b":["{{ v }}","{{ s }}"]}`, keys: []string{"a", "b"}, wantA: func(v string) string { return `"` + v + `"` }},
	{src: `{"a":"C:\{{ v }}","b":"\\{{ s }}"}`, keys: []string{"a", "b"}, wantA: func(v string) string { return `C:\` + v }},
	{src: `{"a":"{{ v }}{{ s }}{{ v }}","b":{"c":"{{ s }}"}}`, keys: []string{"a", "b"}},
	{src: `{"a":{{ v }},"b":"{{ s }}"}`, keys: []string{"a", "b"}, unquoted: func(a any) any { return a }},
	{src: `{"a":[{{ v }},"{{ v }}"],"b":true}`, keys: []string{"a", "b"}, unquoted: func(a any) any { return a.([]any)[0] }},
}

// FuzzJSONBodyTemplate renders any event value (v: any JSON value; s: any
// string) into JSON body templates: the body is always valid JSON with
// exactly the template's keys, and a quoted placeholder yields the value's
// text. Unquoted placeholders are checked with non-string values only (the
// documented form for a string is "{{ name }}").
func FuzzJSONBodyTemplate(f *testing.F) {
	for _, seed := range []struct{ v, s string }{
		{`"plain"`, "plain"},
		{`{"admin":true}`, `","admin":true,"x":"`},
		{`["a","b\""]`, `\`},
		{`12.50`, "\x00\u2028</script>"},
		{`null`, `"}`},
		{`true`, "\xff\xfe"},
		{`"\"},\"admin\":true,\"x\":{\""`, `\"`},
		{`-0.0e-7`, "{{ v }}"},
	} {
		f.Add(seed.v, seed.s)
	}
	compiled := make([]*Template, len(jsonBodyTemplates))
	for i, tt := range jsonBodyTemplates {
		compiled[i] = MustCompileTemplate(tt.src)
	}
	f.Fuzz(func(t *testing.T, vJSON, s string) {
		dec := json.NewDecoder(strings.NewReader(vJSON))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil || dec.More() {
			return
		}
		ev := &Event{ID: "e", EntityType: "T", Data: map[string]any{"v": v, "s": s}}
		_, vIsString := v.(string)
		for i, tt := range jsonBodyTemplates {
			if tt.unquoted != nil && vIsString {
				continue
			}
			out, missing := compiled[i].Render(ev, EscapeJSON)
			if len(missing) > 0 {
				t.Fatalf("%s: missing %v", tt.src, missing)
			}
			if !json.Valid([]byte(out)) {
				t.Fatalf("%s with v=%s s=%q: body is not JSON: %s", tt.src, vJSON, s, out)
			}
			body := map[string]any{}
			bdec := json.NewDecoder(bytes.NewReader([]byte(out)))
			bdec.UseNumber()
			if err := bdec.Decode(&body); err != nil {
				t.Fatalf("%s: body is not an object: %v: %s", tt.src, err, out)
			}
			keys := make([]string, 0, len(body))
			for k := range body {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tt.keys) {
				t.Fatalf("%s with v=%s s=%q: keys %v, want %v: %s", tt.src, vJSON, s, keys, tt.keys, out)
			}
			if tt.wantA != nil {
				want := tt.wantA(jsonText(v))
				if got, _ := body["a"].(string); got != want && utf8.ValidString(want) {
					t.Fatalf("%s with v=%s: a = %q, want %q", tt.src, vJSON, got, want)
				}
			}
			if tt.unquoted != nil {
				if got := tt.unquoted(body["a"]); !ValuesEqual(got, v) {
					t.Fatalf("%s with v=%s: yields %#v, want the value itself", tt.src, vJSON, got)
				}
			}
		}
	})
}
