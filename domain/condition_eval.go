package domain

import (
	"cmp"
	"encoding/json"
)

// condNode is a compiled expression. Nodes are immutable after compilation,
// so a tree may be evaluated from many goroutines at once. Evaluation never
// fails: a missing value is null and an ill-typed operation is false.
type condNode interface {
	// value is the JSON value of the expression; boolean expressions
	// yield a bool.
	value(ev *Event) any
	// truth is the expression used as a boolean: only JSON true is true.
	truth(ev *Event) bool
}

// isTrue reports whether v is JSON true.
func isTrue(v any) bool {
	b, ok := v.(bool)
	return ok && b
}

// literalNode is a constant: a string, json.Number, bool or nil.
type literalNode struct{ v any }

func (n *literalNode) value(*Event) any  { return n.v }
func (n *literalNode) truth(*Event) bool { return isTrue(n.v) }

// pathNode reads a value of the event; a missing value is null.
type pathNode struct{ path Path }

func (n *pathNode) value(ev *Event) any {
	v, ok := n.path.Resolve(ev)
	if !ok {
		return nil
	}
	return v
}

func (n *pathNode) truth(ev *Event) bool { return isTrue(n.value(ev)) }

type notNode struct{ x condNode }

func (n *notNode) truth(ev *Event) bool { return !n.x.truth(ev) }
func (n *notNode) value(ev *Event) any  { return n.truth(ev) }

// andNode holds a whole `a && b && c` chain so that long chains do not
// deepen the tree.
type andNode struct{ xs []condNode }

func (n *andNode) truth(ev *Event) bool {
	for _, x := range n.xs {
		if !x.truth(ev) {
			return false
		}
	}
	return true
}

func (n *andNode) value(ev *Event) any { return n.truth(ev) }

type orNode struct{ xs []condNode }

func (n *orNode) truth(ev *Event) bool {
	for _, x := range n.xs {
		if x.truth(ev) {
			return true
		}
	}
	return false
}

func (n *orNode) value(ev *Event) any { return n.truth(ev) }

// compareOp is one of the comparison operators.
type compareOp int

const (
	opEq compareOp = iota
	opNe
	opGt
	opLt
	opGe
	opLe
)

type compareNode struct {
	op   compareOp
	l, r condNode
}

func (n *compareNode) truth(ev *Event) bool {
	a, b := n.l.value(ev), n.r.value(ev)
	switch n.op {
	case opEq:
		return valuesEqual(a, b)
	case opNe:
		return !valuesEqual(a, b)
	}
	c, ok := orderValues(a, b)
	if !ok {
		return false
	}
	switch n.op {
	case opGt:
		return c > 0
	case opLt:
		return c < 0
	case opGe:
		return c >= 0
	default: // opLe
		return c <= 0
	}
}

func (n *compareNode) value(ev *Event) any { return n.truth(ev) }

// orderValues orders two numbers numerically and two strings
// lexicographically; any other pairing is unordered.
func orderValues(a, b any) (int, bool) {
	if as, ok := a.(string); ok {
		bs, ok := b.(string)
		if !ok {
			return 0, false
		}
		switch {
		case as < bs:
			return -1, true
		case as > bs:
			return 1, true
		}
		return 0, true
	}
	return compareNumbers(a, b)
}

// inNode is `x in [literals...]`.
type inNode struct {
	x    condNode
	list []any
}

func (n *inNode) truth(ev *Event) bool {
	v := n.x.value(ev)
	for _, item := range n.list {
		if valuesEqual(v, item) {
			return true
		}
	}
	return false
}

func (n *inNode) value(ev *Event) any { return n.truth(ev) }

// hasFieldNode is has_field('f'): the data path exists, even when its value
// is null.
type hasFieldNode struct{ path Path }

func (n *hasFieldNode) truth(ev *Event) bool {
	_, ok := n.path.Resolve(ev)
	return ok
}

func (n *hasFieldNode) value(ev *Event) any { return n.truth(ev) }

// changeTest selects the field_changed family member.
type changeTest int

const (
	changedAny changeTest = iota
	changedTo
	changedFrom
)

// changedNode is field_changed('f'), field_changed_to('f', v) and
// field_changed_from('f', v). after reads f from the data and before reads
// the same segments from the pre-image.
type changedNode struct {
	test          changeTest
	after, before Path
	want          any
}

