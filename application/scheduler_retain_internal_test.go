package application

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// slowFinishProc is a processor whose runs are done at once and whose
// Finish waits for gate.
type slowFinishProc struct{ gate chan struct{} }

func (p *slowFinishProc) Start(_ context.Context, rec ports.Record) *Run { return &Run{Record: rec} }
func (p *slowFinishProc) Prepare(context.Context, ...*Run)               {}
func (p *slowFinishProc) Step(context.Context, *Run) (time.Time, bool)   { return time.Time{}, true }
func (p *slowFinishProc) Finish(context.Context, ...*Run)                { <-p.gate }
func (p *slowFinishProc) Abandon(context.Context, *Run)                  {}
func (p *slowFinishProc) GiveUp(context.Context, *Run, string) bool      { return true }

// Runs that finished leave the finisher's queue for good: the slots its
// backing array keeps hold none (they kept finished runs, and their
// events, alive once traffic stopped: up to a burst's worth beyond the
// reader's byte bound).
func TestSchedulerKeepsNoFinishedRun(t *testing.T) {
	t.Parallel()
	p := &slowFinishProc{gate: make(chan struct{})}
	s, err := NewScheduler(p, SchedulerConfig{MaxConcurrent: 4, Batch: 2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var finished atomic.Int32
	const n = 200
	for i := range n {
		s.Handle(ports.Record{Position: ports.Position{Seq: int64(i + 1)}, Event: domain.Event{ID: fmt.Sprint(i), EntityType: "x",
			EntityID: fmt.Sprint(i % 50), Data: map[string]any{}}}, func() { finished.Add(1) })
	}
	time.Sleep(200 * time.Millisecond) // the finisher waits in Finish; done runs pile up
	close(p.gate)
	deadline := time.Now().Add(10 * time.Second)
	for finished.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d finished", finished.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := 0
	for _, f := range s.finishing[:cap(s.finishing)] {
		if f.head != nil && f.head.run != nil {
			kept++
		}
	}
	if kept > 0 {
		t.Errorf("every event finished; the finisher's queue (len %d) still holds %d finished runs", len(s.finishing), kept)
	}
}
