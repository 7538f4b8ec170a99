package adminhttp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
)

// durableRoutes serves durable delivery: endpoint health, the delivery
// log and resend.
func (s *server) durableRoutes(api router) {
	if s.Resend != nil {
		api.HandleFunc("POST /api/observers/events/{id}/resend", s.resend)
	}
	if s.Endpoints != nil {
		api.HandleFunc("GET /api/observers/endpoints", func(w http.ResponseWriter, r *http.Request) {
			views, err := s.Endpoints.List(r.Context())
			if err != nil {
				writeStoreError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"endpoints": views})
		})
	}
	if s.Deliveries != nil {
		api.HandleFunc("GET /api/observers/deliveries", func(w http.ResponseWriter, r *http.Request) {
			q, err := deliveryQuery(r, s.Now())
			if err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
			page, err := s.Deliveries.List(r.Context(), q)
			if err != nil {
				writeDurableError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, page)
		})
	}
}

// resend re-runs an event's actions; the body is optional.
func (s *server) resend(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Observer string `json:"observer"`
		Action   string `json:"action"`
	}
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &body); err != nil && !errors.Is(err, io.EOF) {
			writeBodyError(w, err, `{"observer": "", "action": ""}`)
			return
		}
	}
	lr := startLongRunning(w, s.Now)
	rep, err := s.Resend.Resend(r.Context(), admin.ResendRequest{EventID: r.PathValue("id"), Observer: body.Observer, Action: body.Action})
	lr.answer()
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// writeDurableError is writeStoreError, with 503 for a deployment that
// keeps no delivery log.
func writeDurableError(w http.ResponseWriter, err error) {
	if errors.Is(err, admin.ErrNoDeliveryLog) {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeStoreError(w, err)
}

// deliveryQuery reads the delivery-log filters of a query string; since
// and until take an RFC 3339 time or a duration meaning that long ago.
func deliveryQuery(r *http.Request, now time.Time) (admin.DeliveryQuery, error) {
	v := r.URL.Query()
	q := admin.DeliveryQuery{EventID: v.Get("event"), Observer: v.Get("observer"), Endpoint: v.Get("endpoint"), Status: v.Get("status")}
	if err := onlyParams(r, "event", "observer", "endpoint", "status", "since", "until", "limit", "before"); err != nil {
		return q, err
	}
	for _, t := range []struct {
		key string
		dst *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(t.key); s != "" {
			at, err := admin.ParseSince(s, now)
			if err != nil {
				return q, fmt.Errorf("%s %w", t.key, err)
			}
			*t.dst = at
		}
	}
	for _, n := range []struct {
		key string
		dst *int64
	}{{"limit", nil}, {"before", &q.Before}} {
		s := v.Get(n.key)
		if s == "" {
			continue
		}
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || i < 0 {
			return q, fmt.Errorf("%s %q: want a non-negative integer", n.key, s)
		}
		if n.dst == nil {
			// Past the bound the use case names, said with the value sent
			// (a clamp would name one the caller never wrote).
			if i > admin.MaxDeliveriesLimit {
				return q, fmt.Errorf("limit %q: want 1 to %d", s, admin.MaxDeliveriesLimit)
			}
			q.Limit = int(i)
		} else {
			*n.dst = i
		}
	}
	return q, nil
}
