package domain

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// condEvent builds an event from JSON data and an optional JSON pre-image;
// an UPDATE with a pre-image gets its changes computed.
func condEvent(t testing.TB, typ EventType, data, before string) *Event {
	t.Helper()
	d, err := DecodeObject([]byte(data))
	if err != nil {
		t.Fatalf("decode data %s: %v", data, err)
	}
	ev := &Event{
		ID:         "3f0e8a52-0000-4000-8000-000000000001",
		EventType:  typ,
		EntityType: "Order",
		EntityID:   "o-1",
		Data:       d,
		Timestamp:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if before != "" {
		b, err := DecodeObject([]byte(before))
		if err != nil {
			t.Fatalf("decode before %s: %v", before, err)
		}
		ev.Before = b
		if typ == EventUpdate {
			ev.Changes = ComputeChanges(b, d)
		}
	}
	return ev
}

const (
	condUpdateData = `{
		"status": "shipped", "total": 100.00, "qty": 3, "neg": -1,
		"email": "a@example.com", "nickname": null,
		"customer": {"tier": "gold", "address": {"country": "FR"}},
		"is_active": true, "archived": false, "code": "100", "price": "abc",
		"tags": ["a", "b"], "quote": "it's \"x\"", "dir": "C:\\dir",
		"line": "a\nb\tc", "name": "Zoë", "prénom": "Zoë"
	}`
	condUpdateBefore = `{
		"status": "pending", "total": 100, "qty": 2, "neg": -1,
		"email": "a@example.com",
		"customer": {"tier": "silver", "address": {"country": "FR"}},
		"is_active": true, "archived": false, "code": "100", "price": "abc",
		"quote": "it's \"x\"", "dir": "C:\\dir", "line": "a\nb\tc",
		"name": "Zoë", "prénom": "Zoë", "removed": "x"
	}`
)

func condUpdateEvent(t testing.TB) *Event {
	t.Helper()
	ev := condEvent(t, EventUpdate, condUpdateData, condUpdateBefore)
	ev.TenantID = "t-1"
	ev.UserID = "u-1"
	ev.Source = "shop"
	return ev
}

func condInsertEvent(t testing.TB) *Event {
	t.Helper()
	return condEvent(t, EventInsert, `{"status": "pending", "total": 50}`, "")
}

func mustCompileCondition(t testing.TB, src string) *Condition {
	t.Helper()
	c, err := CompileCondition(src)
	if err != nil {
		t.Fatalf("CompileCondition(%q): %v", src, err)
	}
	return c
}

func TestConditionEval(t *testing.T) {
	t.Parallel()
	upd := condUpdateEvent(t)
	ins := condInsertEvent(t)
	ab := func(data string) *Event { return condEvent(t, EventInsert, data, "") }

	tests := []struct {
		name string
		cond string
		ev   *Event
		want bool
	}{
		// The original FraiseQL grammar.
		{"eq single quotes", `status == 'shipped'`, upd, true},
		{"eq double quotes", `status == "shipped"`, upd, true},
		{"eq other value", `status == 'pending'`, upd, false},
		{"ne", `status != 'shipped'`, upd, false},
		{"ne other value", `status != 'cancelled'`, upd, true},
		{"and both true", `total >= 100 && status != 'cancelled'`, upd, true},
		{"and one false", `total > 100 && status != 'cancelled'`, upd, false},
		{"and on insert", `total > 10 && status != 'cancelled'`, ins, true},
		{"or", `status == 'x' || qty == 3`, upd, true},
		{"or both false", `status == 'x' || qty == 4`, upd, false},
		{"has_field", `has_field('email')`, upd, true},
		{"has_field null value", `has_field('nickname')`, upd, true},
		{"has_field absent", `has_field('phone')`, upd, false},
		{"has_field nested", `has_field('customer.tier')`, upd, true},
		{"has_field nested absent", `has_field('customer.phone')`, upd, false},
		{"has_field through a string", `has_field('status.x')`, upd, false},
		{"has_field data prefix", `has_field('data.email')`, upd, true},
		{"field_changed", `field_changed('status')`, upd, true},
		{"field_changed without pre-image", `field_changed('status')`, ins, false},
		{"field_changed unchanged", `field_changed('email')`, upd, false},
		{"field_changed numerically equal", `field_changed('total')`, upd, false},
		{"field_changed number", `field_changed('qty')`, upd, true},
		{"field_changed nested", `field_changed('customer.tier')`, upd, true},
		{"field_changed nested unchanged", `field_changed('customer.address.country')`, upd, false},
		{"field_changed object", `field_changed('customer')`, upd, true},
		{"field_changed removed key", `field_changed('removed')`, upd, true},
		{"field_changed added key", `field_changed('tags')`, upd, true},
		{"field_changed absent on both sides", `field_changed('nothing')`, upd, false},
		{"field_changed_to", `field_changed_to('status', 'shipped')`, upd, true},
		{"field_changed_to other value", `field_changed_to('status','pending')`, upd, false},
		{"field_changed_to without pre-image", `field_changed_to('status', 'pending')`, ins, false},
		{"field_changed_to number", `field_changed_to('qty', 3)`, upd, true},
		{"field_changed_to number numerically", `field_changed_to('qty', 3.00)`, upd, true},
		{"field_changed_to string vs number", `field_changed_to('qty', '3')`, upd, false},
		{"field_changed_to removed is null", `field_changed_to('removed', null)`, upd, true},
		{"field_changed_to unchanged", `field_changed_to('email', 'a@example.com')`, upd, false},
		{"field_changed_from", `field_changed_from('status','pending')`, upd, true},
		{"field_changed_from other value", `field_changed_from('status', 'shipped')`, upd, false},
		{"field_changed_from number", `field_changed_from('qty', 2)`, upd, true},
		{"field_changed_from added is null", `field_changed_from('tags', null)`, upd, true},
		{"field_changed_from nested", `field_changed_from('customer.tier', 'silver')`, upd, true},
		{"not or: a is 1, b true", `!(a == 1) || b`, ab(`{"a": 1, "b": true}`), true},
		{"not or: a is 1, b false", `!(a == 1) || b`, ab(`{"a": 1, "b": false}`), false},
		{"not or: a is 2, b false", `!(a == 1) || b`, ab(`{"a": 2, "b": false}`), true},
		{"combined", `status == 'shipped' && field_changed('status')`, upd, true},

		// Precedence.
		{"and binds tighter than or", `a == 1 || b == 2 && c == 3`, ab(`{"a": 1, "b": 0, "c": 0}`), true},
		{"parentheses override", `(a == 1 || b == 2) && c == 3`, ab(`{"a": 1, "b": 0, "c": 0}`), false},
		{"not binds tighter than comparison", `!a == false`, ab(`{"a": 1}`), false},
		{"not of parenthesised comparison", `!(a == false)`, ab(`{"a": 1}`), true},
		{"double not", `!!is_active`, upd, true},
		{"nested parentheses", `((((status == 'shipped'))))`, upd, true},
		{"comparison of comparisons", `(qty > 1) == true`, upd, true},

		// Dotted paths, pre-image, changes, metadata.
		{"dotted path", `customer.tier == 'gold'`, upd, true},
		{"data prefix", `data.customer.tier == 'gold'`, upd, true},
		{"deep path", `customer.address.country == 'FR'`, upd, true},
		{"deep missing path is null", `customer.missing.deep == null`, upd, true},
		{"path through a string is null", `status.length == null`, upd, true},
		{"before", `before.status == 'pending'`, upd, true},
		{"before nested", `before.customer.tier == 'silver'`, upd, true},
		{"before without pre-image is null", `before.status == null`, ins, true},
		{"changes old", `changes.status.old == 'pending'`, upd, true},
		{"changes new", `changes.status.new == 'shipped'`, upd, true},
		{"changes of unchanged field is null", `changes.total == null`, upd, true},
		{"changes of removed field", `changes.removed.new == null && changes.removed.old == 'x'`, upd, true},
		{"event.entity_type", `event.entity_type == 'Order'`, upd, true},
		{"event.event_type", `event.event_type == 'UPDATE'`, upd, true},
		{"event.tenant_id", `event.tenant_id == 't-1'`, upd, true},
		{"event.tenant_id empty is null", `event.tenant_id == null`, ins, true},
		{"event.entity_id", `event.entity_id == 'o-1'`, upd, true},
		{"event.source", `event.source == 'shop' && event.user_id == 'u-1'`, upd, true},
		{"event.timestamp", `event.timestamp == '2026-01-02T03:04:05Z'`, upd, true},

		// in.
		{"in", `status in ['paid', 'shipped']`, upd, true},
		{"in absent", `status in ['paid']`, upd, false},
		{"in empty list", `status in []`, upd, false},
		{"in numbers numerically", `qty in [1, 3.0]`, upd, true},
		{"in does not convert strings", `qty in ['3']`, upd, false},
		{"in null for null value", `nickname in [null]`, upd, true},
		{"in null for missing value", `missing in [null, 'x']`, upd, true},
		{"in mixed list", `event.entity_type in [1, 'Order', null, true]`, upd, true},
		{"not in", `!(status in ['shipped'])`, upd, false},
		{"not in absent", `!(status in ['paid', 'cancelled'])`, upd, true},
		{"in with and", `status in ['shipped'] && qty in [3]`, upd, true},

		// Numbers.
		{"100.00 == 100", `total == 100`, upd, true},
		{"100.00 == 100.00", `total == 100.00`, upd, true},
		{"exponent literal", `total == 1e2`, upd, true},
		{"upper-case exponent with sign", `total == 10000E-2`, upd, true},
		{"not approximately equal", `total == 100.0001`, upd, false},
		{"string '100' is not 100", `code == 100`, upd, false},
		{"string equals string", `code == '100'`, upd, true},
		{"number is not string", `total == '100'`, upd, false},
		{"literal '100' == 100", `'100' == 100`, upd, false},
		{"ge equal", `total >= 100`, upd, true},
		{"lt equal", `total < 100`, upd, false},
		{"le equal", `total <= 100`, upd, true},
		{"gt negative literal", `total > -3.5`, upd, true},
		{"gt fraction", `qty > 2.5`, upd, true},
		{"negative value", `neg < -0.5 && neg > -1.5`, upd, true},
		{"huge literal", `qty < 1e300`, upd, true},
		{"tiny literal", `qty > 1e-300`, upd, true},
		{"string vs number ordering is false", `price > 1`, upd, false},
		{"string vs number ordering is false both ways", `price < 1`, upd, false},
		{"literals compare", `2 > 1`, upd, true},

		// Strings.
		{"string ordering", `status > 'pending'`, upd, true},
		{"string ordering false", `status < 'a'`, upd, false},
		{"string literals ordering", `'b' >= 'a'`, upd, true},
		{"escaped single quote", `quote == 'it\'s "x"'`, upd, true},
		{"escaped double quote", `quote == "it's \"x\""`, upd, true},
		{"escaped backslash", `dir == 'C:\\dir'`, upd, true},
		{"escaped newline and tab", `line == 'a\nb\tc'`, upd, true},
		{"unicode value", `name == 'Zoë'`, upd, true},
		{"unicode name", `prénom == 'Zoë'`, upd, true},
		{"whitespace", "\t status=='shipped'&&qty==3 \n", upd, true},

		// Null and missing values.
		{"missing == null", `missing == null`, upd, true},
		{"null value == null", `nickname == null`, upd, true},
		{"null literal == null", `null == null`, upd, true},
		{"missing != null", `missing != null`, upd, false},
		{"present != null", `status != null`, upd, true},
		{"missing is not empty string", `missing == ''`, upd, false},
		{"missing is not false", `missing == false`, upd, false},
		{"missing ordering", `missing > 1`, upd, false},
		{"missing ordering reversed", `missing < 1`, upd, false},
		{"null ordering", `null <= 1`, upd, false},
		{"null ordering with null", `nickname >= null`, upd, false},
		{"missing ne value", `missing != 'x'`, upd, true},

		// Values used as booleans.
		{"true value", `is_active`, upd, true},
		{"true value in and", `is_active && status == 'shipped'`, upd, true},
		{"false value", `archived`, upd, false},
		{"negated false value", `!archived`, upd, true},
		{"missing value", `missing`, upd, false},
		{"negated missing value", `!missing`, upd, true},
		{"string value is not true", `status`, upd, false},
		{"string 'true' is not true", `'true'`, upd, false},
		{"number value is not true", `qty`, upd, false},
		{"null value is not true", `nickname`, upd, false},
		{"object value is not true", `customer`, upd, false},
		{"literal true", `true`, upd, true},
		{"literal false", `false`, upd, false},
		{"literal null", `null`, upd, false},
		{"boolean equality", `is_active == true && archived == false`, upd, true},
		{"boolean is not number", `is_active == 1`, upd, false},
		{"boolean ordering is false", `is_active > false`, upd, false},
		{"keyword prefix is a name", `trueish == null && data.in == null`, upd, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := mustCompileCondition(t, tt.cond)
			if got := c.Eval(tt.ev); got != tt.want {
				t.Errorf("%q.Eval() = %v, want %v", tt.cond, got, tt.want)
			}
			if c.Source() != tt.cond {
				t.Errorf("Source() = %q, want %q", c.Source(), tt.cond)
			}
		})
	}
}

