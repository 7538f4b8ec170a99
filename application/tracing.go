package application

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// Tracing decorators: a span per event (TracedProcessor), per action
// attempt (TracedExecutor) and per bridge publication (TracedHandler),
// over the ports.Tracer port. The composition root installs them only when
// tracing is on; over a tracer that records nothing they allocate nothing.

// Span names and attribute keys.
const (
	SpanEvent   = "fraiseql.event"   // one event through the observers
	SpanAction  = "fraiseql.action"  // one action attempt
	SpanPublish = "fraiseql.publish" // the bridge publishing an event

	AttrEventID      = "fraiseql.event.id"
	AttrEventType    = "fraiseql.event.type"
	AttrEntityType   = "fraiseql.entity.type"
	AttrEntityID     = "fraiseql.entity.id"
	AttrSource       = "fraiseql.source"
	AttrPosition     = "fraiseql.change_log.position" // "txid/seq" of the change-log row
	AttrTxID         = "fraiseql.change_log.txid"
	AttrSeq          = "fraiseql.change_log.seq"
	AttrDelivery     = "fraiseql.delivery"                // the bus's delivery count
	AttrObserver     = "fraiseql.observer"                // the action's observer
	AttrAction       = "fraiseql.action.name"             // the action's name
	AttrActionType   = "fraiseql.action.type"             // webhook, slack, ...
	AttrAttempt      = "fraiseql.action.attempt"          // from 1
	AttrOutcome      = "fraiseql.outcome"                 // see the outcomes below
	AttrEndpointHost = "server.address"                   // where a webhook or Slack action goes
	AttrSucceeded    = "fraiseql.actions.succeeded"       // actions that succeeded
	AttrFailed       = "fraiseql.actions.failed_attempts" // attempts that failed
)

// Action span outcomes (AttrOutcome).
const (
	OutcomeSucceeded = "succeeded"
	OutcomeCached    = "cached"    // the result cache held its success
	OutcomeTransient = "transient" // failed; may succeed when tried again
	OutcomePermanent = "permanent" // failed for good
)

// TracedProcessor is a RunProcessor decorator: a span from Start to Finish
// (or Abandon) of each event, a child of the trace context the event came
// with (Record.Headers: the bridge's publication), and the parent of the
// action spans of every Step.
type TracedProcessor struct {
	next   RunProcessor
	tracer ports.Tracer
}

var _ RunProcessor = (*TracedProcessor)(nil)

// NewTracedProcessor wraps next.
func NewTracedProcessor(next RunProcessor, tracer ports.Tracer) (*TracedProcessor, error) {
	if next == nil || tracer == nil {
		return nil, errors.New("traced processor: processor and tracer are required")
	}
	return &TracedProcessor{next: next, tracer: tracer}, nil
}

func eventAttrs(rec ports.Record) []ports.Attr {
	ev := &rec.Event
	attrs := []ports.Attr{
		ports.StringAttr(AttrEventID, ev.ID),
		ports.StringAttr(AttrEventType, string(ev.EventType)),
		ports.StringAttr(AttrEntityType, ev.EntityType),
		ports.StringAttr(AttrEntityID, ev.EntityID),
	}
	if ev.Source != "" {
		attrs = append(attrs, ports.StringAttr(AttrSource, ev.Source))
	}
	if !rec.Position.IsZero() {
		attrs = append(attrs, ports.StringAttr(AttrPosition, rec.Position.String()),
			ports.IntAttr(AttrTxID, clampInt64(rec.Position.TxID)), ports.IntAttr(AttrSeq, rec.Position.Seq))
	}
	return attrs
}

// Start starts the event's span and the run under it.
func (p *TracedProcessor) Start(ctx context.Context, rec ports.Record) *Run {
	parent := ctx
	if rec.Headers != nil {
		parent = p.tracer.Extract(ctx, rec.Headers)
	}
	sctx, span := p.tracer.Start(parent, SpanEvent, ports.SpanConsumer)
	if span.Recording() {
		span.SetAttributes(eventAttrs(rec)...)
	}
	run := p.next.Start(sctx, rec)
	if sctx != parent || span.Recording() {
		run.span = span
	}
	return run
}

func (p *TracedProcessor) spanOf(run *Run) (ports.Span, bool) {
	return run.span, run.span != nil
}

// in returns ctx carrying run's span.
func (p *TracedProcessor) in(ctx context.Context, run *Run) context.Context {
	if s, ok := p.spanOf(run); ok {
		return p.tracer.With(ctx, s)
	}
	return ctx
}

// Step runs the step under the event's span.
func (p *TracedProcessor) Step(ctx context.Context, run *Run) (time.Time, bool) {
	return p.next.Step(p.in(ctx, run), run)
}

// Prepare delegates under the caller's context (it serves many events).
func (p *TracedProcessor) Prepare(ctx context.Context, runs ...*Run) { p.next.Prepare(ctx, runs...) }

// Finish ends each event's span with its summary. A single run finishes
// under its span; several finish together under the caller's context.
func (p *TracedProcessor) Finish(ctx context.Context, runs ...*Run) {
	if len(runs) == 1 {
		ctx = p.in(ctx, runs[0])
	}
	p.next.Finish(ctx, runs...)
	for _, run := range runs {
		p.end(run, "")
	}
}

// Abandon ends the event's span unfinished.
func (p *TracedProcessor) Abandon(ctx context.Context, run *Run) {
	p.next.Abandon(p.in(ctx, run), run)
	p.end(run, "abandoned")
}

