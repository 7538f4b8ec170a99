package bootstrap

import (
	"context"
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/bootstrap/telemetry"
)

// Ready reports whether the dependencies answer; detail says what failed.
// /readyz answers without a token, so detail names the kind of failure
// only: an error's text can name the database user, database, host and
// port (a connection error does). The errors themselves go to the log,
// once per change of kind (see telemetry.Readiness).
func (a *App) Ready(ctx context.Context) (bool, map[string]string) {
	var deps []telemetry.Dependency
	if a.db != nil {
		deps = append(deps, telemetry.Dependency{Name: "database", Ping: a.db.Ping, Required: true})
	}
	if a.redis != nil {
		// Not required: dedup and caching fail open.
		deps = append(deps, telemetry.Dependency{Name: "redis", Ping: a.redis.Ping, Suffix: ", failing open"})
	}
	if a.nats != nil {
		deps = append(deps, telemetry.Dependency{Name: "nats", Ping: a.nats.Ping, Required: true})
	}
	ok, detail := a.readiness.Check(ctx, deps)
	readerState := func(key string, r *application.Reader, lease *application.LeaseStatus) {
		st := r.Status()
		failing, since, _ := lease.Failing(time.Now(), a.cfg.Reader.LeaseTTL)
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
		case failing:
			// Not a standby: it cannot ask for the lease at all (a database
			// down or not migrated, a table it may not use).
			ok, detail[key] = false, fmt.Sprintf("failing: cannot ask for its lease for %s (the service log has the error; a database not migrated needs `migrate`)",
				since.Round(time.Second))
		default:
			detail[key] = "standby (another replica holds the lease, or starting)"
		}
	}
	if a.reader != nil {
		readerState("reader", a.reader, &a.readerLease)
	}
	for _, b := range a.bridges {
		readerState("bridge:"+b.name, b.reader, &b.lease)
	}
	if a.worker != nil {
		detail["worker"] = "consuming"
	}
	return ok, detail
}
