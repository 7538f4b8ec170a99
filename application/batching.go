package application

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// batchOverhead bounds what a batch document adds to its entries besides
// one separator per entry (its envelope and id).
const batchOverhead = 128

// BatcherConfig configures a Batcher.
type BatcherConfig struct {
	// Bodies renders each event's entry of a batch (the Dispatcher).
	Bodies ports.BatchExecutor
	Logger *slog.Logger
	Now    func() time.Time
	// MaxRegroups bounds how many events of failed batches are remembered
	// to form their batch again (default 100 000); past it, events come
	// back into new batches (with new ids).
	MaxRegroups int
}

// Batcher is an ActionExecutor decorator that delivers the events of
// batched actions (domain.BatchingOf) in batches; other actions go to next
// as they are. Execute of a batched action enters its event into the batch
// forming for the observer's action and returns when that batch's request
// is answered, with the batch's outcome: every event of a batch succeeds,
// fails for good or is retried together. A batch is sent when it holds
// max_events events, when the next event would take its body over
// max_bytes (an event alone over it goes as a batch of one), or max_wait
// after its first event joined. The request goes through next with the
// batch in its context (the endpoint guard counts it as one attempt), down
// to the Dispatcher, which hands it to the action type's BatchExecutor.
//
// Order: the scheduler runs an entity's events one after the other and
// Execute blocks until the outcome, so an entity has at most one event in
// the batches in flight: its events stay in order within and across
// batches.
//
// A batch that fails transiently returns to every member the same retry
// delay (at least the observer policy's longest delay for the members'
// attempt, and the receiver's Retry-After), so they come back together;
// the batch's members are remembered (bounded by count and time) and form
// a batch of their own when they come back, which keeps its id
// (domain.BatchID) when it holds exactly the same events. Events that do
// not come back in time (parked, dead-lettered) are not waited for beyond
// max_wait. Memory: a batch holds at most max_events events and max_bytes
// bytes, and every event in a batch holds its caller's goroutine.
type Batcher struct {
	next ports.ActionExecutor
	cfg  BatcherConfig

	mu      sync.Mutex
	open    map[batchKey]*pendingBatch
	regroup map[regroupKey]regroupPlace
}

var _ ports.ActionExecutor = (*Batcher)(nil)

type batchKey struct {
	obs *domain.Observer
	act *domain.Action
}

type regroupKey struct{ observer, action, event string }

// regroupPlace is where an event of a failed batch goes back: its batch,
// at its index there.
type regroupPlace struct {
	group *regroupGroup
	index int
}

// regroupGroup is a failed batch whose members are expected back.
type regroupGroup struct {
	key     batchKey
	members int
	until   time.Time
	batch   *pendingBatch // forming from returning members, nil until the first
}

type pendingBatch struct {
	key     batchKey
	limits  domain.Batching
	group   *regroupGroup // nil for a batch of fresh events
	members []*batchMember
	bytes   int
	timer   *time.Timer
	sent    bool // detached: members are frozen

	ctx    context.Context
	cancel context.CancelFunc
	left   int // members that stopped waiting after it was sent

	done chan struct{}
	err  error
}

type batchMember struct {
	ctx     context.Context
	ev      *domain.Event
	body    []byte
	attempt int
	index   int // in the failed batch it forms again
}

