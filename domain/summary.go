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
	// FinalFailures counts the attempts that failed for the last time
	// (dead-lettered, or logged as failed).
	FinalFailures int
	Duration      time.Duration
	// Actions and Errors are the latest MaxSummaryDetails attempts and
	// error texts; OmittedActions and OmittedErrors count the earlier
	// ones dropped (an action retried in memory many times over would
	// otherwise keep every attempt). The counters above count them all.
	Actions        []ActionDetail
	Errors         []string
	OmittedActions int
	OmittedErrors  int
}

// MaxSummaryDetails bounds ExecutionSummary.Actions and Errors.
const MaxSummaryDetails = 64

// Add records an action attempt and updates the counters.
func (s *ExecutionSummary) Add(d ActionDetail) {
	s.Actions = appendLatest(s.Actions, d, &s.OmittedActions)
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
		if d.Outcome != OutcomeRetrying {
			s.FinalFailures++
		}
		if d.Error != "" {
			s.Errors = appendLatest(s.Errors, d.Observer+"/"+d.Action+": "+d.Error, &s.OmittedErrors)
		}
	}
}

// appendLatest appends v to list, dropping the oldest element (counted in
// omitted) once list holds MaxSummaryDetails.
func appendLatest[T any](list []T, v T, omitted *int) []T {
	if len(list) < MaxSummaryDetails {
		return append(list, v)
	}
	copy(list, list[1:])
	list[len(list)-1] = v
	*omitted++
	return list
}
