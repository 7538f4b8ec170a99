package domain

import "errors"

// Condition is a compiled observer condition. Safe for concurrent use.
// (Placeholder until the condition language lands; replaced wholesale.)
type Condition struct {
	src string
}

// ConditionError is a compile error with the 1-based column it refers to.
type ConditionError struct {
	Column int
	Msg    string
}

func (e *ConditionError) Error() string { return e.Msg }

// CompileCondition parses src.
func CompileCondition(src string) (*Condition, error) {
	return nil, errors.New("condition language not implemented yet")
}

// Eval evaluates the condition against ev.
func (c *Condition) Eval(ev *Event) bool { return c == nil }

// Source returns the condition as written.
func (c *Condition) Source() string {
	if c == nil {
		return ""
	}
	return c.src
}