// NewBatcher wraps next.
func NewBatcher(next ports.ActionExecutor, cfg BatcherConfig) (*Batcher, error) {
	if next == nil || cfg.Bodies == nil || cfg.Logger == nil {
		return nil, errors.New("batcher: executor, bodies and logger are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.MaxRegroups = cmp.Or(cfg.MaxRegroups, 100_000)
	return &Batcher{next: next, cfg: cfg, open: map[batchKey]*pendingBatch{}, regroup: map[regroupKey]regroupPlace{}}, nil
}

// Execute runs act for ev: in a batch when act is batched.
func (bt *Batcher) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	limits := domain.BatchingOf(act)
	if limits == nil || ev == nil || obs == nil {
		return bt.next.Execute(ctx, ev, obs, act)
	}
	body, err := bt.cfg.Bodies.BatchBody(ctx, ev, obs, act)
	if err != nil {
		return err
	}
	m := &batchMember{ctx: ctx, ev: ev, body: body, attempt: 1}
	if n, ok := ctx.Value(attemptNoteKey{}).(*attemptNote); ok {
		m.attempt = n.attempt
	}
	p, flush := bt.join(batchKey{obs, act}, *limits, m)
	for _, f := range flush {
		go bt.flush(f)
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		bt.leave(p, m)
		return domain.Transient(fmt.Errorf("batch: %w", context.Cause(ctx)), 0)
	}
}

// join enters m into the batch it belongs to and returns that batch and
// the batches to send now.
func (bt *Batcher) join(key batchKey, limits domain.Batching, m *batchMember) (*pendingBatch, []*pendingBatch) {
	size := len(m.body) + 1
	now := bt.cfg.Now()
	bt.mu.Lock()
	defer bt.mu.Unlock()
	var flush []*pendingBatch
	var p *pendingBatch
	rk := regroupKey{key.obs.Name, key.act.Name, m.ev.ID}
	if place, ok := bt.regroup[rk]; ok {
		delete(bt.regroup, rk)
		g := place.group
		m.index = place.index
		if g.key == key && now.Before(g.until) {
			if g.batch == nil {
				g.batch = newPendingBatch(key, limits, g)
			}
			p = g.batch
		}
	}
	if p == nil {
		p = bt.open[key]
		if p != nil && p.bytes+size+batchOverhead > limits.MaxBytes {
			bt.detachLocked(p)
			flush = append(flush, p)
			p = nil
		}
		if p == nil {
			p = newPendingBatch(key, limits, nil)
			bt.open[key] = p
		}
	}
	p.members = append(p.members, m)
	p.bytes += size
	full := len(p.members) >= limits.MaxEvents || p.bytes+batchOverhead >= limits.MaxBytes ||
		p.group != nil && len(p.members) >= p.group.members
	switch {
	case full:
		bt.detachLocked(p)
		flush = append(flush, p)
	case len(p.members) == 1:
		p.timer = time.AfterFunc(limits.MaxWait, func() { bt.expire(p) })
	}
	return p, flush
}

func newPendingBatch(key batchKey, limits domain.Batching, g *regroupGroup) *pendingBatch {
	return &pendingBatch{key: key, limits: limits, group: g, done: make(chan struct{})}
}

// detachLocked closes p to new members; bt.mu must be held and p must
// have a member.
func (bt *Batcher) detachLocked(p *pendingBatch) {
	if p.group == nil {
		if bt.open[p.key] == p {
			delete(bt.open, p.key)
		}
	} else if p.group.batch == p {
		p.group.batch = nil
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.sent = true
	if p.group != nil { // in the failed batch's order: the same events make the same id
		slices.SortFunc(p.members, func(a, b *batchMember) int { return cmp.Compare(a.index, b.index) })
	}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(p.members[0].ctx))
}

// expire sends p when its max_wait is over.
func (bt *Batcher) expire(p *pendingBatch) {
	bt.mu.Lock()
	if p.sent || len(p.members) == 0 {
		bt.mu.Unlock()
		return
	}
	bt.detachLocked(p)
	bt.mu.Unlock()
	bt.flush(p)
}

// leave takes a member whose caller stopped waiting out of p; a batch
// that every member left is not sent, or its request is cancelled.
func (bt *Batcher) leave(p *pendingBatch, m *batchMember) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if p.sent {
		p.left++
		if p.left == len(p.members) {
			p.cancel()
		}
		return
	}
	for i, x := range p.members {
		if x == m {
			p.members = append(p.members[:i], p.members[i+1:]...)
			p.bytes -= len(m.body) + 1
			break
		}
	}
	if len(p.members) > 0 {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.group == nil && bt.open[p.key] == p {
		delete(bt.open, p.key)
	} else if p.group != nil && p.group.batch == p {
		p.group.batch = nil
	}
}

// flush sends p and hands its outcome to every member.
func (bt *Batcher) flush(p *pendingBatch) {
	obs, act := p.key.obs, p.key.act
	ids := make([]string, len(p.members))
	events := make([]ports.BatchEvent, len(p.members))
	wants := false
	for i, m := range p.members {
		ids[i] = m.ev.ID
		events[i] = ports.BatchEvent{Event: m.ev, Body: m.body}
		wants = wants || ports.WantsResponse(m.ctx)
	}
	b := &ports.ActionBatch{ID: domain.BatchID(obs.Name, act.Name, ids), Observer: obs, Action: act, Events: events}
	ctx := context.WithValue(p.ctx, actionBatchKey{}, b)
	var note *ports.ResponseNote
	if wants {
		ctx, note = ports.WithResponseNote(ctx)
	}
	err := bt.next.Execute(ctx, p.members[0].ev, obs, act)
	cancelled := p.ctx.Err() != nil
	p.cancel()
	if note != nil {
		status, body := note.Get()
		for _, m := range p.members {
			ports.NoteResponse(m.ctx, status, body)
		}
	}
	if err != nil && !cancelled {
		err = bt.failed(p, b.ID, err)
	}
	p.err = err
	close(p.done)
}

// failed shapes the error every member of a failed batch gets and
// remembers the members of a batch that will be retried.
func (bt *Batcher) failed(p *pendingBatch, id string, err error) error {
	if domain.IsPermanent(err) {
		return fmt.Errorf("batch %s of %d events: %w", id, len(p.members), err)
	}
	now := bt.cfg.Now()
	var back time.Duration
	if d, ok := domain.AsDeferred(err); ok {
		back = d.Until.Sub(now) // not an attempt: each member comes back then
	} else {
		attempt := 1
		for _, m := range p.members {
			attempt = max(attempt, m.attempt)
		}
		// The longest delay the policy may pick for this attempt, so
		// every member's retry is due at the same time.
		back = max(p.key.obs.Retry.Delay(attempt, 1), domain.RetryAfter(err))
		inner := err
		var ae *domain.ActionError
		if errors.As(err, &ae) {
			inner = ae.Err
		}
		err = domain.Transient(fmt.Errorf("batch %s of %d events: %w", id, len(p.members), inner), back)
	}
	bt.remember(p, now.Add(max(back, 0)+2*p.limits.MaxWait+time.Second))
	return err
}

// remember records p's members to form their batch again until until.
func (bt *Batcher) remember(p *pendingBatch, until time.Time) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if len(bt.regroup)+len(p.members) > bt.cfg.MaxRegroups {
		now := bt.cfg.Now()
		for k, g := range bt.regroup {
			if !now.Before(g.group.until) {
				delete(bt.regroup, k)
			}
		}
		if len(bt.regroup)+len(p.members) > bt.cfg.MaxRegroups {
			bt.cfg.Logger.Warn("too many events of failed batches remembered: these come back in new batches",
				slog.Int("events", len(p.members)), slog.Int("max", bt.cfg.MaxRegroups))
			return
		}
	}
	g := &regroupGroup{key: p.key, members: len(p.members), until: until}
	for i, m := range p.members {
		bt.regroup[regroupKey{p.key.obs.Name, p.key.act.Name, m.ev.ID}] = regroupPlace{group: g, index: i}
	}
}

type actionBatchKey struct{}

// batchOf returns the batch a Batcher is sending under ctx, or nil.
func batchOf(ctx context.Context) *ports.ActionBatch {
	b, _ := ctx.Value(actionBatchKey{}).(*ports.ActionBatch)
	return b
}
