package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

var _ ports.BatchExecutor = (*Executor)(nil)

// BatchBody renders ev's entry of a batch: the body the unbatched request
// would send (the envelope, or the rendered body template). A template
// whose output is not JSON is entered as a JSON string of that output, so
// the batch document stays JSON.
func (e *Executor) BatchBody(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) ([]byte, error) {
	if act == nil || act.Webhook == nil {
		return nil, domain.Permanent(errors.New("webhook: action has no webhook config"))
	}
	if ev == nil {
		return nil, domain.Permanent(errors.New("webhook: no event"))
	}
	body, err := e.body(ctx, ev, obs, act)
	if err != nil {
		method, target, terr := e.requestTarget(act)
		if terr != nil {
			return nil, terr
		}
		return nil, domain.Permanent(fmt.Errorf("webhook: %s %s: %w", method, target, err))
	}
	return batchEntry(body, act.Webhook.BodyTemplate != nil), nil
}

// batchEntry is body as an entry of the events array: as it is when it is
// JSON (an envelope always is), else as a JSON string.
func batchEntry(body []byte, templated bool) []byte {
	if !templated || json.Valid(body) {
		return body
	}
	s, _ := json.Marshal(string(body)) // a string always encodes
	return s
}

// ExecuteBatch sends every event of b in one request: the batch document
// (BatchDocument), signed once per the Standard Webhooks specification
// with webhook-id b.ID and each signing secret, with the action's method,
// headers and timeout. The answer is classified as Execute classifies it,
// for the whole batch.
func (e *Executor) ExecuteBatch(ctx context.Context, b ports.ActionBatch) error {
	if b.Action == nil || b.Action.Webhook == nil {
		return domain.Permanent(errors.New("webhook: action has no webhook config"))
	}
	if len(b.Events) == 0 {
		return domain.Permanent(errors.New("webhook: empty batch"))
	}
	method, target, err := e.requestTarget(b.Action)
	if err != nil {
		return err
	}
	return e.deliver(ctx, b.Action, method, target, b.ID, BatchDocument(b))
}

// BatchDocument is the body of a batch request:
//
//	{"type":"batch","batch_id":"<b.ID>","count":<n>,"events":[<entry>,...]}
//
// with each event's entry (BatchEvent.Body) as it is, in order.
func BatchDocument(b ports.ActionBatch) []byte {
	n := 64 + len(b.ID)
	for _, ev := range b.Events {
		n += len(ev.Body) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, `{"type":"batch","batch_id":`...)
	out = strconv.AppendQuote(out, b.ID)
	out = append(out, `,"count":`...)
	out = strconv.AppendInt(out, int64(len(b.Events)), 10)
	out = append(out, `,"events":[`...)
	for i, ev := range b.Events {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, ev.Body...)
	}
	return append(out, "]}"...)
}
