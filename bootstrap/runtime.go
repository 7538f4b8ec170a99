package bootstrap

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
	"github.com/fraiseql/fraiseql-observer/domain"
)

// This file is the running App's side of the admin API: the operator use
// cases over its stores, and what only a running process knows (ready,
// live status, reload).

// buildAdmin builds the operator use cases over the stores this process
// opened, with the retrier of its own executors (built once).
func (a *App) buildAdmin() {
	var sources []*admin.Store
	for _, b := range a.bridges {
		if b.store != a.primary {
			sources = append(sources, b.store)
		}
	}
	a.state = &admin.State{
		Topology: string(a.cfg.Topology),
		Stores: admin.Stores{Primary: a.primary,
			Sources: func(context.Context) ([]*admin.Store, error) { return sources, nil }},
		Holder: a.holder, LeaseTTL: a.cfg.Reader.LeaseTTL, Logger: a.logger,
		DedupNote: stores.DedupNote(a.cfg),
	}
	if a.memSource != nil {
		// The memory topology's only reader runs here: a replay pauses it
		// (its term ends, saving its checkpoint and releasing its lease),
		// moves the checkpoint and resumes it.
		a.pauser = application.NewPauser(a.primary.Leases)
		a.state.Pause = func(ctx context.Context, checkpoint string) (func(), error) {
			if checkpoint != a.cfg.Reader.Name {
				return func() {}, nil
			}
			return a.pauser.Resume, a.pauser.Pause(ctx)
		}
	}
	if a.primary == nil {
		return
	}
	retrier := func(context.Context) (*application.DeadLetterRetrier, error) { return nil, admin.ErrNoActions }
	if a.dispatcher != nil && a.processor != nil {
		r := &application.DeadLetterRetrier{Store: a.primary.DeadLetters, Executor: a.operatorExecutor(), Matcher: a.processor.Matcher, Now: time.Now}
		retrier = func(context.Context) (*application.DeadLetterRetrier, error) { return r, nil }
	}
	a.deadLetters = &admin.DeadLetters{Store: a.primary.DeadLetters, Retrier: retrier}
	a.deliveries = &admin.Deliveries{Log: a.deliveryLog}
	a.resend = &admin.Resend{Stores: a.state.Stores, Resender: a.resender}
}

// Reload re-reads the observers (main file's inline observers as loaded at
// start, plus observers_file as it is now) and swaps them in. Events
// already started keep the observers they matched; nothing is dropped. On
// error the running observers stay; without observers_file, or in a
// process that runs no observers, it changes nothing and says so
// (admin.ErrNothingToReload).
func (a *App) Reload() error {
	if a.processor == nil {
		a.logger.Info("reload: this process runs no observers (bridge role)")
		return fmt.Errorf("%w: this process runs no observers (bridge role)", admin.ErrNothingToReload)
	}
	if a.cfg.ObserversFile == "" {
		// The main file's observers were read at start; reading them
		// again from what was loaded then changes nothing.
		a.logger.Warn("reload: no observers_file is configured; the observers of the main file are kept as loaded at start (a reload re-reads observers_file only)")
		return fmt.Errorf("%w: no observers_file is configured (the main file's observers are read at start only: restart to change them)", admin.ErrNothingToReload)
	}
	// One reload at a time (SIGHUP and POST /reload may overlap): the file
	// read last is the one swapped in last.
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	obs, err := actions.LoadObservers(a.cfg, a.env)
	if err == nil {
		err = actions.CheckSupported(a.cfg, a.dispatcher, obs)
	}
	if err != nil {
		a.logger.Error("observer reload failed; keeping the running observers", slog.String("error", err.Error()))
		return err
	}
	a.processor.SetMatcher(domain.NewMatcher(obs))
	if a.guard != nil {
		a.guard.Retain(a.processor.Matcher().Observers())
	}
	if a.changeLog != nil {
		a.changeLog.SetEntities(a.observedEntities())
	}
	a.logger.Info("observers reloaded", slog.Int("observers", len(obs)))
	a.warnUnusedOverrides(obs)
	if a.cfg.Performance.EnableConcurrent {
		if need, have := batchWorkers(obs), batchWorkers(a.startObservers); need > have {
			a.logger.Warn("reload: the batched actions now ask for more workers than were sized at start; batches may wait out max_wait before they fill: restart to resize",
				slog.Int("batch_workers_needed", need), slog.Int("batch_workers_at_start", have))
		}
	}
	return nil
}

