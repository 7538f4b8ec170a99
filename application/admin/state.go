package admin

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// State holds the use cases over a deployment's persisted state: Status,
// Checkpoints, MoveCheckpoint, SetCheckpoint and Replay.
type State struct {
	Topology string
	Stores   Stores
	// Holder names this process in the leases it takes to move
	// checkpoints.
	Holder string
	// LeaseTTL is how long a checkpoint move holds the reader's lease
	// (default 15s).
	LeaseTTL time.Duration
	Logger   *slog.Logger
	// Pause, when set, pauses a reader that this process runs so that
	// Replay can move its checkpoint: it ends the reader's lease term (the
	// reader saves its checkpoint and releases the lease) and returns the
	// function that lets it run again. It does nothing for a checkpoint it
	// does not know. Nil: readers of this process keep their lease, and
	// moving their checkpoints is refused with ErrReaderRunning.
	Pause func(ctx context.Context, checkpoint string) (resume func(), err error)
	// DedupNote explains, when dedup is enabled, which replayed events are
	// skipped and how to avoid it ("" when dedup is off).
	DedupNote string
}

// StatusReport is the persisted progress of a deployment, read from its
// stores: no running reader is needed.
type StatusReport struct {
	Topology  string           `json:"topology"`
	Databases []DatabaseStatus `json:"databases"`
}

// DatabaseStatus is the state kept in one store.
type DatabaseStatus struct {
	Name        string             `json:"name"`
	URL         string             `json:"url"` // password redacted
	Now         time.Time          `json:"now"` // the store's clock
	Checkpoints []CheckpointStatus `json:"checkpoints"`
	// DeadLetters counts items per observer ("" for inputs that never
	// became events).
	DeadLetters     map[string]int `json:"dead_letters"`
	DeadLetterTotal int            `json:"dead_letters_total"`
	// ParkedRetries counts the actions parked for retry (nil when this
	// store keeps none).
	ParkedRetries *ports.RetryCounts `json:"parked_retries,omitempty"`
	// Endpoints are the endpoints' circuit states as the processes last
	// reported them (transitions only: an endpoint never in trouble is
	// absent).
	Endpoints        []ports.EndpointState `json:"endpoints,omitempty"`
	OldestTxnSeconds float64               `json:"oldest_open_transaction_seconds"`
}

// CheckpointStatus is one reader's or bridge's saved position.
type CheckpointStatus struct {
	Name string `json:"name"`
	// Configured is true for the readers this configuration runs; other
	// stored checkpoints are listed too.
	Configured bool           `json:"configured"`
	Stored     bool           `json:"stored"` // false: the reader starts from the beginning
	Position   ports.Position `json:"position"`
	UpdatedAt  *time.Time     `json:"updated_at,omitempty"`
	Backlog    int64          `json:"backlog"` // change-log entries after Position
	Lease      LeaseStatus    `json:"lease"`
}