func (n *changedNode) truth(ev *Event) bool {
	if ev.Before == nil {
		return false
	}
	oldV, hadOld := n.before.Resolve(ev)
	newV, hasNew := n.after.Resolve(ev)
	changed := hadOld != hasNew || (hadOld && !valuesEqual(oldV, newV))
	if !changed {
		return false
	}
	switch n.test {
	case changedTo:
		return valuesEqual(newV, n.want)
	case changedFrom:
		return valuesEqual(oldV, n.want)
	default:
		return true
	}
}

func (n *changedNode) value(ev *Event) any { return n.truth(ev) }

// valuesEqual is ValuesEqual with an allocation-free path for the common
// scalar cases: two json.Numbers, a number against a non-number, two
// strings.
func valuesEqual(a, b any) bool {
	switch av := a.(type) {
	case json.Number:
		switch bv := b.(type) {
		case json.Number:
			if c, ok := compareDecimals(string(av), string(bv)); ok {
				return c == 0
			}
		case string, bool, nil:
			return false
		}
	case string:
		bv, ok := b.(string)
		return ok && av == bv
	}
	return ValuesEqual(a, b)
}

// compareNumbers is CompareNumbers with an allocation-free path for two
// json.Numbers.
func compareNumbers(a, b any) (int, bool) {
	if an, ok := a.(json.Number); ok {
		if bn, ok := b.(json.Number); ok {
			if c, ok := compareDecimals(string(an), string(bn)); ok {
				return c, true
			}
		}
	}
	return CompareNumbers(a, b)
}

// maxFastDecimalLen bounds the numbers compareDecimals accepts, so that it
// only decides cases math/big also parses (big.Rat refuses exponents beyond
// a million, which a number this short cannot reach).
const maxFastDecimalLen = 512

// decimal is a parsed JSON number: the value is
// sign × 0.d₁d₂…dₙ × 10^point, where the significant digits d have no
// leading or trailing zeros; zero has no digits.
type decimal struct {
	s        string
	neg      bool
	i0, i1   int // integer digits s[i0:i1]
	f0, f1   int // fraction digits s[f0:f1], empty when absent
	lead, n  int // significant digits are digit(lead) … digit(lead+n-1)
	point    int
	zero     bool
	intCount int
}

func (d *decimal) digit(k int) byte {
	if k < d.intCount {
		return d.s[d.i0+k]
	}
	return d.s[d.f0+k-d.intCount]
}

// parseDecimal parses -?digits(.digits)?([eE][+-]?digits)?; ok is false for
// anything else and for numbers longer than maxFastDecimalLen.
func parseDecimal(s string) (d decimal, ok bool) {
	if len(s) == 0 || len(s) > maxFastDecimalLen {
		return d, false
	}
	d.s = s
	i := 0
	if s[0] == '-' {
		d.neg = true
		i++
	}
	digits := func() (int, int) {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return start, i
	}
	if d.i0, d.i1 = digits(); d.i0 == d.i1 {
		return d, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if d.f0, d.f1 = digits(); d.f0 == d.f1 {
			return d, false
		}
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		e0, e1 := digits()
		if e0 == e1 {
			return d, false
		}
		for _, c := range s[e0:e1] {
			exp = exp*10 + int(c-'0')
			if exp > 10*maxFastDecimalLen {
				return d, false
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(s) {
		return d, false
	}
	d.intCount = d.i1 - d.i0
	total := d.intCount + d.f1 - d.f0
	lead := 0
	for lead < total && d.digit(lead) == '0' {
		lead++
	}
	if lead == total {
		d.zero = true
		return d, true
	}
	trail := total
	for d.digit(trail-1) == '0' {
		trail--
	}
	d.lead, d.n = lead, trail-lead
	d.point = d.intCount - lead + exp
	return d, true
}

// compareDecimals compares two JSON numbers exactly; ok is false when
// either is not a number parseDecimal accepts.
func compareDecimals(a, b string) (int, bool) {
	x, ok := parseDecimal(a)
	if !ok {
		return 0, false
	}
	y, ok := parseDecimal(b)
	if !ok {
		return 0, false
	}
	sign := func(d *decimal) int {
		switch {
		case d.zero:
			return 0
		case d.neg:
			return -1
		}
		return 1
	}
	sx, sy := sign(&x), sign(&y)
	if sx != sy || sx == 0 {
		return cmp.Compare(sx, sy), true
	}
	// Same sign, both non-zero: compare magnitudes, then apply the sign.
	mag := cmp.Compare(x.point, y.point)
	for k := 0; mag == 0 && k < min(x.n, y.n); k++ {
		mag = cmp.Compare(x.digit(x.lead+k), y.digit(y.lead+k))
	}
	if mag == 0 {
		mag = cmp.Compare(x.n, y.n)
	}
	return sx * mag, true
}