// warnUnusedOverrides logs each [[delivery.endpoints]] entry that
// matches no action of observers (in a bridge-only process none apply).
func (a *App) warnUnusedOverrides(observers []domain.Observer) {
	if !a.cfg.Role.RunsWorker() {
		return
	}
	for _, msg := range actions.UnusedEndpointOverrides(a.cfg, observers) {
		a.logger.Warn(msg)
	}
}

// Status returns the service's progress.
func (a *App) Status() admin.LiveStatus {
	st := admin.LiveStatus{Topology: string(a.cfg.Topology), Role: string(a.cfg.Role), Holder: a.holder, Readers: map[string]application.ReaderStatus{}}
	if a.reader != nil {
		st.Readers[a.cfg.Reader.Name] = a.reader.Status()
	}
	for _, b := range a.bridges {
		st.Readers["bridge:"+b.name] = b.reader.Status()
		if st.Bridges == nil {
			st.Bridges = map[string]admin.BridgeCounts{}
		}
		p, d := b.bridge.Counts()
		st.Bridges[b.name] = admin.BridgeCounts{Published: p, Duplicates: d}
	}
	if a.processor != nil {
		st.Observers = len(a.processor.Matcher().Observers())
	}
	return st
}

// PostEvents appends JSON-lines events to the memory topology's source;
// a line that is not an event is refused and reported, and the others go
// on.
func (a *App) PostEvents(ctx context.Context, body io.Reader) (adminhttp.PostedEvents, error) {
	if a.memSource == nil {
		return adminhttp.PostedEvents{}, adminhttp.ErrNoEventInput
	}
	res, err := a.memSource.AppendJSONLines(ctx, body)
	out := adminhttp.PostedEvents{Accepted: res.Appended, Invalid: res.Invalid}
	for _, l := range res.InvalidLines {
		out.InvalidLines = append(out.InvalidLines, adminhttp.InvalidLine{Line: l.Line, Error: l.Error})
	}
	return out, err
}

// listenHTTP opens the admin listener (http.listen; "" disables it).
func (a *App) listenHTTP() error {
	if a.cfg.HTTP.Listen == "" {
		return nil
	}
	token, _ := a.env(a.cfg.HTTP.AdminTokenEnv)
	var metricsToken string
	if name := a.cfg.HTTP.MetricsTokenEnv; name != "" {
		// Closed, not open, when the variable is missing: CheckEnv
		// refuses to start so, and this keeps it so if it did not.
		if metricsToken, _ = a.env(name); metricsToken == "" {
			return &config.ConfigError{File: a.cfg.File, Key: "http.metrics_token_env", Msg: "environment variable " + name + " is not set"}
		}
	}
	h, err := adminhttp.NewHandler(adminhttp.Config{
		Token: token, TokenEnv: a.cfg.HTTP.AdminTokenEnv, MetricsToken: metricsToken, Runtime: a, State: a.state, DeadLetters: a.deadLetters,
		Metrics: a.metrics.Handler(), PProf: a.cfg.HTTP.PProf, Logger: a.logger, Endpoints: a.endpointHealth(), Deliveries: a.deliveries, Resend: a.resend,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
	if err != nil {
		return &config.ConfigError{Key: "http.listen", Msg: err.Error()}
	}
	a.httpLn = ln
	a.onClose(func() { _ = ln.Close() })
	a.httpSrv = adminhttp.NewServer(h, adminhttp.ServerConfig{})
	return nil
}
