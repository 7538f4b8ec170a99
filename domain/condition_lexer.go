package domain

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// tokenKind classifies the tokens of the condition language.
type tokenKind int

const (
	tokEOF tokenKind = iota
	tokName
	tokString
	tokNumber
	tokTrue
	tokFalse
	tokNull
	tokIn
	tokEq
	tokNe
	tokGt
	tokLt
	tokGe
	tokLe
	tokAnd
	tokOr
	tokNot
	tokLParen
	tokRParen
	tokLBracket
	tokRBracket
	tokComma
)

// token is one lexeme. col is the 1-based rune column of its first rune;
// text is the source as written; val holds the decoded value of string
// (string) and number (json.Number) literals.
type token struct {
	kind tokenKind
	col  int
	text string
	val  any
}

// isLiteral reports whether the token is a scalar literal.
func (t token) isLiteral() bool {
	switch t.kind {
	case tokString, tokNumber, tokTrue, tokFalse, tokNull:
		return true
	}
	return false
}

// literal returns the JSON value of a scalar literal token.
func (t token) literal() any {
	switch t.kind {
	case tokTrue:
		return true
	case tokFalse:
		return false
	case tokNull:
		return nil
	}
	return t.val
}

// describe renders the token for error messages.
func (t token) describe() string {
	if t.kind == tokEOF {
		return "end of condition"
	}
	return "'" + t.text + "'"
}

// maxNumberExponent bounds the decimal exponent of number literals so that
// comparing against them stays cheap.
const maxNumberExponent = 1000

var keywords = map[string]tokenKind{
	"true":  tokTrue,
	"false": tokFalse,
	"null":  tokNull,
	"in":    tokIn,
}

// lexer turns a condition into tokens on demand.
type lexer struct {
	src []rune
	pos int // index into src of the next rune to read
}

func (l *lexer) errorf(pos int, format string, args ...any) *ConditionError {
	return &ConditionError{Column: pos + 1, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) peekRune(off int) (rune, bool) {
	if i := l.pos + off; i < len(l.src) {
		return l.src[i], true
	}
	return 0, false
}

// next returns the next token, or a *ConditionError for input that is not
// a token.
func (l *lexer) next() (token, *ConditionError) {
	for l.pos < len(l.src) && unicode.IsSpace(l.src[l.pos]) {
		l.pos++
	}
	start := l.pos
	if start >= len(l.src) {
		return token{kind: tokEOF, col: start + 1}, nil
	}
	r := l.src[start]
	tok := func(kind tokenKind, n int) (token, *ConditionError) {
		l.pos += n
		return token{kind: kind, col: start + 1, text: string(l.src[start:l.pos])}, nil
	}
	next, _ := l.peekRune(1)
	switch {
	case r == '(':
		return tok(tokLParen, 1)
	case r == ')':
		return tok(tokRParen, 1)
	case r == '[':
		return tok(tokLBracket, 1)
	case r == ']':
		return tok(tokRBracket, 1)
	case r == ',':
		return tok(tokComma, 1)
	case r == '=' && next == '=':
		return tok(tokEq, 2)
	case r == '=':
		return token{}, l.errorf(start, "unexpected '=' (use '==' to compare)")
	case r == '!' && next == '=':
		return tok(tokNe, 2)
	case r == '!':
		return tok(tokNot, 1)
	case r == '>' && next == '=':
		return tok(tokGe, 2)
	case r == '>':
		return tok(tokGt, 1)
	case r == '<' && next == '=':
		return tok(tokLe, 2)
	case r == '<':
		return tok(tokLt, 1)
	case r == '&' && next == '&':
		return tok(tokAnd, 2)
	case r == '&':
		return token{}, l.errorf(start, "unexpected '&' (use '&&')")
	case r == '|' && next == '|':
		return tok(tokOr, 2)
	case r == '|':
		return token{}, l.errorf(start, "unexpected '|' (use '||')")
	case r == '\'' || r == '"':
		return l.lexString()
	case isDigit(r) || (r == '-' && isDigit(next)):
		return l.lexNumber()
	case isNameStart(r):
		for l.pos < len(l.src) && isNamePart(l.src[l.pos]) {
			l.pos++
		}
		text := string(l.src[start:l.pos])
		kind, ok := keywords[text]
		if !ok {
			kind = tokName
		}
		return token{kind: kind, col: start + 1, text: text}, nil
	default:
		return token{}, l.errorf(start, "unexpected character %q", r)
	}
}

// lexString reads a quoted string; the quote it starts with ends it.
func (l *lexer) lexString() (token, *ConditionError) {
	start := l.pos
	quote := l.src[start]
	var b strings.Builder
	for i := start + 1; i < len(l.src); i++ {
		r := l.src[i]
		switch r {
		case quote:
			l.pos = i + 1
			s := b.String()
			return token{kind: tokString, col: start + 1, text: string(l.src[start:l.pos]), val: s}, nil
		case '\\':
			if i+1 >= len(l.src) {
				return token{}, l.errorf(start, "unterminated string")
			}
			i++
			switch e := l.src[i]; e {
			case '\\', '\'', '"':
				b.WriteRune(e)
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				return token{}, l.errorf(i-1, "invalid escape '\\%c' in string", e)
			}
		default:
			b.WriteRune(r)
		}
	}
	return token{}, l.errorf(start, "unterminated string")
}

// lexNumber reads a number literal: an optional '-', digits, an optional
// fraction and an optional exponent. Letters, digits and dots that follow
// are taken in so that `12abc` or `1.2.3` are reported as one bad number.
func (l *lexer) lexNumber() (token, *ConditionError) {
	start := l.pos
	l.pos++ // the first digit or '-'
	for l.pos < len(l.src) {
		r := l.src[l.pos]
		prev := l.src[l.pos-1]
		if isNamePart(r) || ((r == '+' || r == '-') && (prev == 'e' || prev == 'E')) {
			l.pos++
			continue
		}
		break
	}
	text := string(l.src[start:l.pos])
	if !validNumber(text) {
		return token{}, l.errorf(start, "bad number '%s'", text)
	}
	return token{kind: tokNumber, col: start + 1, text: text, val: json.Number(text)}, nil
}

// validNumber checks -?digits(.digits)?([eE][+-]?digits)? with a bounded
// exponent.
func validNumber(s string) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expStart := i
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
		exp, err := strconv.Atoi(s[expStart:i])
		if err != nil || exp > maxNumberExponent || exp < -maxNumberExponent {
			return false
		}
	}
	return i == len(s)
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }

func isNameStart(r rune) bool { return r == '_' || unicode.IsLetter(r) }

func isNamePart(r rune) bool {
	return r == '_' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r)
}
