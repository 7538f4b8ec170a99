package domain

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func templateTestEvent() *Event {
	return &Event{
		ID:         "ev-7",
		EventType:  EventInsert,
		EntityType: "Order",
		EntityID:   "o-7",
		Data: map[string]any{
			"status":   "new",
			"total":    num("12.50"),
			"paid":     false,
			"note":     "say \"hi\"\\now\nline2\ttab",
			"customer": map[string]any{"email": "a@example.com", "tier": "gold"},
			"items":    []any{num("1"), "two"},
			"nothing":  nil,
			"markup":   "<!channel> & <http://evil|click>",
		},
	}
}

func TestTemplateRender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		src         string
		esc         Escaping
		want        string
		wantMissing []string
	}{
		{name: "empty", src: "", want: ""},
		{name: "literal only", src: "plain text { } }}", want: "plain text { } }}"},
		{name: "placeholder with spaces", src: "status={{ status }}", want: "status=new"},
		{name: "placeholder without spaces", src: "status={{status}}!", want: "status=new!"},
		{name: "several placeholders", src: "{{status}}/{{ total }}/{{paid}}", want: "new/12.50/false"},
		{name: "nested path", src: "to {{ data.customer.email }} ({{customer.tier}})", want: "to a@example.com (gold)"},
		{name: "event metadata", src: "{{ event.entity_type }}:{{ event.entity_id }}:{{ event.event_type }}:{{ event.id }}", want: "Order:o-7:INSERT:ev-7"},
		{name: "object rendered as JSON", src: "{{ customer }}", want: `{"email":"a@example.com","tier":"gold"}`},
		{name: "null renders empty", src: "[{{ nothing }}]", want: "[]"},
		{name: "unset metadata renders empty", src: "[{{ event.tenant_id }}]", want: "[]"},
		{name: "missing values render empty and are reported", src: "a{{ missing }}b{{ customer.phone }}c{{ before.status }}d", want: "abcd", wantMissing: []string{"missing", "customer.phone", "before.status"}},
		{name: "none escaping writes strings raw", src: "{{ note }}", esc: EscapeNone, want: "say \"hi\"\\now\nline2\ttab"},
		{name: "json escapes quotes backslashes and newlines", src: `{"note":"{{ note }}"}`, esc: EscapeJSON, want: `{"note":"say \"hi\"\\now\nline2\ttab"}`},
		{name: "json writes numbers raw", src: `{"total":{{ total }}}`, esc: EscapeJSON, want: `{"total":12.50}`},
		{name: "json writes booleans raw", src: `{"paid":{{ paid }}}`, esc: EscapeJSON, want: `{"paid":false}`},
		{name: "json writes objects raw", src: `{"c":{{ customer }}}`, esc: EscapeJSON, want: `{"c":{"email":"a@example.com","tier":"gold"}}`},
		{name: "json writes arrays raw", src: `{"i":{{ items }}}`, esc: EscapeJSON, want: `{"i":[1,"two"]}`},
		{name: "json writes null", src: `{"n":{{ nothing }},"t":{{ event.tenant_id }}}`, esc: EscapeJSON, want: `{"n":null,"t":null}`},
		{name: "json missing value renders empty", src: `{"m":"{{ missing }}"}`, esc: EscapeJSON, want: `{"m":""}`, wantMissing: []string{"missing"}},
		{name: "json quoted object is a string", src: `{"c":"{{ customer }}"}`, esc: EscapeJSON, want: `{"c":"{\"email\":\"a@example.com\",\"tier\":\"gold\"}"}`},
		{name: "json quoted array is a string", src: `{"i":"{{ items }}"}`, esc: EscapeJSON, want: `{"i":"[1,\"two\"]"}`},
		{name: "json quoted number bool and null are strings", src: `{"t":"{{ total }}","p":"{{ paid }}","n":"{{ nothing }}"}`, esc: EscapeJSON, want: `{"t":"12.50","p":"false","n":"null"}`},
		{name: "json quoted with text around", src: `{"a":"{{ status }}: {{ customer }}!"}`, esc: EscapeJSON, want: `{"a":"new: {\"email\":\"a@example.com\",\"tier\":\"gold\"}!"}`},
		{name: "json placeholder as a key", src: `{"{{ customer }}":{{ total }}}`, esc: EscapeJSON, want: `{"{\"email\":\"a@example.com\",\"tier\":\"gold\"}":12.50}`},
		{name: "json escaped quote keeps the string open", src: `{"a":"say \"{{ items }}\"","b":{{ items }}}`, esc: EscapeJSON, want: `{"a":"say \"[1,\"two\"]\"","b":[1,"two"]}`},
		{name: "json escaped backslash closes the escape", src: `{"a":"\\","b":{{ items }}}`, esc: EscapeJSON, want: `{"a":"\\","b":[1,"two"]}`},
		{name: "json placeholder after a lone backslash", src: `{"p":"C:\{{ status }}"}`, esc: EscapeJSON, want: `{"p":"C:\\new"}`},
		{name: "json missing after a lone backslash", src: `{"p":"C:\{{ missing }}"}`, esc: EscapeJSON, want: `{"p":"C:\\"}`, wantMissing: []string{"missing"}},
		{name: "slack escapes markup in values only", src: "<!here> {{ markup }} <https://example.com|docs>", esc: EscapeSlack, want: "<!here> &lt;!channel&gt; &amp; &lt;http://evil|click&gt; <https://example.com|docs>"},
		{name: "slack leaves plain values alone", src: "{{ status }} {{ total }}", esc: EscapeSlack, want: "new 12.50"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tpl, err := CompileTemplate(tt.src)
			if err != nil {
				t.Fatalf("CompileTemplate(%q): %v", tt.src, err)
			}
			if tpl.Source() != tt.src {
				t.Errorf("Source() = %q, want %q", tpl.Source(), tt.src)
			}
			got, missing := tpl.Render(templateTestEvent(), tt.esc)
			if got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
			if !reflect.DeepEqual(missing, tt.wantMissing) {
				t.Errorf("missing = %q, want %q", missing, tt.wantMissing)
			}
		})
	}
}

