package admin

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// DeadLetters holds the dead-letter commands over one store.
type DeadLetters struct {
	Store ports.DeadLetterStore
	// Retrier returns the retrier of this process: the observers and
	// executors a retry runs with. It is built once (on first use by the
	// one-shot commands, which need connections for it); it returns
	// ErrNoActions in a process that runs no actions.
	Retrier func(ctx context.Context) (*application.DeadLetterRetrier, error)
}

// DeadLetterQuery filters a dead-letter listing; zero values mean no
// filter, Limit 0 means DefaultLimit.
type DeadLetterQuery struct {
	Observer string
	Limit    int
	AfterID  int64
}

// DefaultLimit is the page size of a listing without a limit;
// MaxListLimit the largest page (each item holds its event).
const (
	DefaultLimit = 100
	MaxListLimit = 1000
)

// DeadLetterView is a dead letter as the CLI and the admin API show it.
// Raw input bytes are given as text when they are valid UTF-8, else as
// base64 (RawEncoding says which).
type DeadLetterView struct {
	ID          int64         `json:"id"`
	EventID     string        `json:"event_id"`
	Observer    string        `json:"observer"`
	Action      string        `json:"action"`
	ActionType  string        `json:"action_type"`
	Error       string        `json:"error"`
	Attempts    int           `json:"attempts"`
	CreatedAt   time.Time     `json:"created_at"`
	LastRetryAt *time.Time    `json:"last_retry_at,omitempty"`
	Event       *domain.Event `json:"event,omitempty"`
	Raw         string        `json:"raw,omitempty"`
	RawEncoding string        `json:"raw_encoding,omitempty"` // "text" or "base64"
}

// Brief returns v without the event and the raw input (listings).
func (v DeadLetterView) Brief() DeadLetterView {
	v.Event, v.Raw, v.RawEncoding = nil, "", ""
	return v
}

// NextAfter is the cursor of the page after items, listed with limit (0:
// DefaultLimit): the last id, when the page is full (more may follow).
func NextAfter(items []DeadLetterView, limit int) (int64, bool) {
	if len(items) == 0 || len(items) != cmp.Or(limit, DefaultLimit) {
		return 0, false
	}
	return items[len(items)-1].ID, true
}

func viewDeadLetter(d ports.DeadLetter) DeadLetterView {
	v := DeadLetterView{
		ID: d.ID, EventID: d.Event.ID, Observer: d.Observer, Action: d.Action, ActionType: string(d.ActionType),
		Error: d.Error, Attempts: d.Attempts, CreatedAt: d.CreatedAt,
	}
	if !d.LastRetryAt.IsZero() {
		t := d.LastRetryAt
		v.LastRetryAt = &t
	}
	ev := d.Event
	v.Event = &ev
	if len(d.Raw) > 0 {
		if utf8.Valid(d.Raw) {
			v.Raw, v.RawEncoding = string(d.Raw), "text"
		} else {
			v.Raw, v.RawEncoding = base64.StdEncoding.EncodeToString(d.Raw), "base64"
		}
	}
	return v
}

// DeadLetterStats counts dead letters.
type DeadLetterStats struct {
	Total      int            `json:"total"`
	ByObserver map[string]int `json:"by_observer"` // "" for inputs that were not events
}

// RetryStatus is how a dead-letter retry ended.
type RetryStatus string

// The retry statuses.
const (
	RetrySucceeded    RetryStatus = "succeeded"     // the action ran and the item was removed
	RetryFailed       RetryStatus = "failed"        // the action failed again; the item stays with one more attempt
	RetryNotRetryable RetryStatus = "not_retryable" // an input that was not an event, or its observer or action is gone
)

// RetryResult is the real outcome of re-running one dead letter.
type RetryResult struct {
	ID       int64       `json:"id"`
	EventID  string      `json:"event_id"`
	Observer string      `json:"observer"`
	Action   string      `json:"action"`
	Status   RetryStatus `json:"status"`
	Error    string      `json:"error,omitempty"`
}

