package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// ResendRequest names an event and, optionally, one observer and one
// action of it.
type ResendRequest struct {
	EventID  string `json:"event_id"`
	Observer string `json:"observer,omitempty"`
	Action   string `json:"action,omitempty"`
}

// ResendResult is what re-running one action did.
type ResendResult = application.ResendOutcome

// ResendReport is what a resend did.
type ResendReport struct {
	EventID string `json:"event_id"`
	// Store is where the event was found ("database", "databases.<name>",
	// "memory").
	Store     string         `json:"store"`
	Results   []ResendResult `json:"results"`
	Succeeded int            `json:"succeeded"`
	Failed    int            `json:"failed"`
	Skipped   int            `json:"skipped"`
}

// OK reports whether every action that ran succeeded (and one ran).
func (r ResendReport) OK() bool { return r.Failed == 0 && r.Succeeded > 0 }

// Resend re-runs the actions of an event that was delivered already.
type Resend struct {
	// Stores are searched for the event, multi-database's sources first.
	Stores Stores
	// Resender returns the resender of this process (its observers and
	// executors), or ErrNoActions.
	Resender func(ctx context.Context) (*application.Resender, error)
}

// Resend reads the event from the change log by id and runs its actions.
func (r *Resend) Resend(ctx context.Context, req ResendRequest) (ResendReport, error) {
	rep := ResendReport{EventID: req.EventID, Results: []ResendResult{}}
	if req.EventID == "" {
		return rep, &RequestError{Key: "event", Msg: "an event id is required"}
	}
	// The sources of multi-database first: their change logs are the ones
	// read (by their bridges), and an event found there carries its
	// source's name; [database] may be one of them, whose events would
	// come without it.
	stores, err := r.Stores.sourcesFirst(ctx)
	if err != nil {
		return rep, err
	}
	var rec ports.Record
	found := false
	for _, st := range stores {
		if st.ChangeLog == nil {
			continue
		}
		rec, err = st.ChangeLog.Event(ctx, req.EventID)
		if errors.Is(err, ports.ErrNotFound) {
			continue
		}
		if err != nil {
			return rep, migrateHint(fmt.Errorf("find event %s in %s: %w", req.EventID, st.Name, err))
		}
		rep.Store, found = st.Name, true
		break
	}
	if !found {
		return rep, fmt.Errorf("event %s is not in the change log: %w", req.EventID, ports.ErrNotFound)
	}
	if rec.Err != nil {
		return rep, &RequestError{Key: "event", Msg: fmt.Sprintf("%s is a change-log row that is not a valid event (%v): nothing to resend", req.EventID, rec.Err)}
	}
	resender, err := r.Resender(ctx)
	if err != nil {
		return rep, err
	}
	results, err := resender.Resend(ctx, &rec.Event, req.Observer, req.Action)
	if errors.Is(err, application.ErrNoSuchTarget) {
		return rep, &RequestError{Msg: err.Error()}
	}
	if err != nil {
		return rep, err
	}
	rep.Results = append(rep.Results, results...)
	for _, res := range results {
		switch {
		case res.Skipped != "":
			rep.Skipped++
		case res.Succeeded:
			rep.Succeeded++
		default:
			rep.Failed++
		}
	}
	return rep, nil
}
