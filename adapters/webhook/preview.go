package webhook

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// RequestPreview is the request a webhook action would send. Signing
// secrets show only as their number; header values from the environment
// (headers_env), other header values and URL parts that may hold
// credentials are redacted.
type RequestPreview struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	// Signing is "unsigned", "signed with 1 secret" or "signed with N
	// secrets" (one signature per secret, while a receiver rotates).
	Signing    string `json:"signing"`
	Signatures int    `json:"signatures"`
	Body       string `json:"body"`
	// Batch is the batching of a batched action (nil: one request per
	// event); Body then shows the batch document with this event alone.
	Batch *BatchPreview `json:"batch,omitempty"`
}

// BatchPreview is a batched action's batching.
type BatchPreview struct {
	MaxEvents int    `json:"max_events"`
	MaxBytes  int    `json:"max_bytes"`
	MaxWait   string `json:"max_wait"`
}

// Previewer describes webhook actions for the dry run.
var Previewer ports.ActionPreviewer = ports.ActionPreviewerFunc(Preview)

// Preview renders the request act would send for ev, without sending it.
func Preview(ev *domain.Event, obs *domain.Observer, act *domain.Action) ports.ActionPreview {
	wh := act.Webhook
	if wh == nil {
		return ports.ActionPreview{Problem: "the webhook action has no configuration"}
	}
	var p ports.ActionPreview
	body := ""
	if wh.BodyTemplate != nil {
		body, p.Missing = wh.BodyTemplate.Render(ev, domain.EscapeJSON)
	} else if b, err := ev.Envelope(); err == nil {
		body = string(b)
	} else {
		p.Problem = "the event envelope cannot be encoded: " + err.Error()
	}
	id := domain.DeliveryID(ev.ID, obs.Name, act.Name)
	if wh.Batch != nil && p.Problem == "" {
		// A batched action sends the batch document; shown with this
		// event alone, as a batch of one.
		id = domain.BatchID(obs.Name, act.Name, []string{ev.ID})
		body = string(BatchDocument(ports.ActionBatch{ID: id, Events: []ports.BatchEvent{{Event: ev,
			Body: batchEntry([]byte(body), wh.BodyTemplate != nil)}}}))
	}
	headers := map[string]string{
		"Content-Type":      "application/json",
		"webhook-id":        id,
		"webhook-timestamp": "(unix time of sending)",
	}
	for k, v := range wh.Headers {
		headers[k] = redactHeader(k, v)
	}
	for k := range wh.SecretHeaders {
		headers[k] = redacted + " (from the environment)"
	}
	n := len(wh.SigningSecrets)
	signing := "unsigned"
	switch {
	case n == 1:
		signing = "signed with 1 secret"
	case n > 1:
		signing = fmt.Sprintf("signed with %d secrets", n)
	}
	req := RequestPreview{Method: wh.Method, URL: domain.RedactActionURL(wh.URL), Headers: headers, Signing: signing, Signatures: n, Body: body}
	if b := wh.Batch; b != nil {
		req.Batch = &BatchPreview{MaxEvents: b.MaxEvents, MaxBytes: b.MaxBytes, MaxWait: b.MaxWait.String()}
	}
	p.Details = req
	p.Lines = append(p.Lines, req.Method+" "+req.URL+" ("+req.Signing+")")
	if b := req.Batch; b != nil {
		p.Lines = append(p.Lines, fmt.Sprintf("batched: up to %d events or %d bytes per request, sent at most %s after its first event; "+
			"the body below is this event's batch of one, each event of a batch is one entry of \"events\"", b.MaxEvents, b.MaxBytes, b.MaxWait))
	}
	for _, k := range slices.Sorted(maps.Keys(req.Headers)) {
		p.Lines = append(p.Lines, k+": "+req.Headers[k])
	}
	p.Lines = append(p.Lines, "body: "+req.Body)
	return p
}

// sensitiveHeader reports header names whose values are credentials.
func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	if n == "authorization" || n == "proxy-authorization" || n == "cookie" {
		return true
	}
	for _, s := range []string{"token", "secret", "key", "password", "auth", "signature"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func redactHeader(name, value string) string {
	if sensitiveHeader(name) {
		return redacted
	}
	return value
}
