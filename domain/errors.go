package domain

import (
	"errors"
	"fmt"
	"time"
)

// ErrPermanent marks an action failure that retrying cannot fix (a 4xx
// answer, an invalid template result). Match with errors.Is.
var ErrPermanent = errors.New("permanent failure")

// ActionError is the error an action executor returns. A failure that is
// not Permanent is transient and retried by the observer's policy;
// RetryAfter, when set, is the earliest the receiver asked to be retried.
type ActionError struct {
	Err        error
	Permanent  bool
	RetryAfter time.Duration
}

func (e *ActionError) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("%s: %v", kind, e.Err)
}

func (e *ActionError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrPermanent) true for permanent ActionErrors.
func (e *ActionError) Is(target error) bool { return target == ErrPermanent && e.Permanent }

// Permanent wraps err as a failure that is not retried.
func Permanent(err error) error { return &ActionError{Err: err, Permanent: true} }

// Transient wraps err as a retryable failure; retryAfter may be zero.
func Transient(err error, retryAfter time.Duration) error {
	return &ActionError{Err: err, RetryAfter: retryAfter}
}

// IsPermanent reports whether err must not be retried.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// RetryAfter returns the receiver's requested delay carried by err, or 0.
func RetryAfter(err error) time.Duration {
	var ae *ActionError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}
