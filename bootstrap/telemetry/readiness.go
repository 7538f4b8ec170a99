package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// This file is /readyz's check of the dependencies (bootstrap's App.Ready
// adds the readers' states): each failure named by its kind, never by its
// error's text (/readyz takes no token, and a connection error names the
// database user, host and port); the errors logged once per change of
// kind; the answer kept for a second.

// readyCheckTimeout bounds each dependency's check of /readyz.
const readyCheckTimeout = 2 * time.Second

// Readiness checks the dependencies for /readyz. Safe for concurrent use.
type Readiness struct {
	logger *slog.Logger
	log    readyLog
	cache  readyCache
}

// NewReadiness returns a Readiness logging to logger.
func NewReadiness(logger *slog.Logger) *Readiness { return &Readiness{logger: logger} }

// Check pings deps (the answer of a check younger than readyCacheFor is
// reused) and reports whether every required one answers, with each
// one's "ok" or the kind of its failure. The map is the caller's.
func (r *Readiness) Check(ctx context.Context, deps []Dependency) (bool, map[string]string) {
	return r.cache.get(ctx, time.Now, func() (bool, map[string]string) {
		detail := map[string]string{}
		return checkDependencies(ctx, deps, &r.log, r.logger, detail), detail
	})
}

// Dependency is one dependency /readyz checks: Ping asks it; a Required
// one that fails makes the process not ready; Suffix follows its
// failure's kind in the detail.
type Dependency struct {
	Name     string
	Ping     func(context.Context) error
	Required bool
	Suffix   string
}

// checkDependencies pings each dependency (each within readyCheckTimeout),
// writes "ok" or the kind of its failure into detail, logs the failures
// through l, and reports whether every required one answered. A check cut
// short by ctx (the prober gave up) is reported but not logged: it says
// nothing of the dependency.
func checkDependencies(ctx context.Context, deps []Dependency, l *readyLog, logger *slog.Logger, detail map[string]string) bool {
	ok := true
	for _, d := range deps {
		pctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
		err := d.Ping(pctx)
		cancel()
		if ctx.Err() == nil {
			l.note(logger, d.Name, err)
		}
		if err == nil {
			detail[d.Name] = "ok"
			continue
		}
		detail[d.Name] = readyProblem(err) + d.Suffix
		if d.Required {
			ok = false
		}
	}
	return ok
}

// readyCacheFor is how long /readyz answers from the dependencies' last
// check: /readyz takes no token, and a caller asking in a loop must not
// turn into a ping of each dependency per request.
const readyCacheFor = time.Second

// readyCache keeps the dependencies' last check for readyCacheFor; one
// check runs at a time, and callers that come meanwhile wait for it (or
// for their own request to end).
type readyCache struct {
	once   sync.Once
	turn   chan struct{} // held by the caller that reads or checks
	at     time.Time
	ok     bool
	detail map[string]string
}

// get returns the last check when it is younger than readyCacheFor (by
// clock, read once the caller's turn came), else runs check (and keeps
// its answer unless ctx ended: a check cut short says nothing of the
// dependencies). The map is the caller's. A caller whose ctx ends while
// another checks gets not ready at once.
func (c *readyCache) get(ctx context.Context, clock func() time.Time, check func() (bool, map[string]string)) (bool, map[string]string) {
	c.once.Do(func() { c.turn = make(chan struct{}, 1) })
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return false, map[string]string{}
	}
	defer func() { <-c.turn }()
	now := clock()
	if c.detail == nil || now.Sub(c.at) >= readyCacheFor || now.Before(c.at) {
		ok, detail := check()
		if ctx.Err() != nil {
			return ok, detail
		}
		c.at, c.ok, c.detail = now, ok, detail
	}
	return c.ok, maps.Clone(c.detail)
}

// readyProblem is what /readyz says of a dependency whose check failed
// with err: the kind of failure, never the error's text.
func readyProblem(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("unreachable: no answer within %s (the service log has the error)", readyCheckTimeout)
	case errors.Is(err, ports.ErrUnavailable):
		return "unreachable (the service log has the error)"
	default:
		return "failing (the service log has the error)"
	}
}

// readyLog logs the errors of /readyz's checks: a dependency's error when
// the kind of its failure (readyProblem) differs from the last one logged
// for it, and its recovery, so that a probe every few seconds does not
// repeat the same line (an error's text can change at every probe: a
// local port, a timing).
type readyLog struct {
	mu   sync.Mutex
	last map[string]string // dependency → the kind of failure logged last (absent: none)
}

// note records key's check; the log line is written under the lock, so
// that concurrent probes log a failure and its recovery in their order.
func (l *readyLog) note(logger *slog.Logger, key string, err error) {
	kind := ""
	if err != nil {
		kind = readyProblem(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := l.last[key]
	if kind == prev {
		return
	}
	if l.last == nil {
		l.last = map[string]string{}
	}
	l.last[key] = kind
	if err != nil {
		logger.Warn("readiness check failed", "dependency", key, "error", err)
	} else {
		logger.Info("readiness check passes again", "dependency", key)
	}
}