func TestTemplateJSONEscapingProducesValidJSON(t *testing.T) {
	t.Parallel()
	tpl := MustCompileTemplate(`{"note":"{{ note }}","total":{{ total }},"c":{{ customer }},"n":{{ nothing }}}`)
	out, missing := tpl.Render(templateTestEvent(), EscapeJSON)
	if len(missing) != 0 {
		t.Fatalf("missing = %q", missing)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var got map[string]any
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("rendered body %q is not JSON: %v", out, err)
	}
	want := map[string]any{
		"note":  "say \"hi\"\\now\nline2\ttab",
		"total": num("12.50"),
		"c":     map[string]any{"email": "a@example.com", "tier": "gold"},
		"n":     nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded body = %#v, want %#v", got, want)
	}
}

func TestCompileTemplateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		src      string
		mentions []string
	}{
		{name: "unknown event field", src: "id={{ event.nope }}", mentions: []string{"offset 3", `unknown event field "nope"`}},
		{name: "unknown event field after another placeholder", src: "{{a}} and {{ event.bad }}", mentions: []string{"offset 10", "bad"}},
		{name: "unclosed", src: "hello {{ name", mentions: []string{"unclosed", "offset 6"}},
		{name: "unclosed after a placeholder", src: "{{ a }}xy{{ b", mentions: []string{"unclosed", "offset 9"}},
		{name: "empty placeholder", src: "x{{  }}", mentions: []string{"empty placeholder", "offset 1"}},
		{name: "empty path segment", src: "{{ customer..tier }}", mentions: []string{"offset 0", "empty segment"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tpl, err := CompileTemplate(tt.src)
			if err == nil {
				t.Fatalf("CompileTemplate(%q) = %v, want an error", tt.src, tpl)
			}
			for _, m := range tt.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestMustCompileTemplatePanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("MustCompileTemplate did not panic on an unclosed placeholder")
		}
	}()
	MustCompileTemplate("{{ x")
}

func TestNilAndEmptyTemplate(t *testing.T) {
	t.Parallel()
	var nilTpl *Template
	tests := []struct {
		name     string
		tpl      *Template
		wantZero bool
	}{
		{name: "nil", tpl: nilTpl, wantZero: true},
		{name: "empty", tpl: MustCompileTemplate(""), wantZero: true},
		{name: "text", tpl: MustCompileTemplate("x"), wantZero: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.tpl.IsZero(); got != tt.wantZero {
				t.Errorf("IsZero() = %v, want %v", got, tt.wantZero)
			}
		})
	}
	if out, missing := nilTpl.Render(templateTestEvent(), EscapeJSON); out != "" || missing != nil {
		t.Errorf("nil Render = %q, %q; want empty", out, missing)
	}
	if nilTpl.Source() != "" {
		t.Errorf("nil Source() = %q", nilTpl.Source())
	}
}

func TestEscapeSubjectToken(t *testing.T) {
	t.Parallel()
	ev := &Event{EntityType: "Order", Data: map[string]any{"v": "a.b *c>\td", "n": json.Number("1.5")}}
	got, missing := MustCompileTemplate("orders.{{ v }}.{{ n }}.{{ event.entity_type }}").Render(ev, EscapeSubjectToken)
	if want := "orders.a_b__c__d.1_5.Order"; got != want || len(missing) != 0 {
		t.Errorf("Render = %q %v, want %q", got, missing, want)
	}
}

func TestEscapeHTML(t *testing.T) {
	t.Parallel()
	ev := &Event{EntityType: "Order<1>", Data: map[string]any{
		"note":     `<script>alert("x")</script> & 'y'`,
		"n":        json.Number("1.5"),
		"customer": map[string]any{"name": "<b>"},
	}}
	tests := []struct {
		name, src, want string
	}{
		{"string value escaped, template markup kept", "<p>{{ note }}</p>", "<p>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;y&#39;</p>"},
		{"number as is", "<td>{{ n }}</td>", "<td>1.5</td>"},
		{"object as escaped JSON", "<pre>{{ customer }}</pre>", `<pre>{&#34;name&#34;:&#34;\u003cb\u003e&#34;}</pre>`},
		{"metadata escaped", "<h1>{{ event.entity_type }}</h1>", "<h1>Order&lt;1&gt;</h1>"},
		{"literal text not escaped", `<a href="x">&amp;</a>`, `<a href="x">&amp;</a>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, missing := MustCompileTemplate(tt.src).Render(ev, EscapeHTML)
			if got != tt.want || len(missing) != 0 {
				t.Errorf("Render = %q %v, want %q", got, missing, tt.want)
			}
		})
	}
}

// A missing value outside a JSON string renders null, so that the body
// stays JSON (inside a string it renders empty); both are reported.
func TestTemplateMissingValueKeepsJSON(t *testing.T) {
	t.Parallel()
	tmpl := MustCompileTemplate(`{"a": {{ nope }}, "b": "x{{ nope }}", "c": {{ id }}}`)
	out, missing := tmpl.Render(&Event{Data: map[string]any{"id": 7}}, EscapeJSON)
	if out != `{"a": null, "b": "x", "c": 7}` || len(missing) != 2 {
		t.Fatalf("Render = %s, missing %v; want null outside the string, empty inside, two missing", out, missing)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Errorf("the body is not JSON: %v", err)
	}
}
