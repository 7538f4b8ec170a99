package bootstrap

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/telemetry"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// This file wires the App's telemetry (bootstrap/telemetry): the tracer,
// whose decorators of application are installed only when tracing is on
// (tracing that is off costs nothing), and the gauges that need a query.

// startTracing opens the tracer of the App (nil when off) and flushes it on
// Close.
func (a *App) startTracing(ctx context.Context, version string) error {
	tracer, err := telemetry.OpenTracer(ctx, a.cfg, a.env, version, a.logger)
	if err != nil || tracer == nil {
		return err
	}
	a.tracer = tracer
	a.onClose(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracer.Close(cctx); err != nil {
			a.logger.Warn("tracing: spans not exported at shutdown", slog.String("error", err.Error()))
		}
	})
	return nil
}

// propagate is the webhook executor's trace propagation (nil when
// tracing is off).
func (a *App) propagate() func(context.Context, http.Header) {
	if a.tracer == nil {
		return nil
	}
	return a.tracer.InjectHTTP
}

// gauges are the gauges this process refreshes: the backlog of each
// change log it reads (from the stored checkpoint on a standby), its state
// store's dead letters and parked retries, the oldest open transaction.
func (a *App) gauges() telemetry.Gauges {
	g := telemetry.Gauges{Metrics: a.metrics, Delivery: a.delivery}
	counted := map[string]bool{} // stores by URL: a source may be the primary database
	if a.dlqCount != nil {
		g.DeadLetters = append(g.DeadLetters, a.dlqCount)
		if a.primary != nil {
			counted[a.primary.URL] = true
		}
	}
	for _, b := range a.bridges {
		// A bridge dead-letters what the bus refuses into its source
		// database: a bridge-only process counts those (it had none).
		if c, ok := b.store.DeadLetters.(ports.DeadLetterCounter); ok && !counted[b.store.URL] {
			counted[b.store.URL] = true
			g.DeadLetters = append(g.DeadLetters, c)
		}
	}
	if a.changeLog != nil {
		if a.reader != nil {
			g.Backlogs = append(g.Backlogs, telemetry.BacklogSource{Reader: a.cfg.Reader.Name, Status: a.reader.Status,
				Checkpoints: a.primary.Checkpoints, Count: a.changeLog.Backlog})
		}
		g.ChangeLogs = append(g.ChangeLogs, a.changeLog)
	}
	for _, b := range a.bridges {
		g.Backlogs = append(g.Backlogs, telemetry.BacklogSource{Reader: "bridge:" + b.name, Status: b.reader.Status,
			Checkpoints: b.store.Checkpoints, Count: b.log.Backlog})
		g.ChangeLogs = append(g.ChangeLogs, b.log)
	}
	if a.primary != nil {
		g.Retries = a.primary.Retries
	}
	return g
}
