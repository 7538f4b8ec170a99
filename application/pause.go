package application

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Pauser lets an operator pause work that RunWithLease runs, to change
// what the lease guards: the memory topology's replay moves the checkpoint
// of its in-process reader this way. Give RunWithLease Lease() and
// Work(fn). Pause ends the current term (the work's context is cancelled,
// the reader saves its checkpoint, RunWithLease releases the lease) and
// keeps new terms from starting until Resume; RunWithLease takes the lease
// again at its next attempt after Resume.
type Pauser struct {
	lease ports.Lease

	mu      sync.Mutex
	paused  bool
	held    bool               // the work's holder has the lease
	pending int                // Acquire calls under way: each may end holding it
	cancel  context.CancelFunc // ends the current term; nil between terms
	changed chan struct{}      // closed and replaced when held changes
}

// NewPauser wraps lease.
func NewPauser(lease ports.Lease) *Pauser {
	return &Pauser{lease: lease, changed: make(chan struct{})}
}

// Lease is the lease RunWithLease must use: while paused it refuses to
// start a term.
func (p *Pauser) Lease() ports.Lease { return pausableLease{p} }

// Work wraps the work RunWithLease runs so that Pause can end its term. A
// term ended by Pause is a clean stop.
func (p *Pauser) Work(fn func(ctx context.Context) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		tctx, cancel := context.WithCancel(ctx)
		defer cancel()
		p.mu.Lock()
		if p.paused {
			p.mu.Unlock()
			return nil // paused while the term began: end it at once
		}
		p.cancel = cancel
		p.mu.Unlock()
		err := fn(tctx)
		p.mu.Lock()
		p.cancel = nil
		p.mu.Unlock()
		if ctx.Err() == nil && tctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil // ended by Pause
		}
		return err
	}
}

// Pause ends the current term and returns once its lease is released, or
// at once when no term runs. No term starts until Resume. When ctx ends
// first, Pause resumes and returns ctx's error.
func (p *Pauser) Pause(ctx context.Context) error {
	p.mu.Lock()
	p.paused = true
	if p.cancel != nil {
		p.cancel()
	}
	for p.held || p.pending > 0 {
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			p.Resume()
			return ctx.Err()
		}
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

// Resume lets terms start again.
func (p *Pauser) Resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}

func (p *Pauser) setHeld(held bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setHeldLocked(held)
}

func (p *Pauser) setHeldLocked(held bool) {
	if p.held != held {
		p.held = held
		p.notifyLocked()
	}
}

func (p *Pauser) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// pausableLease refuses a new term while paused; renewals of a running
// term pass, as it is ending anyway.
type pausableLease struct{ p *Pauser }

func (l pausableLease) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	l.p.mu.Lock()
	if l.p.paused && !l.p.held {
		l.p.mu.Unlock()
		return false, nil
	}
	// Counted while under way, so that a Pause that begins meanwhile waits
	// for its outcome: the store may grant the lease before this returns.
	l.p.pending++
	l.p.mu.Unlock()
	held, err := l.p.lease.Acquire(ctx, name, holder, ttl)
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	l.p.pending--
	if err == nil {
		l.p.setHeldLocked(held)
	}
	l.p.notifyLocked() // a Pause may be waiting for pending to reach 0
	return held, err
}

func (l pausableLease) Release(ctx context.Context, name, holder string) error {
	err := l.p.lease.Release(ctx, name, holder)
	l.p.setHeld(false) // the term is over either way; a lease not released expires
	return err
}
