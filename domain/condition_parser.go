package domain

import (
	"fmt"
	"strings"
)

// maxConditionDepth bounds the nesting of parentheses and '!' so that
// hostile conditions cannot exhaust the stack.
const maxConditionDepth = 64

// Grammar, lowest precedence first:
//
//	or      = and { "||" and }
//	and     = compare { "&&" compare }
//	compare = unary [ ( "==" | "!=" | ">" | "<" | ">=" | "<=" ) unary
//	                | "in" list ]
//	unary   = "!" unary | primary
//	primary = "(" or ")" | literal | name | name "(" [ literal { "," literal } ] ")"
//	list    = "[" [ literal { "," literal } ] "]"
//	literal = string | number | "true" | "false" | "null"
type parser struct {
	lex     lexer
	tok     token // the current token
	prevEnd int   // rune offset just past the last consumed token
	depth   int
	spans   map[condNode]span
}

// span is the rune range [start, end) of the source a node was compiled
// from.
type span struct{ start, end int }

// mark records the source range of n, from rune offset start to the end of
// the last consumed token; a node keeps the first (innermost) range.
func (p *parser) mark(n condNode, start int) condNode {
	if _, ok := p.spans[n]; !ok {
		p.spans[n] = span{start: start, end: p.prevEnd}
	}
	return n
}

// conditionFunc describes a built-in function.
type conditionFunc struct {
	usage string // for error messages
	test  changeTest
	arity int
	// changed is false for has_field, true for the field_changed family.
	changed bool
}

var conditionFuncs = map[string]conditionFunc{
	"has_field":          {usage: "has_field('field')", arity: 1},
	"field_changed":      {usage: "field_changed('field')", arity: 1, changed: true, test: changedAny},
	"field_changed_to":   {usage: "field_changed_to('field', value)", arity: 2, changed: true, test: changedTo},
	"field_changed_from": {usage: "field_changed_from('field', value)", arity: 2, changed: true, test: changedFrom},
}

func (p *parser) errorf(col int, format string, args ...any) *ConditionError {
	return &ConditionError{Column: col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) unexpected() *ConditionError {
	if op, ok := wordOperators[strings.ToLower(p.tok.text)]; ok && p.tok.kind != tokString {
		return p.errorf(p.tok.col, "unexpected %s (write %s)", p.tok.describe(), op)
	}
	return p.errorf(p.tok.col, "unexpected %s", p.tok.describe())
}

// wordOperators are operators other languages spell as words, with this
// language's spelling.
var wordOperators = map[string]string{"and": "&&", "or": "||", "not": "!"}

// advance moves to the next token.
func (p *parser) advance() *ConditionError {
	end := p.lex.pos // just past the current token
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.prevEnd = end
	p.tok = t
	return nil
}

// parse compiles the whole input.
func (p *parser) parse() (condNode, *ConditionError) {
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return nil, p.errorf(1, "empty condition")
	}
	n, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.unexpected()
	}
	return n, nil
}

// enter counts one level of nesting at the current token.
func (p *parser) enter() *ConditionError {
	p.depth++
	if p.depth > maxConditionDepth {
		return p.errorf(p.tok.col, "condition nested deeper than %d levels", maxConditionDepth)
	}
	return nil
}

