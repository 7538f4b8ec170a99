package application

import (
	"context"
	"sync"
	"time"
)

// pulse calls fire for each of its beats (an event's claim, a message in
// progress) at most every interval while the beat lasts, with one timer for
// all of them: a beat costs a map entry, where a timer of its own cost six
// allocations and a timer-heap insertion and removal per step (nearly every
// step ends long before its first beat).
//
// The timer ticks every interval/2 while any beat is registered; a beat
// fires at the second tick after it was added or last fired, so between
// interval/2 and interval after it (a lease renewed every interval is
// therefore never renewed later than before). Fires run one goroutine per
// due beat, so a slow call for one does not hold up the others.
type pulse[K any] struct {
	half time.Duration
	fire func(context.Context, K)

	mu    sync.Mutex
	idle  sync.Cond // signalled when a fire returns
	beats map[*beat[K]]struct{}
	tick  uint64 // ticks so far
	timer *time.Timer
}

// beat is one registration; stop it with pulse.stop.
type beat[K any] struct {
	ctx     context.Context
	key     K
	at      uint64 // the tick it was added or last fired at
	running bool
}

func newPulse[K any](interval time.Duration, fire func(context.Context, K)) *pulse[K] {
	p := &pulse[K]{half: max(interval/2, time.Millisecond/2), fire: fire, beats: map[*beat[K]]struct{}{}}
	p.idle.L = &p.mu
	return p
}

// start registers a beat for key; fire gets ctx, and is not called once
// ctx has ended.
func (p *pulse[K]) start(ctx context.Context, key K) *beat[K] {
	b := &beat[K]{ctx: ctx, key: key}
	p.mu.Lock()
	b.at = p.tick
	p.beats[b] = struct{}{}
	if p.timer == nil {
		p.timer = time.AfterFunc(p.half, p.onTick)
	}
	p.mu.Unlock()
	return b
}

// stop ends b and returns once no fire for it is running; no fire for it
// starts afterwards.
func (p *pulse[K]) stop(b *beat[K]) {
	p.mu.Lock()
	delete(p.beats, b)
	for b.running {
		p.idle.Wait()
	}
	p.mu.Unlock()
}

// onTick fires the beats that are due and re-arms the timer while any
// beat is left. A beat whose fire is still running is not due.
func (p *pulse[K]) onTick() {
	p.mu.Lock()
	p.tick++
	var due []*beat[K]
	for b := range p.beats {
		if b.running || p.tick-b.at < 2 {
			continue
		}
		if b.ctx.Err() != nil {
			continue
		}
		b.running = true
		due = append(due, b)
	}
	if len(p.beats) > 0 {
		p.timer.Reset(p.half)
	} else {
		p.timer = nil
	}
	p.mu.Unlock()
	for _, b := range due {
		go p.run(b)
	}
}

// run fires b, then counts its next interval from the tick it ended in.
func (p *pulse[K]) run(b *beat[K]) {
	p.fire(b.ctx, b.key)
	p.mu.Lock()
	b.running = false
	b.at = p.tick
	p.idle.Broadcast()
	p.mu.Unlock()
}
