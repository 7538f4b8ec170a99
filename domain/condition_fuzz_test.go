package domain

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// condFuzzEvents are the events every compiled fuzz input is evaluated on:
// nil, empty, an insert, an update with pre-image and changes, and data
// holding every JSON kind including Go numbers built in code.
func condFuzzEvents(t testing.TB) []*Event {
	t.Helper()
	odd := condEvent(t, EventUpdate,
		`{"a": [1, [2, {"b": null}]], "n": -0.0, "big": 1e308, "s": "", "o": {}, "t": true}`,
		`{"a": "x", "n": 0, "big": "1e308", "o": {"k": 1}}`)
	odd.Data["f"] = 1.5
	odd.Data["i"] = 7
	return []*Event{nil, {}, condInsertEvent(t), condUpdateEvent(t), odd}
}

func FuzzCompileCondition(f *testing.F) {
	seeds := []string{
		`status == 'shipped'`,
		`total > 100 && status != 'cancelled'`,
		`has_field('email')`,
		`field_changed('status')`,
		`field_changed_to('status','shipped')`,
		`field_changed_from('status', 'pending')`,
		`!(a == 1) || b`,
		`customer.tier == "gold" && before.status == 'pending'`,
		`changes.status.old == 'pending' || event.entity_type == 'Order'`,
		`event.tenant_id != null && status in ['paid', 'shipped', 1, -2.5e3, null, true]`,
		`!(status in [])`,
		`total == 100.00 && qty >= 1e3 && neg < -3.5`,
		`'it\'s' == "a \"q\" \\ \n \t"`,
		`((a)) && !!b || c <= 'x'`,
		`a == 'x`,
		`status == `,
		`foo(1)`,
		`(a == 1`,
		`a in [1, 2`,
		`event.nope == 1`,
		`prénom == 'Zoë'`,
		`a == 1e5000`,
		"",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	events := condFuzzEvents(f)
	f.Fuzz(func(t *testing.T, src string) {
		c, err := CompileCondition(src)
		if err != nil {
			var ce *ConditionError
			if !errors.As(err, &ce) {
				t.Fatalf("CompileCondition(%q) error %T, want *ConditionError", src, err)
			}
			if ce.Column < 1 || ce.Column > utf8.RuneCountInString(src)+1 {
				t.Fatalf("CompileCondition(%q) column %d outside 1..%d", src, ce.Column, utf8.RuneCountInString(src)+1)
			}
			if ce.Msg == "" {
				t.Fatalf("CompileCondition(%q) error without message", src)
			}
			return
		}
		if c.Source() != src {
			t.Fatalf("Source() = %q, want %q", c.Source(), src)
		}
		// The negation compiles unless it exceeds the nesting limit, and
		// evaluates to the opposite on every event.
		neg, negErr := CompileCondition("!(" + src + ")")
		var ce *ConditionError
		if negErr != nil && (!errors.As(negErr, &ce) || !strings.Contains(ce.Msg, "nested deeper")) {
			t.Fatalf("%q compiles but its negation does not: %v", src, negErr)
		}
		for _, ev := range events {
			first := c.Eval(ev)
			if again := c.Eval(ev); again != first {
				t.Fatalf("Eval(%q) not deterministic: %v then %v", src, first, again)
			}
			if neg != nil && neg.Eval(ev) == first {
				t.Fatalf("Eval(%q) = %v and its negation agrees", src, first)
			}
			// Every traced sub-expression compiles on its own and
			// evaluates to the traced value used as a boolean.
			for i, tr := range c.Explain(ev) {
				if i == 0 && isTrue(tr.Value) != first {
					t.Fatalf("Explain(%q) top value %v, Eval %v", src, tr.Value, first)
				}
				sub, err := CompileCondition(tr.Expr)
				if err != nil {
					t.Fatalf("sub-expression %q of %q does not compile: %v", tr.Expr, src, err)
				}
				if got := sub.Eval(ev); got != isTrue(tr.Value) {
					t.Fatalf("sub-expression %q of %q: Eval %v, traced %v", tr.Expr, src, got, tr.Value)
				}
			}
		}
	})
}
