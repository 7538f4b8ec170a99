package admin

import (
	"context"
	"strings"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// CheckpointStore is a checkpoint store that lists what it holds.
type CheckpointStore interface {
	ports.CheckpointStore
	ports.CheckpointLister
}

// LeaseStore is a lease table that tells who holds a lease.
type LeaseStore interface {
	ports.Lease
	ports.LeaseInspector
}

// Store is one place holding observer state: the state database (or the
// memory topology's process), or a multi-database source database.
type Store struct {
	// Name is "database", "databases.<name>" for a multi-database source,
	// or "memory".
	Name string
	// URL locates the store, password redacted ("" for memory).
	URL string
	// Where says, for a store that is not the primary one, where its
	// checkpoints are kept, e.g. "source database eu".
	Where       string
	Checkpoints CheckpointStore
	Leases      LeaseStore
	DeadLetters ports.DeadLetterStore
	ChangeLog   ports.ChangeLogInspector
	// Retries counts the parked retries kept here (nil: none are).
	Retries ports.RetryCounter
	// Endpoints holds the endpoints' last reported circuit states (nil:
	// none are kept here).
	Endpoints ports.EndpointStates
	// Readers are the readers of the configuration whose checkpoints this
	// store keeps.
	Readers []Reader
}

// Reader names a reader's checkpoint and the lease it runs under.
type Reader struct {
	Checkpoint string
	Lease      string
}

// ReaderOf returns the reader with checkpoint name and the lease it runs
// under: bridges use their checkpoint name, local readers
// "reader:<name>".
func ReaderOf(checkpoint string) Reader {
	if strings.HasPrefix(checkpoint, "bridge:") {
		return Reader{Checkpoint: checkpoint, Lease: checkpoint}
	}
	return Reader{Checkpoint: checkpoint, Lease: "reader:" + checkpoint}
}

// Stores lists the stores of a deployment: Primary (the state database,
// or the memory topology's state; nil for a process that keeps none, a
// multi-database bridge) and the multi-database sources, opened on first
// use by Sources (nil when there are none).
type Stores struct {
	Primary *Store
	Sources func(ctx context.Context) ([]*Store, error)
}

// all returns the primary store followed by the sources.
func (s Stores) all(ctx context.Context) ([]*Store, error) {
	var out []*Store
	if s.Primary != nil {
		out = append(out, s.Primary)
	}
	return s.appendSources(ctx, out)
}

// sourcesFirst returns the sources followed by the primary store.
func (s Stores) sourcesFirst(ctx context.Context) ([]*Store, error) {
	out, err := s.appendSources(ctx, nil)
	if err != nil || s.Primary == nil {
		return out, err
	}
	return append(out, s.Primary), nil
}

func (s Stores) appendSources(ctx context.Context, out []*Store) ([]*Store, error) {
	if s.Sources == nil {
		return out, nil
	}
	src, err := s.Sources(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, src...), nil
}
