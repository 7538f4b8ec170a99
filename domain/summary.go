package domain

import "time"

// ActionOutcome is how one action of one event ended.
type ActionOutcome string

// The outcomes.
const (
	OutcomeSucceeded    ActionOutcome = "succeeded"
	OutcomeCached       ActionOutcome = "cached"        // an earlier delivery already succeeded
	OutcomeRetrying     ActionOutcome = "retrying"      // failed, another attempt is scheduled
	OutcomeDeadLettered ActionOutcome = "dead_lettered" // failed for the last time, parked
	OutcomeFailedLogged ActionOutcome = "failed_logged" // failed for the last time, on_failure = log
	OutcomeParked       ActionOutcome = "parked"        // unfinished, parked in the durable retry store
)

// ActionDetail records one attempt of one action.
type ActionDetail struct {
	Observer   string
	Action     string
	ActionType ActionType
	Attempt    int
	Outcome    ActionOutcome
	Duration   time.Duration
	Error      string
}

// ExecutionSummary is what processing one event did, across its attempts.
type ExecutionSummary struct {
	EventID           string
	SuccessfulActions int
	FailedActions     int
	ParkedActions     int
	ConditionsSkipped int
	DuplicateSkipped  bool
	CacheHits         int
	CacheMisses       int
	Duration          time.Duration
	Actions           []ActionDetail
	Errors            []string
}

// Add records an action attempt and updates the counters.
func (s *ExecutionSummary) Add(d ActionDetail) {
	s.Actions = append(s.Actions, d)
	s.Duration += d.Duration
	switch d.Outcome {
	case OutcomeSucceeded:
		s.SuccessfulActions++
	case OutcomeCached:
		s.SuccessfulActions++
		s.CacheHits++
	case OutcomeParked:
		s.ParkedActions++
	case OutcomeRetrying, OutcomeDeadLettered, OutcomeFailedLogged:
		s.FailedActions++
		if d.Error != "" {
			s.Errors = append(s.Errors, d.Observer+"/"+d.Action+": "+d.Error)
		}
	}
}
