package admin

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// CheckpointView is a checkpoint as the admin API shows it.
type CheckpointView struct {
	Name      string          `json:"name"`
	Stored    bool            `json:"stored"` // false: the reader starts from the beginning
	Position  *ports.Position `json:"position,omitempty"`
	UpdatedAt *time.Time      `json:"updated_at,omitempty"`
	// Reading is true when a reader of this process is active under this
	// name; ReadAt and Saved are its live positions.
	Reading bool            `json:"reading"`
	ReadAt  *ports.Position `json:"read_at,omitempty"`
	Saved   *ports.Position `json:"saved,omitempty"`
	// Store says where the checkpoint is kept when it is not the primary
	// store (multi-database bridges: the source database).
	Store string `json:"store,omitempty"`
}

// Checkpoints lists the primary store's checkpoints together with the
// readers this process runs (live, keyed by checkpoint name), in name
// order.
func (s *State) Checkpoints(ctx context.Context, live map[string]application.ReaderStatus) ([]CheckpointView, error) {
	views := map[string]*CheckpointView{}
	if p := s.Stores.Primary; p != nil {
		recs, err := p.Checkpoints.List(ctx)
		if err != nil {
			return nil, migrateHint(err)
		}
		for _, rec := range recs {
			pos, at := rec.Position, rec.UpdatedAt
			views[rec.Name] = &CheckpointView{Name: rec.Name, Stored: true, Position: &pos, UpdatedAt: &at}
		}
	}
	elsewhere := map[string]string{}
	stores, err := s.Stores.all(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range stores {
		if st == s.Stores.Primary {
			continue
		}
		for _, r := range st.Readers {
			elsewhere[r.Checkpoint] = st.Where
		}
	}
	for name, rs := range live {
		v := views[name]
		if v == nil {
			v = &CheckpointView{Name: name, Store: elsewhere[name]}
			views[name] = v
		}
		if rs.Running {
			readAt, saved := rs.ReadAt, rs.Saved
			v.Reading, v.ReadAt, v.Saved = true, &readAt, &saved
		}
	}
	out := make([]CheckpointView, 0, len(views))
	for _, name := range slices.Sorted(maps.Keys(views)) {
		out = append(out, *views[name])
	}
	return out, nil
}
