package admin

import (
	"errors"
	"fmt"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// ErrReaderRunning is returned (wrapped) when a checkpoint cannot be moved
// because a reader holds its lease.
var ErrReaderRunning = errors.New("reader is running")

// ErrCheckpointElsewhere is returned (wrapped) when a checkpoint is kept in
// another store than the one asked (a multi-database bridge keeps its
// checkpoint in its source database).
var ErrCheckpointElsewhere = errors.New("checkpoint is kept in a source database")

// ErrNothingToReload is returned by a reload that cannot change the
// observers: no observers_file is configured (the main file's observers
// are read at start only), or the process runs none (bridge role).
var ErrNothingToReload = errors.New("nothing to reload")

// ErrNoActions is returned when this process runs no actions, so it cannot
// retry dead letters.
var ErrNoActions = errors.New("this process runs no actions (bridge role): retry from a worker or with the dlq command")

// ErrNotRetryable marks a dead letter that cannot be re-run.
var ErrNotRetryable = application.ErrNotRetryable

// RequestError is a request the use case cannot serve as asked, such as an
// unknown reader: bad usage, not a failure. Key names what was wrong ("" when
// Msg says it).
type RequestError struct {
	Key string
	Msg string
}

func (e *RequestError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// migrateHint adds "run migrate" to errors of a store that was not set up.
func migrateHint(err error) error {
	if errors.Is(err, ports.ErrNotMigrated) {
		return fmt.Errorf("%w (has `fraiseql-observer migrate` been run on this database?)", err)
	}
	return err
}
