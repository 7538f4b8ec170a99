package ddlturn

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestRunHoldsTheTurnAroundTheStatement: the lock comes first, the
// statement runs only once it is held, and the unlock follows whether the
// statement succeeded, failed or its context ended meanwhile; a lock that
// could not be taken runs nothing.
func TestRunHoldsTheTurnAroundTheStatement(t *testing.T) {
	t.Parallel()
	key := fmt.Sprint(Lock[0], " ", Lock[1])
	cases := []struct {
		name          string
		fail          string // the statement of the calls that fail
		cancelOnStmt  bool   // the caller's context ends while the statement runs
		wantCalls     []string
		wantErrSubstr string
	}{
		{name: "ok", wantCalls: []string{"lock " + key, "CREATE DATABASE x", "unlock " + key}},
		{name: "statement fails", fail: "CREATE DATABASE x", wantErrSubstr: "boom",
			wantCalls: []string{"lock " + key, "CREATE DATABASE x", "unlock " + key}},
		{name: "context ends during the statement", cancelOnStmt: true, wantErrSubstr: "context canceled",
			wantCalls: []string{"lock " + key, "CREATE DATABASE x", "unlock " + key}},
		{name: "no turn", fail: "lock", wantErrSubstr: "wait for the turn",
			wantCalls: []string{"lock " + key}},
		{name: "unlock fails", fail: "unlock", wantErrSubstr: "release the turn",
			wantCalls: []string{"lock " + key, "CREATE DATABASE x", "unlock " + key}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var calls []string
			exec := session(func(ctx context.Context, sql string, args ...any) error {
				call := sql
				switch {
				case strings.Contains(sql, "pg_advisory_lock"):
					call = "lock " + fmt.Sprint(args...)
				case strings.Contains(sql, "pg_advisory_unlock"):
					call = "unlock " + fmt.Sprint(args...)
				}
				calls = append(calls, call)
				if tc.cancelOnStmt && call == "CREATE DATABASE x" {
					cancel()
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if tc.fail != "" && strings.HasPrefix(call, tc.fail) {
					return errors.New("boom")
				}
				return nil
			})
			err := Run(ctx, exec, "CREATE DATABASE x")
			if !reflect.DeepEqual(calls, tc.wantCalls) {
				t.Errorf("calls = %q, want %q", calls, tc.wantCalls)
			}
			switch {
			case tc.wantErrSubstr == "" && err != nil:
				t.Errorf("Run: %v", err)
			case tc.wantErrSubstr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErrSubstr)):
				t.Errorf("Run error = %v, want one containing %q", err, tc.wantErrSubstr)
			}
		})
	}
}

// session is a Session of a function.
type session func(ctx context.Context, sql string, args ...any) error

func (f session) Exec(ctx context.Context, sql string, args ...any) (struct{}, error) {
	return struct{}{}, f(ctx, sql, args...)
}