// LeaseStatus says which process holds a reader's lease.
type LeaseStatus struct {
	Name      string     `json:"name"`
	Holder    string     `json:"holder,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Active    bool       `json:"active"` // held and not expired
}

// Status reads checkpoints, backlogs, leases, dead-letter counts and the
// oldest open transaction of every store.
func (s *State) Status(ctx context.Context) (StatusReport, error) {
	rep := StatusReport{Topology: s.Topology, Databases: []DatabaseStatus{}}
	stores, err := s.Stores.all(ctx)
	if err != nil {
		return rep, err
	}
	for _, st := range stores {
		ds, err := storeStatus(ctx, st)
		if err != nil {
			return rep, fmt.Errorf("status of %s: %w", st.Name, migrateHint(err))
		}
		rep.Databases = append(rep.Databases, ds)
	}
	return rep, nil
}

func storeStatus(ctx context.Context, s *Store) (DatabaseStatus, error) {
	ds := DatabaseStatus{Name: s.Name, URL: s.URL}
	stored, err := s.Checkpoints.List(ctx)
	if err != nil {
		return ds, err
	}
	byName := map[string]ports.CheckpointRecord{}
	for _, r := range stored {
		byName[r.Name] = r
	}
	names := make([]string, 0, len(s.Readers)+len(stored))
	configured := map[string]bool{}
	for _, r := range s.Readers {
		names = append(names, r.Checkpoint)
		configured[r.Checkpoint] = true
	}
	for _, r := range stored {
		if !configured[r.Name] {
			names = append(names, r.Name)
		}
	}
	for _, name := range names {
		cs := CheckpointStatus{Name: name, Configured: configured[name]}
		if r, ok := byName[name]; ok {
			cs.Stored, cs.Position = true, r.Position
			cs.UpdatedAt = &r.UpdatedAt
		}
		if cs.Backlog, err = s.ChangeLog.Backlog(ctx, cs.Position); err != nil {
			return ds, err
		}
		ls, err := s.Leases.State(ctx, s.readerOf(name).Lease)
		if err != nil {
			return ds, err
		}
		cs.Lease = LeaseStatus{Name: ls.Name, Holder: ls.Holder, Active: ls.Active}
		if ls.Holder != "" {
			cs.Lease.ExpiresAt = &ls.ExpiresAt
		}
		ds.Now = ls.Now
		ds.Checkpoints = append(ds.Checkpoints, cs)
	}
	if ds.DeadLetters, err = s.DeadLetters.Stats(ctx); err != nil {
		return ds, err
	}
	for _, n := range ds.DeadLetters {
		ds.DeadLetterTotal += n
	}
	if ds.ParkedRetries, err = parkedRetries(ctx, s); err != nil {
		return ds, err
	}
	if ds.Endpoints, err = endpointStates(ctx, s); err != nil {
		return ds, err
	}
	age, err := s.ChangeLog.OldestTransactionAge(ctx)
	if err != nil {
		return ds, err
	}
	ds.OldestTxnSeconds = age.Seconds()
	if ds.Now.IsZero() {
		ls, err := s.Leases.State(ctx, "")
		if err != nil {
			return ds, err
		}
		ds.Now = ls.Now
	}
	return ds, nil
}

// readerOf returns the configured reader with checkpoint name, or the
// lease such a reader would run under.
func (s *Store) readerOf(name string) Reader {
	for _, r := range s.Readers {
		if r.Checkpoint == name {
			return r
		}
	}
	return ReaderOf(name)
}

// MoveRequest says which checkpoint to move, and where.
type MoveRequest struct {
	Store  *Store
	Reader Reader
	// Holder names who takes the reader's lease for the move.
	Holder string
	// Target picks the new position from the stored one (stored false:
	// there is none); move false leaves the checkpoint where it is.
	Target func(ctx context.Context, old ports.Position, stored bool) (pos ports.Position, move bool, err error)
}

// MoveResult is what a checkpoint move did.
type MoveResult struct {
	Old       ports.Position
	OldStored bool
	New       ports.Position
	Moved     bool
}

// MoveCheckpoint moves a reader's checkpoint while holding the reader's
// lease, so no reader of that checkpoint runs meanwhile (its next save
// would overwrite the moved checkpoint). It refuses with ErrReaderRunning,
// naming the holder, while any process holds that lease, this one
// included; the lease is released afterwards.
func (s *State) MoveCheckpoint(ctx context.Context, req MoveRequest) (MoveResult, error) {
	res := MoveResult{}
	st, r := req.Store, req.Reader
	ttl := cmp.Or(s.LeaseTTL, 15*time.Second)
	acquired := time.Now()
	held, err := st.Leases.Acquire(ctx, r.Lease, req.Holder, ttl)
	if err != nil {
		return res, migrateHint(err)
	}
	if !held {
		msg := fmt.Errorf("%w: lease %q is held", ErrReaderRunning, r.Lease)
		if ls, err := st.Leases.State(ctx, r.Lease); err == nil && ls.Holder != "" {
			msg = fmt.Errorf("%w: %s holds lease %q until %s", ErrReaderRunning, ls.Holder, r.Lease, ls.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return res, fmt.Errorf("%w; stop that reader first (its next save would overwrite the moved checkpoint)", msg)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := st.Leases.Release(rctx, r.Lease, req.Holder); err != nil {
			s.Logger.Warn("cannot release the reader lease; it expires by itself", slog.String("lease", r.Lease), slog.String("error", err.Error()))
		}
	}()
	old, ok, err := st.Checkpoints.Load(ctx, r.Checkpoint)
	if err != nil {
		return res, err
	}
	res.Old, res.OldStored, res.New = old, ok, old
	// Target may scan a large change log: the lease is renewed meanwhile,
	// as a reader's is; losing it ends Target (and the fenced save below
	// would refuse).
	var (
		target ports.Position
		move   bool
		lost   bool
	)
	herr := application.HoldLease(ctx, st.Leases, application.LeaseConfig{Name: r.Lease, Holder: req.Holder, TTL: ttl, Logger: s.Logger}, acquired,
		func(hctx context.Context) error {
			target, move, err = req.Target(hctx, old, ok)
			select {
			case <-application.LeaseLost(hctx):
				lost = true
			default:
			}
			return nil
		})
	switch {
	case herr != nil:
		return res, herr
	case lost:
		if ls, serr := st.Leases.State(ctx, r.Lease); serr == nil && ls.Holder != "" && ls.Holder != req.Holder {
			return res, fmt.Errorf("%w: lease %q was taken by %s while the move was being prepared; nothing moved", ErrReaderRunning, r.Lease, ls.Holder)
		}
		return res, fmt.Errorf("lease %q could not be renewed while the move was being prepared; nothing moved: %w", r.Lease, ports.ErrLeaseLost)
	case err != nil || !move:
		return res, err
	}
	// Fenced: should the lease run out meanwhile and a reader take it, the
	// move is refused rather than overwriting that reader's progress.
	if err := st.Checkpoints.SaveFenced(ctx, r.Checkpoint, target, ports.Fence{Lease: r.Lease, Holder: req.Holder}); err != nil {
		return res, err
	}
	res.New, res.Moved = target, true
	return res, nil
}

// SetCheckpoint moves the checkpoint called name in the primary store to
// pos (the admin API's PUT /checkpoints/{name}) with MoveCheckpoint. A
// name that is neither stored nor a reader of the configuration wraps
// ports.ErrNotFound; one kept in another store wraps
// ErrCheckpointElsewhere.
func (s *State) SetCheckpoint(ctx context.Context, name string, pos ports.Position) (MoveResult, error) {
	primary := s.Stores.Primary
	if primary == nil {
		return MoveResult{}, fmt.Errorf("checkpoint %q: %w (this process keeps no state)", name, ports.ErrNotFound)
	}
	known := false
	stores, err := s.Stores.all(ctx)
	if err != nil {
		return MoveResult{}, err
	}
	for _, st := range stores {
		for _, r := range st.Readers {
			if r.Checkpoint != name {
				continue
			}
			if st != primary {
				return MoveResult{}, fmt.Errorf("%w: %q is kept in the %s; stop its bridge and use `fraiseql-observer replay --reader %s`", ErrCheckpointElsewhere, name, st.Where, name)
			}
			known = true
		}
	}
	_, stored, err := primary.Checkpoints.Load(ctx, name)
	if err != nil {
		return MoveResult{}, migrateHint(err)
	}
	if !known && !stored {
		return MoveResult{}, fmt.Errorf("checkpoint %q: %w (neither stored nor read by this configuration)", name, ports.ErrNotFound)
	}
	res, err := s.MoveCheckpoint(ctx, MoveRequest{
		Store: primary, Reader: primary.readerOf(name), Holder: s.Holder + "/admin-api",
		Target: func(context.Context, ports.Position, bool) (ports.Position, bool, error) { return pos, true, nil },
	})
	if err != nil {
		return res, err
	}
	s.Logger.Info("checkpoint moved through the admin API", slog.String("checkpoint", name),
		slog.String("from", res.Old.String()), slog.String("to", pos.String()))
	return res, nil
}