// RetryReport is the outcome of a retry-all: the counts of every item,
// the outcomes of the first MaxRetryResults (Omitted counts the others:
// a dead-letter queue of a million items is not answered as a million
// outcomes in memory).
type RetryReport struct {
	Results      []RetryResult `json:"results"`
	Succeeded    int           `json:"succeeded"`
	Failed       int           `json:"failed"`
	NotRetryable int           `json:"not_retryable"`
	Omitted      int           `json:"omitted,omitempty"`
}

// MaxRetryResults bounds RetryReport.Results.
const MaxRetryResults = 1000

// Total is the number of items retried.
func (r RetryReport) Total() int { return r.Succeeded + r.Failed + r.NotRetryable }

// OK reports whether every item succeeded.
func (r RetryReport) OK() bool { return r.Failed == 0 && r.NotRetryable == 0 }

func (r *RetryReport) add(res RetryResult) {
	if len(r.Results) < MaxRetryResults {
		r.Results = append(r.Results, res)
	} else {
		r.Omitted++
	}
	switch res.Status {
	case RetrySucceeded:
		r.Succeeded++
	case RetryFailed:
		r.Failed++
	case RetryNotRetryable:
		r.NotRetryable++
	}
}

// List lists dead letters in id order, briefly: without their event and
// raw input (Get has them), so that a page of 1000 costs little whatever
// the events weigh.
func (d *DeadLetters) List(ctx context.Context, q DeadLetterQuery) ([]DeadLetterView, error) {
	if q.Limit < 0 || q.AfterID < 0 {
		return nil, &RequestError{Key: "list dead letters", Msg: "limit and after must not be negative"}
	}
	if q.Limit > MaxListLimit {
		return nil, &RequestError{Key: "limit", Msg: fmt.Sprintf("%d is over %d: page with after", q.Limit, MaxListLimit)}
	}
	items, err := d.Store.List(ctx, ports.DeadLetterFilter{Observer: q.Observer, Limit: cmp.Or(q.Limit, DefaultLimit), AfterID: q.AfterID, Brief: true})
	if err != nil {
		return nil, migrateHint(err)
	}
	out := make([]DeadLetterView, 0, len(items))
	for _, it := range items {
		out = append(out, viewDeadLetter(it))
	}
	return out, nil
}

// Get returns one dead letter; an unknown id wraps ports.ErrNotFound.
func (d *DeadLetters) Get(ctx context.Context, id int64) (DeadLetterView, error) {
	it, err := d.Store.Get(ctx, id)
	if err != nil {
		if errors.Is(err, ports.ErrNotFound) {
			return DeadLetterView{}, fmt.Errorf("dead letter %d: %w", id, ports.ErrNotFound)
		}
		return DeadLetterView{}, migrateHint(err)
	}
	return viewDeadLetter(it), nil
}

// Remove deletes one dead letter; an unknown id wraps ports.ErrNotFound.
func (d *DeadLetters) Remove(ctx context.Context, id int64) error {
	if err := d.Store.Remove(ctx, id); err != nil {
		if errors.Is(err, ports.ErrNotFound) {
			return fmt.Errorf("dead letter %d: %w", id, ports.ErrNotFound)
		}
		return migrateHint(err)
	}
	return nil
}

// Stats counts the dead letters per observer.
func (d *DeadLetters) Stats(ctx context.Context) (DeadLetterStats, error) {
	m, err := d.Store.Stats(ctx)
	if err != nil {
		return DeadLetterStats{}, migrateHint(err)
	}
	st := DeadLetterStats{ByObserver: m}
	for _, n := range m {
		st.Total += n
	}
	return st, nil
}

// Retry re-runs the failed action of one dead letter and reports the real
// outcome: a success removes the item, a failure keeps it with one more
// attempt and the new error. An unknown id is an error wrapping
// ports.ErrNotFound; an item that cannot be retried is reported with
// RetryNotRetryable and no error.
func (d *DeadLetters) Retry(ctx context.Context, id int64) (RetryResult, error) {
	r, err := d.Retrier(ctx)
	if err != nil {
		return RetryResult{ID: id}, err
	}
	return retryOne(ctx, r, id)
}

