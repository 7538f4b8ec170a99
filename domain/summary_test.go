package domain

import (
	"reflect"
	"testing"
	"time"
)

func TestExecutionSummaryAdd(t *testing.T) {
	t.Parallel()
	detail := func(action string, out ActionOutcome, d time.Duration, errText string) ActionDetail {
		return ActionDetail{Observer: "obs", Action: action, ActionType: ActionWebhook, Attempt: 1, Outcome: out, Duration: d, Error: errText}
	}
	tests := []struct {
		name        string
		details     []ActionDetail
		wantSuccess int
		wantFailed  int
		wantHits    int
		wantDur     time.Duration
		wantErrors  []string
	}{
		{name: "nothing"},
		{name: "success", details: []ActionDetail{detail("a", OutcomeSucceeded, time.Second, "")}, wantSuccess: 1, wantDur: time.Second},
		{name: "cached counts as success and hit", details: []ActionDetail{detail("a", OutcomeCached, 0, "")}, wantSuccess: 1, wantHits: 1},
		{name: "retrying is a failure", details: []ActionDetail{detail("a", OutcomeRetrying, 2*time.Second, "503")}, wantFailed: 1, wantDur: 2 * time.Second, wantErrors: []string{"obs/a: 503"}},
		{name: "dead lettered is a failure", details: []ActionDetail{detail("a", OutcomeDeadLettered, 0, "404")}, wantFailed: 1, wantErrors: []string{"obs/a: 404"}},
		{name: "failed and logged is a failure", details: []ActionDetail{detail("a", OutcomeFailedLogged, 0, "")}, wantFailed: 1},
		{
			name: "mixed",
			details: []ActionDetail{
				detail("a", OutcomeRetrying, time.Second, "timeout"),
				detail("a", OutcomeSucceeded, time.Second, ""),
				detail("b", OutcomeCached, 0, ""),
				detail("c", OutcomeDeadLettered, 3*time.Second, "gone"),
			},
			wantSuccess: 2, wantFailed: 2, wantHits: 1, wantDur: 5 * time.Second,
			wantErrors: []string{"obs/a: timeout", "obs/c: gone"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := ExecutionSummary{EventID: "ev"}
			for _, d := range tt.details {
				s.Add(d)
			}
			if s.SuccessfulActions != tt.wantSuccess || s.FailedActions != tt.wantFailed || s.CacheHits != tt.wantHits {
				t.Errorf("counters = success %d, failed %d, hits %d; want %d, %d, %d",
					s.SuccessfulActions, s.FailedActions, s.CacheHits, tt.wantSuccess, tt.wantFailed, tt.wantHits)
			}
			if s.Duration != tt.wantDur {
				t.Errorf("Duration = %v, want %v", s.Duration, tt.wantDur)
			}
			if !reflect.DeepEqual(s.Errors, tt.wantErrors) {
				t.Errorf("Errors = %q, want %q", s.Errors, tt.wantErrors)
			}
			if !reflect.DeepEqual(s.Actions, tt.details) {
				t.Errorf("Actions = %+v, want the added details in order", s.Actions)
			}
			if s.EventID != "ev" || s.CacheMisses != 0 || s.ConditionsSkipped != 0 || s.DuplicateSkipped {
				t.Errorf("Add changed fields it does not own: %+v", s)
			}
		})
	}
}

// An action retried in memory many times over keeps the latest
// MaxSummaryDetails attempts and error texts, counts the rest as omitted,
// and still knows that one failed for good.
func TestExecutionSummaryKeepsTheLatestDetails(t *testing.T) {
	t.Parallel()
	var s ExecutionSummary
	s.Add(ActionDetail{Observer: "o", Action: "gone", Outcome: OutcomeDeadLettered, Error: "404"})
	const n = 10_000
	for i := range n {
		s.Add(ActionDetail{Observer: "o", Action: "a", Attempt: i + 1, Outcome: OutcomeRetrying, Error: "503"})
	}
	if len(s.Actions) != MaxSummaryDetails || len(s.Errors) != MaxSummaryDetails {
		t.Fatalf("%d actions, %d errors kept; want %d each", len(s.Actions), len(s.Errors), MaxSummaryDetails)
	}
	if s.OmittedActions != n+1-MaxSummaryDetails || s.OmittedErrors != n+1-MaxSummaryDetails {
		t.Errorf("omitted %d actions, %d errors; want %d each", s.OmittedActions, s.OmittedErrors, n+1-MaxSummaryDetails)
	}
	if last := s.Actions[len(s.Actions)-1]; last.Attempt != n {
		t.Errorf("last detail kept is attempt %d, want %d (the latest)", last.Attempt, n)
	}
	if s.FailedActions != n+1 || s.FinalFailures != 1 {
		t.Errorf("failed %d, final failures %d; want %d, 1", s.FailedActions, s.FinalFailures, n+1)
	}
}
