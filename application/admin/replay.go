package admin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// ReplayResult is what Replay did.
type ReplayResult struct {
	Reader   string    `json:"reader"`
	Database string    `json:"database"`
	Since    time.Time `json:"since"`
	// Old is the checkpoint before the replay (OldStored false: there was
	// none).
	Old       ports.Position `json:"old"`
	OldStored bool           `json:"old_stored"`
	New       ports.Position `json:"new"`
	Moved     bool           `json:"moved"`
	// Reread counts the entries between New and Old, which are read again.
	Reread int64 `json:"reread"`
	// Backlog counts every entry after New (Reread plus entries not read
	// yet).
	Backlog int64 `json:"backlog"`
	// Reason says why the checkpoint did not move.
	Reason string `json:"reason,omitempty"`
	// Dedup explains which re-read events are skipped (JetStream's
	// duplicate window in the NATS topologies, dedup marks when dedup is
	// enabled) and how to avoid it.
	Dedup string `json:"dedup,omitempty"`
}

// ParseSince reads a point in time: an RFC 3339 time, or a duration such
// as "2h" meaning that long before now. Its error names the value, not
// the flag or key it came from (the caller's prefix).
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a positive duration (2h, 30m)", s)
	}
	return now.Add(-d), nil
}

// Replay moves reader's checkpoint back so that the entries created at or
// after since are processed again; reader "" picks the configuration's
// only reader. The move is MoveCheckpoint's: refused (ErrReaderRunning)
// while another process holds the reader's lease, unless Pause can pause
// the reader in this process. The checkpoint only moves backwards: entries
// after it were not processed yet.
func (s *State) Replay(ctx context.Context, reader string, since time.Time) (ReplayResult, error) {
	res := ReplayResult{Since: since}
	st, ref, err := s.findReader(ctx, reader)
	if err != nil {
		return res, err
	}
	res.Reader, res.Database = ref.Checkpoint, st.Name
	if s.Pause != nil {
		resume, err := s.Pause(ctx, ref.Checkpoint)
		if err != nil {
			return res, fmt.Errorf("pause reader %s: %w", ref.Checkpoint, err)
		}
		defer resume()
	}
	mr, err := s.MoveCheckpoint(ctx, MoveRequest{Store: st, Reader: ref, Holder: "replay/" + s.Holder,
		Target: func(ctx context.Context, old ports.Position, stored bool) (ports.Position, bool, error) {
			if !stored {
				res.Reason = "the reader has no checkpoint yet: it reads the change log from the start, so nothing needs replaying"
				return old, false, nil
			}
			first, found, err := st.ChangeLog.FirstSince(ctx, since)
			if err != nil {
				return old, false, err
			}
			if !found {
				res.Reason = "no change-log row was created at or after " + since.UTC().Format(time.RFC3339)
				return old, false, nil
			}
			target := ports.Position{TxID: first.TxID, Seq: first.Seq - 1}
			if !target.Less(old) {
				res.Reason = fmt.Sprintf("the first row created since then (%s) lies after the checkpoint: it has not been processed yet", first)
				res.Backlog, err = st.ChangeLog.Backlog(ctx, old)
				return old, false, err
			}
			res.Reread, err = st.ChangeLog.CountBetween(ctx, target, old)
			return target, err == nil, err
		}})
	res.Old, res.OldStored, res.New, res.Moved = mr.Old, mr.OldStored, mr.New, mr.Moved
	if err != nil || !res.Moved {
		return res, err
	}
	if res.Backlog, err = st.ChangeLog.Backlog(ctx, res.New); err != nil {
		return res, err
	}
	res.Dedup = s.DedupNote
	return res, nil
}

// findReader resolves a --reader value (a checkpoint name, or a bridge's
// database name) to its store and lease; "" is the only reader.
func (s *State) findReader(ctx context.Context, name string) (*Store, Reader, error) {
	stores, err := s.Stores.all(ctx)
	if err != nil {
		return nil, Reader{}, err
	}
	type found struct {
		s *Store
		r Reader
	}
	var all []found
	var names []string
	for _, st := range stores {
		for _, r := range st.Readers {
			all = append(all, found{st, r})
			names = append(names, r.Checkpoint)
		}
	}
	if name == "" {
		switch len(all) {
		case 1:
			return all[0].s, all[0].r, nil
		case 0:
			return nil, Reader{}, &RequestError{Key: "reader", Msg: "this configuration runs no reader"}
		default:
			return nil, Reader{}, &RequestError{Key: "reader", Msg: "this configuration has several readers, name one of: " + strings.Join(names, ", ")}
		}
	}
	for _, f := range all {
		if f.r.Checkpoint == name || f.r.Checkpoint == "bridge:"+name {
			return f.s, f.r, nil
		}
	}
	return nil, Reader{}, &RequestError{Key: "reader", Msg: fmt.Sprintf("%q is not a reader of this configuration (readers: %s)", name, strings.Join(names, ", "))}
}
