package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// MaxDeliveriesLimit bounds a page of the delivery log.
const MaxDeliveriesLimit = 1000

// ErrNoDeliveryLog is returned when the deployment keeps no delivery log
// (delivery.log = "off", or a process without a state store).
var ErrNoDeliveryLog = errors.New("no delivery log is kept (delivery.log = \"off\", or this process keeps no state)")

// DeliveryQuery filters the delivery log. Status is "ok", "failed" or an
// HTTP status code ("" for any); zero times mean no bound; Limit 0 means
// DefaultLimit; Before pages (records with a smaller ID).
type DeliveryQuery struct {
	EventID  string    `json:"event_id,omitempty"`
	Observer string    `json:"observer,omitempty"`
	Endpoint string    `json:"endpoint,omitempty"`
	Status   string    `json:"status,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	Limit    int       `json:"limit,omitempty"`
	Before   int64     `json:"before,omitempty"`
}

// DeliveryPage is one page of the delivery log, newest first; NextBefore
// asks for the next page (0 when this one was not full).
type DeliveryPage struct {
	Deliveries []ports.DeliveryRecord `json:"deliveries"`
	NextBefore int64                  `json:"next_before,omitempty"`
}

// Deliveries answers "did event X reach endpoint Y, when, with what
// status?" from the delivery log.
type Deliveries struct {
	// Log is nil when no delivery log is kept.
	Log ports.DeliveryLog
}

// List returns the records matching q, newest first.
func (d *Deliveries) List(ctx context.Context, q DeliveryQuery) (DeliveryPage, error) {
	page := DeliveryPage{Deliveries: []ports.DeliveryRecord{}}
	if d == nil || d.Log == nil {
		return page, ErrNoDeliveryLog
	}
	f, err := q.filter()
	if err != nil {
		return page, err
	}
	recs, err := d.Log.List(ctx, f)
	if err != nil {
		return page, migrateHint(fmt.Errorf("list deliveries: %w", err))
	}
	if recs != nil {
		page.Deliveries = recs
	}
	if len(recs) > 0 && len(recs) == f.Limit {
		page.NextBefore = recs[len(recs)-1].ID
	}
	return page, nil
}

// Check reports what List would refuse in q, before any store is asked
// (the command line checks its flags before it connects).
func (q DeliveryQuery) Check() error {
	_, err := q.filter()
	return err
}

func (q DeliveryQuery) filter() (ports.DeliveryFilter, error) {
	f := ports.DeliveryFilter{EventID: q.EventID, Observer: q.Observer, Endpoint: q.Endpoint, Since: q.Since, Until: q.Until,
		BeforeID: q.Before, Limit: q.Limit}
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	if f.Limit < 1 || f.Limit > MaxDeliveriesLimit {
		return f, &RequestError{Key: "limit", Msg: fmt.Sprintf("%d: want 1 to %d", q.Limit, MaxDeliveriesLimit)}
	}
	if q.Before < 0 {
		return f, &RequestError{Key: "before", Msg: "must not be negative"}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return f, &RequestError{Key: "until", Msg: "must be after since"}
	}
	switch s := strings.ToLower(strings.TrimSpace(q.Status)); s {
	case "":
	case "ok", "succeeded":
		f.Succeeded = true
	case "failed":
		f.Failed = true
	default:
		code, err := strconv.Atoi(s)
		if err != nil || code < 100 || code > 599 {
			return f, &RequestError{Key: "status", Msg: fmt.Sprintf("%q: want ok, failed or an HTTP status code", q.Status)}
		}
		f.StatusCode = code
	}
	return f, nil
}