func TestConditionEvalFloatData(t *testing.T) {
	t.Parallel()
	// Events built in code may hold float64 and int values.
	ev := &Event{Data: map[string]any{"f": 2.5, "i": 3, "inf": 0.0}}
	tests := []struct {
		cond string
		want bool
	}{
		{`f == 2.5`, true},
		{`f > 2`, true},
		{`i == 3.0`, true},
		{`i in [1, 3]`, true},
		{`inf == 0`, true},
	}
	for _, tt := range tests {
		t.Run(tt.cond, func(t *testing.T) {
			t.Parallel()
			if got := mustCompileCondition(t, tt.cond).Eval(ev); got != tt.want {
				t.Errorf("%q.Eval() = %v, want %v", tt.cond, got, tt.want)
			}
		})
	}
}

func TestCompileConditionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		src     string
		col     int
		mention string
	}{
		{`status == `, 11, "unexpected end of condition"},
		{`foo(1)`, 1, "unknown function 'foo'"},
		{`status == 'x' && foo()`, 18, "unknown function 'foo'"},
		{`customer.tier(1)`, 1, "unknown function"},
		{`a == 'x`, 6, "unterminated string"},
		{`a == "x\"`, 6, "unterminated string"},
		{`a == 'x\`, 6, "unterminated string"},
		{`'abc\q'`, 5, `invalid escape '\q'`},
		{``, 1, "empty condition"},
		{"   ", 1, "empty condition"},
		{`(a == 1`, 8, "missing ')' to close '(' at column 1"},
		{`(a == 1 b`, 9, "expected ')'"},
		{`a == 1)`, 7, "unexpected ')'"},
		{`a == 1 b`, 8, "unexpected 'b'"},
		{`a == 1 and b == 2`, 8, "unexpected 'and' (write &&)"},
		{`a == 1 OR b == 2`, 8, "unexpected 'OR' (write ||)"},
		{`a == b == c`, 8, "unexpected '=='"},
		{`a in [1, 2`, 11, "missing ']' to close '[' at column 6"},
		{`a in [1,`, 9, "missing ']'"},
		{`a in [1 2]`, 9, "expected ',' or ']'"},
		{`a in [1,]`, 9, "expected a literal"},
		{`a in [b]`, 7, "expected a literal"},
		{`a in [[1]]`, 7, "expected a literal"},
		{`a in 1`, 6, "expected '['"},
		{`a in`, 5, "expected '['"},
		{`[1] == a`, 1, "only allowed after 'in'"},
		{`a == [1]`, 6, "only allowed after 'in'"},
		{`a == 1.`, 6, "bad number '1.'"},
		{`a == 1e`, 6, "bad number"},
		{`a == 1e+`, 6, "bad number"},
		{`a == 12abc`, 6, "bad number '12abc'"},
		{`a == 1.2.3`, 6, "bad number '1.2.3'"},
		{`a == 1e5000`, 6, "bad number"},
		{`a == 1e99999999999999999999`, 6, "bad number"},
		{`a == -`, 6, "unexpected character '-'"},
		{`a == - 1`, 6, "unexpected character '-'"},
		{`a == .5`, 6, "unexpected character '.'"},
		{`a = 1`, 3, "'=='"},
		{`a & b`, 3, "'&&'"},
		{`a | b`, 3, "'||'"},
		{`a == @`, 6, "unexpected character '@'"},
		{`()`, 2, "unexpected ')'"},
		{`!`, 2, "unexpected end of condition"},
		{`a &&`, 5, "unexpected end of condition"},
		{`&& a`, 1, "unexpected '&&'"},
		{`a || || b`, 6, "unexpected '||'"},
		{`a == in`, 6, "unexpected 'in'"},
		{`event.foo == 1`, 7, `unknown event field "foo"`},
		{`x && event.nope`, 12, `unknown event field "nope"`},
		{`event == 1`, 1, "event."},
		{`event.id.x == 1`, 1, "event."},
		{`a..b == 1`, 1, "empty segment"},
		{`a. == 1`, 1, "empty segment"},
		{`has_field()`, 1, "has_field takes 1 argument(s), got 0"},
		{`has_field('a', 'b')`, 1, "takes 1 argument(s), got 2"},
		{`has_field(email)`, 1, "argument 1 must be a literal, got 'email'"},
		{`has_field(1)`, 1, "must be a quoted string"},
		{`has_field(null)`, 1, "must be a quoted string"},
		{`has_field('')`, 1, "empty segment"},
		{`has_field('a..b')`, 1, "empty segment"},
		{`has_field('before.x')`, 1, "must name a data field"},
		{`has_field('event.id')`, 1, "must name a data field"},
		{`has_field('data')`, 1, "must name a data field"},
		{`has_field('a' 'b')`, 15, "expected ',' or ')'"},
		{`has_field('a'`, 14, "missing ')' to close '(' at column 10"},
		{`has_field(`, 11, "missing ')'"},
		{`has_field('a',`, 15, "missing ')'"},
		{`field_changed_to('status')`, 1, "field_changed_to takes 2 argument(s), got 1"},
		{`x && field_changed_to(status, 'a')`, 6, "argument 1 must be a literal"},
		{`field_changed_from('status', ['a'])`, 1, "argument 2 must be a literal"},
		{`field_changed_from('status', other)`, 1, "argument 2 must be a literal"},
		{`field_changed('a', 1, 2)`, 1, "got 3"},
		{`field_changed(1)`, 1, "must be a quoted string"},
		{`prénom == 'x`, 11, "unterminated string"},
		{`'ü' == 'ä' && ö ==`, 19, "unexpected end of condition"},
		{strings.Repeat("(", 65) + "a" + strings.Repeat(")", 65), 65, "nested deeper than 64"},
		{strings.Repeat("!", 65) + "a", 65, "nested deeper than 64"},
		{strings.Repeat("!(", 33) + "a" + strings.Repeat(")", 33), 65, "nested deeper than 64"},
		{strings.Repeat("(", 100000), 65, "nested deeper than 64"},
	}
	for _, tt := range tests {
		name := tt.src
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := CompileCondition(tt.src)
			if err == nil {
				t.Fatalf("CompileCondition(%q) = %v, want an error", tt.src, c.Source())
			}
			var ce *ConditionError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is %T, want *ConditionError", err, err)
			}
			if ce.Column != tt.col {
				t.Errorf("CompileCondition(%q) column = %d, want %d (%v)", tt.src, ce.Column, tt.col, err)
			}
			if !strings.Contains(ce.Msg, tt.mention) {
				t.Errorf("CompileCondition(%q) message %q does not mention %q", tt.src, ce.Msg, tt.mention)
			}
		})
	}
}

func TestConditionErrorString(t *testing.T) {
	t.Parallel()
	_, err := CompileCondition(`(a == )`)
	if err == nil {
		t.Fatal("want an error")
	}
	if got, want := err.Error(), "column 7: unexpected ')'"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestConditionNestingLimit(t *testing.T) {
	t.Parallel()
	ev := condEvent(t, EventInsert, `{"a": 1}`, "")
	tests := []struct {
		name    string
		src     string
		want    bool
		wantErr bool
	}{
		{name: "64 parentheses", src: strings.Repeat("(", 64) + "a == 1" + strings.Repeat(")", 64), want: true},
		{name: "65 parentheses", src: strings.Repeat("(", 65) + "a == 1" + strings.Repeat(")", 65), wantErr: true},
		{name: "64 nots", src: strings.Repeat("!", 64) + "a", want: false},
		{name: "64 nots and parentheses", src: strings.Repeat("!", 64) + "(a == 1)", wantErr: true},
		{name: "63 nots and parentheses", src: strings.Repeat("!", 63) + "(a == 1)", want: false},
		{name: "62 nots and parentheses", src: strings.Repeat("!", 62) + "(a == 1)", want: true},
		{name: "sequential parentheses do not add up", src: strings.Repeat("(a == 1) && ", 1000) + "(a == 1)", want: true},
		{name: "long or chain", src: strings.Repeat("a == 2 || ", 10000) + "a == 1", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := CompileCondition(tt.src)
			if tt.wantErr {
				var ce *ConditionError
				if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "nested deeper") {
					t.Fatalf("CompileCondition error = %v, want a nesting error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("CompileCondition: %v", err)
			}
			if got := c.Eval(ev); got != tt.want {
				t.Errorf("Eval() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConditionNilAndEmptyEvent(t *testing.T) {
	t.Parallel()
	var nilCond *Condition
	if !nilCond.Eval(condInsertEvent(t)) {
		t.Error("nil condition evaluated to false, want true")
	}
	if nilCond.Source() != "" {
		t.Errorf("nil condition Source() = %q, want empty", nilCond.Source())
	}
	tests := []struct {
		cond string
		want bool
	}{
		{`status == null`, true},
		{`has_field('status')`, false},
		{`field_changed('status')`, false},
		{`event.id == ''`, true},
		{`changes.x.old == null`, true},
		{`before == null`, true},
		{`!(x in [1])`, true},
	}
	for _, tt := range tests {
		t.Run(tt.cond, func(t *testing.T) {
			t.Parallel()
			c := mustCompileCondition(t, tt.cond)
			if got := c.Eval(nil); got != tt.want {
				t.Errorf("Eval(nil) = %v, want %v", got, tt.want)
			}
			if got := c.Eval(&Event{}); got != tt.want {
				t.Errorf("Eval(&Event{}) = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConditionConcurrentEval(t *testing.T) {
	t.Parallel()
	c := mustCompileCondition(t, `status in ['shipped', 'paid'] && field_changed_to('status', 'shipped') && total >= 100 && customer.tier == 'gold'`)
	upd := condUpdateEvent(t)
	ins := condInsertEvent(t)
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				ev, want := upd, true
				if (g+i)%2 == 0 {
					ev, want = ins, false
				}
				if got := c.Eval(ev); got != want {
					errs <- "concurrent Eval returned a wrong result"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestChangesPathsResolveLikeTheFullDiff checks Path.Resolve's direct
// reading of changes.<field>... against walking the whole diff as a map.
func TestChangesPathsResolveLikeTheFullDiff(t *testing.T) {
	t.Parallel()
	upd := condUpdateEvent(t)
	upd.Changes["nested"] = Change{Old: map[string]any{"k": json.Number("1")}, New: nil}
	evs := []*Event{upd, condInsertEvent(t), {}}
	for _, src := range []string{
		"changes.status.old", "changes.status.new", "changes.status.other", "changes.status",
		"changes.missing.old", "changes.nested.old.k", "changes.nested.old.k.x", "changes.nested.new.k",
		"changes", "status", "before.status", "event.id",
	} {
		p, err := ParsePath(src)
		if err != nil {
			t.Fatalf("ParsePath(%q): %v", src, err)
		}
		for i, ev := range evs {
			got, gotOK := p.Resolve(ev)
			want, wantOK := resolveViaFullDiff(p, ev)
			if gotOK != wantOK || !ValuesEqual(got, want) {
				t.Errorf("event %d: Path.Resolve(%s) = %v, %v; via the full diff = %v, %v", i, src, got, gotOK, want, wantOK)
			}
		}
	}
}

// resolveViaFullDiff is the reference: changes as one nested map.
func resolveViaFullDiff(p Path, ev *Event) (any, bool) {
	if p.Root != RootChanges {
		return p.Resolve(ev)
	}
	if ev.Changes == nil {
		return nil, false
	}
	m := make(map[string]any, len(ev.Changes))
	for k, c := range ev.Changes {
		m[k] = map[string]any{"old": c.Old, "new": c.New}
	}
	return resolveIn(m, p.Segments)
}

func TestConditionExplain(t *testing.T) {
	t.Parallel()
	upd := condUpdateEvent(t)
	c := mustCompileCondition(t, `status == 'shipped' && !(qty in [1, 2]) || field_changed_to('total', 5)`)
	want := []ConditionTrace{
		{Expr: `status == 'shipped' && !(qty in [1, 2]) || field_changed_to('total', 5)`, Column: 1, Depth: 0, Value: true},
		{Expr: `status == 'shipped' && !(qty in [1, 2])`, Column: 1, Depth: 1, Value: true},
		{Expr: `status == 'shipped'`, Column: 1, Depth: 2, Value: true},
		{Expr: `status`, Column: 1, Depth: 3, Value: "shipped"},
		{Expr: `!(qty in [1, 2])`, Column: 24, Depth: 2, Value: true},
		{Expr: `qty in [1, 2]`, Column: 26, Depth: 3, Value: false},
		{Expr: `qty`, Column: 26, Depth: 4, Value: json.Number("3")},
		{Expr: `field_changed_to('total', 5)`, Column: 44, Depth: 1, Value: false},
	}
	got := c.Explain(upd)
	if len(got) != len(want) {
		t.Fatalf("Explain() returned %d traces, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Expr != want[i].Expr || got[i].Column != want[i].Column || got[i].Depth != want[i].Depth || !ValuesEqual(got[i].Value, want[i].Value) {
			t.Errorf("trace %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	tests := []struct {
		name string
		c    *Condition
		want int
	}{
		{"nil condition", nil, 0},
		{"literal at the top", mustCompileCondition(t, `true`), 1},
		{"literals below the top are left out", mustCompileCondition(t, `1 == 1`), 1},
		{"unicode columns", mustCompileCondition(t, `'é' == prénom`), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.c.Explain(nil); len(got) != tt.want {
				t.Errorf("Explain(nil) = %+v, want %d traces", got, tt.want)
			}
		})
	}
	if got := mustCompileCondition(t, `'é' == prénom`).Explain(upd); got[1].Expr != "prénom" || got[1].Column != 8 {
		t.Errorf("Explain on unicode source = %+v, want prénom at column 8", got[1])
	}
}