// GiveUp parks what is unfinished under the event's span.
func (p *TracedProcessor) GiveUp(ctx context.Context, run *Run, reason string) bool {
	return p.next.GiveUp(p.in(ctx, run), run, reason)
}

func (p *TracedProcessor) end(run *Run, outcome string) {
	span, ok := p.spanOf(run)
	if !ok {
		return
	}
	run.span = nil
	if span.Recording() {
		s := run.Summary
		switch {
		case outcome != "":
		case run.Record.Err != nil:
			outcome = "invalid" // parked as a dead letter
		case run.Skipped:
			outcome = "duplicate"
		default:
			outcome = OutcomeSucceeded
			for _, d := range s.Actions {
				if d.Outcome == domain.OutcomeDeadLettered || d.Outcome == domain.OutcomeFailedLogged {
					outcome = "failed" // some action failed for good
				}
			}
		}
		span.SetAttributes(ports.StringAttr(AttrOutcome, outcome),
			ports.IntAttr(AttrSucceeded, int64(s.SuccessfulActions)), ports.IntAttr(AttrFailed, int64(s.FailedActions)))
		if run.Attempt > 1 {
			span.SetAttributes(ports.IntAttr(AttrDelivery, int64(run.Attempt)))
		}
	}
	span.End()
}

// TracedExecutor is an ActionExecutor decorator: a span per action
// attempt, a child of the event's span, with the observer, action, action
// type, endpoint host, attempt and outcome. An executor that calls out
// over HTTP propagates the span (the webhook's traceparent header).
type TracedExecutor struct {
	next   ports.ActionExecutor
	tracer ports.Tracer
}

var _ ports.ActionExecutor = (*TracedExecutor)(nil)

// NewTracedExecutor wraps next.
func NewTracedExecutor(next ports.ActionExecutor, tracer ports.Tracer) (*TracedExecutor, error) {
	if next == nil || tracer == nil {
		return nil, errors.New("traced executor: executor and tracer are required")
	}
	return &TracedExecutor{next: next, tracer: tracer}, nil
}

// Execute runs the action under its span.
func (e *TracedExecutor) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	ctx, span := e.tracer.Start(ctx, SpanAction, ports.SpanClient)
	recording := span.Recording()
	if recording {
		span.SetAttributes(
			ports.StringAttr(AttrObserver, obs.Name), ports.StringAttr(AttrAction, act.Name),
			ports.StringAttr(AttrActionType, string(act.Type)), ports.StringAttr(AttrEventID, ev.ID))
		if host := endpointHost(act); host != "" {
			span.SetAttributes(ports.StringAttr(AttrEndpointHost, host))
		}
	}
	err := e.next.Execute(ctx, ev, obs, act)
	if recording {
		note := noteOf(ctx)
		if note != nil && note.attempt > 0 {
			span.SetAttributes(ports.IntAttr(AttrAttempt, int64(note.attempt)))
		}
		outcome := OutcomeSucceeded
		switch {
		case err != nil && domain.IsPermanent(err):
			outcome = OutcomePermanent
		case err != nil:
			outcome = OutcomeTransient
		case note != nil && note.cached:
			outcome = OutcomeCached
		}
		span.SetAttributes(ports.StringAttr(AttrOutcome, outcome))
		if err != nil {
			span.SetError(err)
		}
	}
	span.End()
	return err
}

// endpointHost is where a webhook or Slack action delivers (host, and
// port when given); "" for the other kinds.
func endpointHost(act *domain.Action) string {
	var raw string
	switch {
	case act.Type == domain.ActionWebhook && act.Webhook != nil:
		raw = act.Webhook.URL
	case act.Type == domain.ActionSlack && act.Slack != nil:
		raw = act.Slack.WebhookURL
	}
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// TracedHandler is a Handler decorator for the bridge: a span per event
// published, whose trace context goes with the event as its headers, so
// that a worker's event span is its child.
type TracedHandler struct {
	next   Handler
	tracer ports.Tracer
}

var _ Handler = (*TracedHandler)(nil)

// NewTracedHandler wraps next.
func NewTracedHandler(next Handler, tracer ports.Tracer) (*TracedHandler, error) {
	if next == nil || tracer == nil {
		return nil, errors.New("traced handler: handler and tracer are required")
	}
	return &TracedHandler{next: next, tracer: tracer}, nil
}

// Begin starts a term of the wrapped handler.
func (h *TracedHandler) Begin() { h.next.Begin() }

// Run runs the wrapped handler.
func (h *TracedHandler) Run(ctx context.Context) error { return h.next.Run(ctx) }

// Handle hands rec on with the publication's trace context; the span ends
// when rec is finished (the broker acknowledged it).
func (h *TracedHandler) Handle(rec ports.Record, finish func()) {
	ctx, span := h.tracer.Start(context.Background(), SpanPublish, ports.SpanProducer)
	if span.Recording() {
		span.SetAttributes(eventAttrs(rec)...)
	}
	if ctx != context.Background() {
		hdr := make(ports.Headers, len(rec.Headers)+2)
		for k, v := range rec.Headers {
			hdr[k] = v
		}
		h.tracer.Inject(ctx, hdr)
		rec.Headers = hdr
	}
	h.next.Handle(rec, func() {
		span.End()
		finish()
	})
}

// clampInt64 converts a transaction id for an integer attribute.
func clampInt64(u uint64) int64 {
	if u > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(u)
}
