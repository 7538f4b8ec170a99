package ports

import "github.com/fraiseql/fraiseql-observer/domain"

// Metrics receives what the application measures. Implementations must be
// safe for concurrent use and cheap: they are called on the hot path.
type Metrics interface {
	// EventProcessed counts an event whose every action is finished;
	// outcome is "ok", "failed" (some action dead-lettered or logged),
	// "parked" (some action waits in the durable retry store),
	// "no_match", "duplicate" or "invalid".
	EventProcessed(outcome string)
	// ActionExecuted counts one action attempt: its observer, action type,
	// outcome and duration.
	ActionExecuted(d domain.ActionDetail)
	// RetryScheduled counts a failed attempt that will be tried again.
	RetryScheduled(t domain.ActionType)
	// DeadLettered counts an item parked in the dead-letter queue.
	DeadLettered()
	// ConditionSkipped counts an observer whose condition was false.
	ConditionSkipped()
	// Checkpoint records the reader's saved position.
	Checkpoint(name string, pos Position)
	// InFlight records how many events the reader name read and has not
	// finished yet.
	InFlight(name string, n int)
	// DuplicateSkipped counts an event skipped because it was already
	// processed.
	DuplicateSkipped()
	// CacheResult counts an action-result cache lookup (hit or miss).
	CacheResult(hit bool)
	// FailOpen counts an operation that went on without its backing
	// service (component "dedup" or "cache").
	FailOpen(component string)
	// Published counts an event the broker stored (or found a duplicate).
	Published(duplicate bool)
}

// NopMetrics discards measurements (for tools such as debug-event that run
// no service).
type NopMetrics struct{}

func (NopMetrics) EventProcessed(string)              {}
func (NopMetrics) ActionExecuted(domain.ActionDetail) {}
func (NopMetrics) RetryScheduled(domain.ActionType)   {}
func (NopMetrics) DeadLettered()                      {}
func (NopMetrics) ConditionSkipped()                  {}
func (NopMetrics) Checkpoint(string, Position)        {}
func (NopMetrics) InFlight(string, int)               {}
func (NopMetrics) DuplicateSkipped()                  {}
func (NopMetrics) CacheResult(bool)                   {}
func (NopMetrics) FailOpen(string)                    {}
func (NopMetrics) Published(bool)                     {}
