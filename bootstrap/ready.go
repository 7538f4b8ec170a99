package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// readyCheckTimeout bounds each dependency's check of /readyz.
const readyCheckTimeout = 2 * time.Second

// Ready reports whether the dependencies answer; detail says what failed.
// /readyz answers without a token, so detail names the kind of failure
// only: an error's text can name the database user, database, host and
// port (a connection error does). The errors themselves go to the log,
// once per change of kind (see readyLog).
func (a *App) Ready(ctx context.Context) (bool, map[string]string) {
	var deps []readyDependency
	if a.db != nil {
		deps = append(deps, readyDependency{name: "database", ping: a.db.Ping, required: true})
	}
	if a.redis != nil {
		// Not required: dedup and caching fail open.
		deps = append(deps, readyDependency{name: "redis", ping: a.redis.Ping, suffix: ", failing open"})
	}
	if a.nats != nil {
		deps = append(deps, readyDependency{name: "nats", ping: a.nats.Ping, required: true})
	}
	ok, detail := a.readyChecks.get(ctx, time.Now(), func() (bool, map[string]string) {
		detail := map[string]string{}
		return checkDependencies(ctx, deps, &a.ready, a.logger, detail), detail
	})
	readerState := func(key string, r *application.Reader) {
		st := r.Status()
		switch {
		case st.State == application.ReaderStalled:
			ok, detail[key] = false, fmt.Sprintf("stalled: the checkpoint %s has not moved for %s while %d events are unfinished (reader.stall_after %s)",
				st.Saved, time.Since(st.ProgressAt).Round(time.Second), st.InFlight, a.cfg.Reader.StallAfter)
		case st.Running && st.LastError != "":
			// The reader logs its errors; the status API (behind the
			// token) shows the last one.
			ok, detail[key] = false, "failing: its last read or checkpoint save failed (the service log and /api/observers/status have the error)"
		case st.Running:
			detail[key] = "reading"
		default:
			detail[key] = "standby (another replica holds the lease, or starting)"
		}
	}
	if a.reader != nil {
		readerState("reader", a.reader)
	}
	for _, b := range a.bridges {
		readerState("bridge:"+b.name, b.reader)
	}
	if a.worker != nil {
		detail["worker"] = "consuming"
	}
	return ok, detail
}

// readyDependency is one dependency /readyz checks: ping asks it; a
// required one that fails makes the process not ready; suffix follows its
// failure's kind in the detail.
type readyDependency struct {
	name     string
	ping     func(context.Context) error
	required bool
	suffix   string
}

// checkDependencies pings each dependency (each within readyCheckTimeout),
// writes "ok" or the kind of its failure into detail, logs the failures
// through l, and reports whether every required one answered. A check cut
// short by ctx (the prober gave up) is reported but not logged: it says
// nothing of the dependency.
func checkDependencies(ctx context.Context, deps []readyDependency, l *readyLog, logger *slog.Logger, detail map[string]string) bool {
	ok := true
	for _, d := range deps {
		pctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
		err := d.ping(pctx)
		cancel()
		if ctx.Err() == nil {
			l.note(logger, d.name, err)
		}
		if err == nil {
			detail[d.name] = "ok"
			continue
		}
		detail[d.name] = readyProblem(err) + d.suffix
		if d.required {
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
// check runs at a time, and callers that come meanwhile wait for it.
type readyCache struct {
	mu     sync.Mutex
	at     time.Time
	ok     bool
	detail map[string]string
}

// get returns the last check when it is younger than readyCacheFor at
// now, else runs check (and keeps its answer unless ctx ended: a check
// cut short says nothing of the dependencies). The map is the caller's.
func (c *readyCache) get(ctx context.Context, now time.Time, check func() (bool, map[string]string)) (bool, map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
