// Package domain is the pure core of fraiseql-observer: events, observers,
// actions, the condition language, templates, retry policies and execution
// summaries. It performs no I/O, reads no clock and imports no driver: time
// arrives as a value and randomness as a parameter.
package domain