func retryOne(ctx context.Context, r *application.DeadLetterRetrier, id int64) (RetryResult, error) {
	out, err := r.Retry(ctx, id)
	res := RetryResult{ID: out.ID, EventID: out.EventID, Observer: out.Observer, Action: out.Action, Error: out.Error}
	switch {
	case errors.Is(err, application.ErrNotRetryable):
		res.Status, res.Error = RetryNotRetryable, err.Error()
		return res, nil
	case errors.Is(err, ports.ErrNotFound) && out.EventID == "":
		return res, fmt.Errorf("dead letter %d: %w", id, ports.ErrNotFound)
	case err != nil:
		return res, migrateHint(err)
	case out.Succeeded:
		res.Status = RetrySucceeded
	default:
		res.Status = RetryFailed
	}
	return res, nil
}

// RetryAll re-runs every dead letter of observer ("" for all), in id
// order, and reports each outcome; items removed meanwhile are skipped.
//
// One item the store cannot record (its failed retry not marked, or its
// success not removed: a value the store refuses, a constraint, a bug) is
// reported RetryFailed with that error, the item left in place, and the
// rest is retried: stopping there would stop every later retry-all at the
// same item. Only a failure that would fail every later item as well ends
// the run with an error: the store unreachable (ports.ErrUnavailable), not
// set up (ports.ErrNotMigrated), or ctx done. The report then holds the
// outcomes so far, that item's included.
func (d *DeadLetters) RetryAll(ctx context.Context, observer string) (RetryReport, error) {
	return d.RetryAllProgress(ctx, observer, nil)
}

// RetryAllProgress is RetryAll calling progress (when not nil) with the
// report so far after each item (a caller that prints it spaces the
// lines: an item may take a webhook's whole timeout).
func (d *DeadLetters) RetryAllProgress(ctx context.Context, observer string, progress func(RetryReport)) (RetryReport, error) {
	rep := RetryReport{Results: []RetryResult{}}
	if progress == nil {
		progress = func(RetryReport) {}
	}
	r, err := d.Retrier(ctx)
	if err != nil {
		return rep, err
	}
	f := ports.DeadLetterFilter{Observer: observer, Limit: DefaultLimit, Brief: true} // retryOne gets each item whole
	for {
		page, err := d.Store.List(ctx, f)
		if err != nil {
			return rep, fmt.Errorf("retry all dead letters: stopped after %d: %w", rep.Total(), migrateHint(err))
		}
		if len(page) == 0 {
			return rep, nil
		}
		for _, it := range page {
			f.AfterID = it.ID
			res, err := retryOne(ctx, r, it.ID)
			if errors.Is(err, ports.ErrNotFound) {
				continue // removed since it was listed
			}
			if err != nil {
				res = itemFailure(res, it, err)
				rep.add(res)
				if stopsRetryAll(ctx, err) {
					return rep, fmt.Errorf("retry all dead letters: stopped at dead letter %d: %w", it.ID, err)
				}
				progress(rep)
				continue
			}
			rep.add(res)
			progress(rep)
		}
	}
}

// itemFailure is the outcome of an item whose retry could not be carried
// through (err): failed, kept, with the error, named as it was listed.
func itemFailure(res RetryResult, it ports.DeadLetter, err error) RetryResult {
	res.ID = it.ID
	res.EventID = cmp.Or(res.EventID, it.Event.ID)
	res.Observer = cmp.Or(res.Observer, it.Observer)
	res.Action = cmp.Or(res.Action, it.Action)
	res.Status = RetryFailed
	if res.Error != "" && !strings.Contains(err.Error(), res.Error) {
		res.Error = res.Error + "; " + err.Error()
	} else {
		res.Error = err.Error()
	}
	return res
}

// stopsRetryAll reports a failure after which retrying the next items is
// pointless: they would fail the same way.
func stopsRetryAll(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, ports.ErrUnavailable) || errors.Is(err, ports.ErrNotMigrated) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
