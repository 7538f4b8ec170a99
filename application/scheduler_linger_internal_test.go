package application

import (
	"testing"
	"testing/synctest"
	"time"
)

// The finisher lingers only while the workers have queued work: at once
// when none is queued, until lingerRuns runs are done, or lingerMax at
// most; a closed stop ends it.
func TestSchedulerLinger(t *testing.T) {
	t.Parallel()
	newSched := func() *Scheduler { return &Scheduler{finWake: make(chan struct{}, 1)} }
	cases := []struct {
		name string
		busy func(s *Scheduler)
		// during runs in the background once linger started.
		during func(s *Scheduler, stop chan struct{})
		want   time.Duration
	}{
		{name: "no queued work", busy: func(*Scheduler) {}, want: 0},
		{name: "queued work, nothing done", busy: func(s *Scheduler) { s.ready = []*entityQueue{{}} }, want: lingerMax},
		{name: "runs prepared ahead, nothing done", busy: func(s *Scheduler) { s.ahead = 1 }, want: lingerMax},
		{name: "enough runs done already", busy: func(s *Scheduler) {
			s.ready = []*entityQueue{{}}
			s.finishing = make([]finishing, lingerRuns)
		}, want: 0},
		{
			name: "runs become done",
			busy: func(s *Scheduler) { s.ready = []*entityQueue{{}} },
			during: func(s *Scheduler, _ chan struct{}) {
				for range lingerRuns {
					time.Sleep(10 * time.Microsecond)
					s.mu.Lock()
					s.finishing = append(s.finishing, finishing{})
					s.mu.Unlock()
					signal(s.finWake)
				}
			},
			want: lingerRuns * 10 * time.Microsecond,
		},
		{
			name: "stop closed",
			busy: func(s *Scheduler) { s.ready = []*entityQueue{{}} },
			during: func(_ *Scheduler, stop chan struct{}) {
				time.Sleep(100 * time.Microsecond)
				close(stop)
			},
			want: 100 * time.Microsecond,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, stop := newSched(), make(chan struct{})
				tc.busy(s)
				if tc.during != nil {
					go tc.during(s, stop)
				}
				start := time.Now()
				s.linger(stop)
				if got := time.Since(start); got != tc.want {
					t.Errorf("linger returned after %v, want %v", got, tc.want)
				}
				synctest.Wait()
			})
		})
	}
}
