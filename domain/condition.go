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
	src   string
	root  condNode
	spans map[condNode]span
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
	p := parser{lex: lexer{src: []rune(src)}, spans: map[condNode]span{}}
	root, err := p.parse()
	if err != nil {
		return nil, err
	}
	return &Condition{src: src, root: root, spans: p.spans}, nil
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

// ConditionTrace is one sub-expression of a condition and its value on an
// event, as reported by Explain.
type ConditionTrace struct {
	Expr   string // the sub-expression as written
	Column int    // 1-based rune column of Expr in the source
	Depth  int    // 0 for the whole condition, 1 for its operands, ...
	Value  any    // a bool for predicates, the JSON value for names
}

// Explain evaluates every sub-expression of the condition on ev, in source
// order with the whole condition first, for dry runs and debugging. Unlike
// Eval it does not short-circuit; literals below the top are left out. A nil
// condition explains to nothing.
func (c *Condition) Explain(ev *Event) []ConditionTrace {
	if c == nil {
		return nil
	}
	if ev == nil {
		ev = &Event{}
	}
	src := []rune(c.src)
	var out []ConditionTrace
	var walk func(n condNode, depth int)
	walk = func(n condNode, depth int) {
		if _, lit := n.(*literalNode); lit && depth > 0 {
			return
		}
		sp := c.spans[n]
		out = append(out, ConditionTrace{
			Expr:   string(src[sp.start:sp.end]),
			Column: sp.start + 1,
			Depth:  depth,
			Value:  n.value(ev),
		})
		switch x := n.(type) {
		case *notNode:
			walk(x.x, depth+1)
		case *andNode:
			for _, y := range x.xs {
				walk(y, depth+1)
			}
		case *orNode:
			for _, y := range x.xs {
				walk(y, depth+1)
			}
		case *compareNode:
			walk(x.l, depth+1)
			walk(x.r, depth+1)
		case *inNode:
			walk(x.x, depth+1)
		}
	}
	walk(c.root, 0)
	return out
}
