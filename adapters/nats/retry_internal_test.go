package nats

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Server-side API errors (5xx) are retried up to the attempts; client
// errors (4xx) and other errors are returned at once; the end of ctx stops
// the pauses.
func TestRetryServerErrors(t *testing.T) {
	t.Parallel()
	server := fmt.Errorf("create stream: %w", &jetstream.APIError{Code: 500, ErrorCode: 10049, Description: "error creating store for stream"})
	client := &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}
	other := errors.New("nats: timeout")
	tests := []struct {
		name      string
		errs      []error // f's answers, in turn; nil after them
		wantCalls int
		wantErr   error
	}{
		{"success at once", nil, 1, nil},
		{"server error, then success", []error{server, server}, 3, nil},
		{"server error every time", []error{server, server, server, server, server}, 4, server},
		{"client error", []error{client}, 1, client},
		{"other error", []error{other}, 1, other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			err := retryServerErrors(t.Context(), 4, time.Millisecond, func() error {
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls || !errors.Is(err, tt.wantErr) {
				t.Errorf("calls %d, err %v; want %d calls and %v", calls, err, tt.wantCalls, tt.wantErr)
			}
		})
	}
	t.Run("context ends during a pause", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		err := retryServerErrors(ctx, 4, time.Hour, func() error {
			calls++
			cancel()
			return server
		})
		if calls != 1 || !errors.Is(err, server) {
			t.Errorf("calls %d, err %v; want 1 call and the server error", calls, err)
		}
	})
}
