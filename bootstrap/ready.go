package bootstrap

import (
	"context"
	"errors"
	"fmt"
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
// once per change (see readyLog).
func (a *App) Ready(ctx context.Context) (bool, map[string]string) {
	detail := map[string]string{}
	ok := true
	check := func(key string, ping func(context.Context) error) error {
		pctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
		defer cancel()
		err := ping(pctx)
		a.ready.note(a, key, err)
		if err == nil {
			detail[key] = "ok"
		}
		return err
	}
	if a.db != nil {
		if err := check("database", a.db.Ping); err != nil {
			ok, detail["database"] = false, readyProblem(err)
		}
	}
	if a.redis != nil {
		if err := check("redis", a.redis.Ping); err != nil {
			// Not fatal: dedup and caching fail open.
			detail["redis"] = readyProblem(err) + ", failing open"
		}
	}
	if a.nats != nil {
		if err := check("nats", a.nats.Ping); err != nil {
			ok, detail["nats"] = false, readyProblem(err)
		}
	}
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
// it differs from the one logged last for it, and its recovery, so that a
// probe every few seconds does not repeat the same line.
type readyLog struct {
	mu   sync.Mutex
	last map[string]string // dependency → the error logged last ("" or absent: none)
}

func (l *readyLog) note(a *App, key string, err error) {
	text := ""
	if err != nil {
		text = err.Error()
	}
	l.mu.Lock()
	prev := l.last[key]
	if l.last == nil {
		l.last = map[string]string{}
	}
	l.last[key] = text
	l.mu.Unlock()
	switch {
	case text == prev:
	case err != nil:
		a.logger.Warn("readiness check failed", "dependency", key, "error", err)
	default:
		a.logger.Info("readiness check passes again", "dependency", key)
	}
}