func (p *parser) parseOr() (condNode, *ConditionError) {
	start := p.tok.col - 1
	first, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokOr {
		return first, nil
	}
	xs := []condNode{first}
	for p.tok.kind == tokOr {
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	return p.mark(&orNode{xs: xs}, start), nil
}

func (p *parser) parseAnd() (condNode, *ConditionError) {
	start := p.tok.col - 1
	first, err := p.parseCompare()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokAnd {
		return first, nil
	}
	xs := []condNode{first}
	for p.tok.kind == tokAnd {
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.parseCompare()
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	return p.mark(&andNode{xs: xs}, start), nil
}

var compareOps = map[tokenKind]compareOp{
	tokEq: opEq, tokNe: opNe, tokGt: opGt, tokLt: opLt, tokGe: opGe, tokLe: opLe,
}

func (p *parser) parseCompare() (condNode, *ConditionError) {
	start := p.tok.col - 1
	l, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	if p.tok.kind == tokIn {
		if err := p.advance(); err != nil {
			return nil, err
		}
		list, err := p.parseList()
		if err != nil {
			return nil, err
		}
		return p.mark(&inNode{x: l, list: list}, start), nil
	}
	op, ok := compareOps[p.tok.kind]
	if !ok {
		return l, nil
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	r, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	return p.mark(&compareNode{op: op, l: l, r: r}, start), nil
}

func (p *parser) parseUnary() (condNode, *ConditionError) {
	if p.tok.kind != tokNot {
		return p.parsePrimary()
	}
	start := p.tok.col - 1
	if err := p.enter(); err != nil {
		return nil, err
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	p.depth--
	return p.mark(&notNode{x: x}, start), nil
}

func (p *parser) parsePrimary() (condNode, *ConditionError) {
	t := p.tok
	switch {
	case t.kind == tokLParen:
		if err := p.enter(); err != nil {
			return nil, err
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind == tokRParen {
			return nil, p.unexpected()
		}
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			if p.tok.kind == tokEOF {
				return nil, p.errorf(p.tok.col, "missing ')' to close '(' at column %d", t.col)
			}
			return nil, p.errorf(p.tok.col, "expected ')' to close '(' at column %d, got %s", t.col, p.tok.describe())
		}
		p.depth--
		return n, p.advance()
	case t.isLiteral():
		if err := p.advance(); err != nil {
			return nil, err
		}
		return p.mark(&literalNode{v: t.literal()}, t.col-1), nil
	case t.kind == tokName:
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind == tokLParen {
			n, err := p.parseCall(t)
			if err != nil {
				return nil, err
			}
			return p.mark(n, t.col-1), nil
		}
		path, err := p.parsePath(t)
		if err != nil {
			return nil, err
		}
		return p.mark(&pathNode{path: path}, t.col-1), nil
	case t.kind == tokLBracket:
		return nil, p.errorf(t.col, "a list is only allowed after 'in'")
	default:
		return nil, p.unexpected()
	}
}

// parsePath compiles a name token as a Path. An unknown event field is
// reported at the field's column.
func (p *parser) parsePath(t token) (Path, *ConditionError) {
	path, err := ParsePath(t.text)
	if err != nil {
		col := t.col
		if rest, ok := strings.CutPrefix(t.text, "event."); ok && rest != "" && !strings.Contains(rest, ".") {
			col += len([]rune("event."))
		}
		return Path{}, p.errorf(col, "%v", err)
	}
	return path, nil
}

// parseList reads `[ literal, ... ]`; the current token must be '['.
func (p *parser) parseList() ([]any, *ConditionError) {
	open := p.tok
	if open.kind != tokLBracket {
		return nil, p.errorf(open.col, "expected '[' after 'in', got %s", open.describe())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	list := []any{}
	if p.tok.kind == tokRBracket {
		return list, p.advance()
	}
	for {
		if !p.tok.isLiteral() {
			if p.tok.kind == tokEOF {
				return nil, p.errorf(p.tok.col, "missing ']' to close '[' at column %d", open.col)
			}
			return nil, p.errorf(p.tok.col, "expected a literal in list, got %s", p.tok.describe())
		}
		list = append(list, p.tok.literal())
		if err := p.advance(); err != nil {
			return nil, err
		}
		switch p.tok.kind {
		case tokComma:
			if err := p.advance(); err != nil {
				return nil, err
			}
		case tokRBracket:
			return list, p.advance()
		case tokEOF:
			return nil, p.errorf(p.tok.col, "missing ']' to close '[' at column %d", open.col)
		default:
			return nil, p.errorf(p.tok.col, "expected ',' or ']' in list, got %s", p.tok.describe())
		}
	}
}

// parseCall reads a function call; name is the function's token and the
// current token is '('. Argument errors are reported at the function's
// column.
func (p *parser) parseCall(name token) (condNode, *ConditionError) {
	fn, ok := conditionFuncs[name.text]
	if !ok {
		return nil, p.errorf(name.col, "unknown function '%s' (known: has_field, field_changed, field_changed_to, field_changed_from)", name.text)
	}
	open := p.tok
	if err := p.advance(); err != nil {
		return nil, err
	}
	var args []token
	for p.tok.kind != tokRParen {
		if len(args) > 0 {
			if p.tok.kind != tokComma {
				if p.tok.kind == tokEOF {
					return nil, p.errorf(p.tok.col, "missing ')' to close '(' at column %d", open.col)
				}
				return nil, p.errorf(p.tok.col, "expected ',' or ')' in arguments of %s, got %s", name.text, p.tok.describe())
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
		}
		if p.tok.kind == tokEOF {
			return nil, p.errorf(p.tok.col, "missing ')' to close '(' at column %d", open.col)
		}
		if !p.tok.isLiteral() {
			return nil, p.errorf(name.col, "%s: argument %d must be a literal, got %s (usage: %s)", name.text, len(args)+1, p.tok.describe(), fn.usage)
		}
		args = append(args, p.tok)
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	if err := p.advance(); err != nil { // ')'
		return nil, err
	}
	if len(args) != fn.arity {
		return nil, p.errorf(name.col, "%s takes %d argument(s), got %d (usage: %s)", name.text, fn.arity, len(args), fn.usage)
	}
	if args[0].kind != tokString {
		return nil, p.errorf(name.col, "%s: the field must be a quoted string, got %s (usage: %s)", name.text, args[0].describe(), fn.usage)
	}
	field := args[0].val.(string)
	path, err := ParsePath(field)
	if err != nil {
		return nil, p.errorf(name.col, "%s: %v", name.text, err)
	}
	if path.Root != RootData || len(path.Segments) == 0 {
		return nil, p.errorf(name.col, "%s: the field must name a data field, got '%s'", name.text, field)
	}
	if !fn.changed {
		return &hasFieldNode{path: path}, nil
	}
	n := &changedNode{
		test:   fn.test,
		after:  path,
		before: Path{Root: RootBefore, Segments: path.Segments},
	}
	if fn.arity == 2 {
		n.want = args[1].literal()
	}
	return n, nil
}
