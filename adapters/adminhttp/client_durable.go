package adminhttp

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
)

// Resend asks the running service to resend an event
// (POST /api/observers/events/{id}/resend).
func (c *Client) Resend(ctx context.Context, req admin.ResendRequest) (admin.ResendReport, error) {
	var rep admin.ResendReport
	body := map[string]string{"observer": req.Observer, "action": req.Action}
	err := c.callWith(ctx, c.long, http.MethodPost, "/api/observers/events/"+url.PathEscape(req.EventID)+"/resend", body, &rep)
	return rep, err
}

// Deliveries lists the running service's delivery log
// (GET /api/observers/deliveries).
func (c *Client) Deliveries(ctx context.Context, q admin.DeliveryQuery) (admin.DeliveryPage, error) {
	v := url.Values{}
	for key, val := range map[string]string{"event": q.EventID, "observer": q.Observer, "endpoint": q.Endpoint, "status": q.Status} {
		if val != "" {
			v.Set(key, val)
		}
	}
	for key, t := range map[string]time.Time{"since": q.Since, "until": q.Until} {
		if !t.IsZero() {
			v.Set(key, t.UTC().Format(time.RFC3339Nano))
		}
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Before != 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	var page admin.DeliveryPage
	err := c.call(ctx, http.MethodGet, "/api/observers/deliveries?"+v.Encode(), nil, &page)
	return page, err
}
