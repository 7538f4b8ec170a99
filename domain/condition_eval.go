package domain

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
		return ValuesEqual(a, b)
	case opNe:
		return !ValuesEqual(a, b)
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
	return CompareNumbers(a, b)
}

// inNode is `x in [literals...]`.
type inNode struct {
	x    condNode
	list []any
}

func (n *inNode) truth(ev *Event) bool {
	v := n.x.value(ev)
	for _, item := range n.list {
		if ValuesEqual(v, item) {
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
	changed := hadOld != hasNew || (hadOld && !ValuesEqual(oldV, newV))
	if !changed {
		return false
	}
	switch n.test {
	case changedTo:
		return ValuesEqual(newV, n.want)
	case changedFrom:
		return ValuesEqual(oldV, n.want)
	default:
		return true
	}
}

func (n *changedNode) value(ev *Event) any { return n.truth(ev) }
