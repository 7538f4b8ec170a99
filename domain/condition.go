package domain

import "fmt"

// Condition is a compiled observer condition. Safe for concurrent use.
//
// The language, a superset of FraiseQL's:
//
//   - comparisons `== != > < >= <=`, logic `&& || !` and parentheses;
//     precedence from highest: `!`, comparisons and `in`, `&&`, `||`;
//   - literals: 'single' or "double" quoted strings (escapes \\ \' \" \n \t),
//     numbers (42, -3.5, 1e3), true, false, null, and lists of literals
//     after `in`: `status in ['paid', 'shipped']`;
//   - names: a bare name or dotted path reads the event as Path does
//     (`status`, `customer.tier`, `before.status`, `changes.status.old`,
//     `event.entity_type`); a missing value is null;
//   - functions: has_field('f'), field_changed('f'),
//     field_changed_to('f', v), field_changed_from('f', v), where f is a
//     data path written as a string.
//
// Equality compares JSON values deeply and numbers numerically (100.00 ==
// 100, '100' != 100). Ordering compares two numbers or two strings; any
// other pairing is false. A value used as a boolean is true only when it is
// JSON true.
type Condition struct {
	src  string
	root condNode
}

// ConditionError is a compile error with the 1-based column (in runes) it
// refers to.
type ConditionError struct {
	Column int
	Msg    string
}

func (e *ConditionError) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

// CompileCondition parses src. The error, when not nil, is a
// *ConditionError.
func CompileCondition(src string) (*Condition, error) {
	p := parser{lex: lexer{src: []rune(src)}}
	root, err := p.parse()
	if err != nil {
		return nil, err
	}
	return &Condition{src: src, root: root}, nil
}

// Eval evaluates the condition against ev. A nil condition is true; a nil
// event is treated as an empty one.
func (c *Condition) Eval(ev *Event) bool {
	if c == nil {
		return true
	}
	if ev == nil {
		ev = &Event{}
	}
	return c.root.truth(ev)
}

// Source returns the condition as written.
func (c *Condition) Source() string {
	if c == nil {
		return ""
	}
	return c.src
}
