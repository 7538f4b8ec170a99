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
