package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// options are the harness's settings (the flags).
type options struct {
	Bin          string
	Topologies   []string
	Rows         int
	Duration     time.Duration // per rate
	Rates        []int
	Runs         int
	PprofDir     string
	TraceDir     string        // per-event times of each steady phase, as CSV
	Profile      time.Duration // length of each CPU profile
	Clients      []int         // pgbench clients of the write ceiling
	WriteLength  time.Duration // each pgbench run
	WriteRounds  int           // rounds of the write ceiling per client count
	HammerConns  int
	HammerLength time.Duration
	Writers      int    // connections of the steady-rate writer
	Batches      []int  // webhook variants per topology: 0 one event per request, n batches of up to n events
	Wake         string // database.wake of the measured topologies: notify or poll
	// CeilingObserver is the observer of the service during the write
	// ceiling: ceilingOther (an entity pgbench does not write: its rows
	// are skipped in the read's query) or ceilingEvery (every entity, a
	// condition no row meets: each row is read, decoded and evaluated).
	CeilingObserver string
	Services        services
}

// column is the table column of a topology's variant: the topology's
// name alone when the only variant is one event per request, else the
// name and the variant.
func (o options) column(topo string, batch int) string {
	if len(o.Batches) == 1 && o.Batches[0] == 0 {
		return topo
	}
	return topo + ", " + batchLabel(batch)
}

// batchLabel names a webhook variant.
func batchLabel(batch int) string {
	if batch == 0 {
		return "one per request"
	}
	return fmt.Sprintf("batches of %d", batch)
}

// harness runs the measurements of one invocation.
type harness struct {
	opt    options
	log    *slog.Logger
	dir    string // temp dir: configs, service logs
	recv   *receiver
	hz     int64
	token  string
	figs   *figures
	runIdx int
	// servers are the local servers found, in the rows' order
	// (PostgreSQL, Redis, NATS): the drain's CPU of each is a row of its
	// own.
	servers []server
}

func newHarness(opt options, log *slog.Logger) (*harness, error) {
	dir, err := os.MkdirTemp("", "fraiseql-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	recv, err := startReceiver()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	h := &harness{opt: opt, log: log, dir: dir, recv: recv, hz: clockTicks(), token: randomName("t"), figs: newFigures()}
	for _, c := range []struct {
		name, url string
		port      int
	}{{serverPostgreSQL, opt.Services.DatabaseURL, 5432}, {serverRedis, opt.Services.RedisURL, 6379}, {serverNATS, opt.Services.NATSURL, 4222}} {
		if srv, ok := localServer(c.name, c.url, c.port); ok {
			h.servers = append(h.servers, srv)
		} else {
			log.Info("server not measured: not a process of this machine that this one can read", "server", c.name)
		}
	}
	return h, nil
}

// Server names, as the rows name them.
const (
	serverPostgreSQL = "PostgreSQL"
	serverRedis      = "Redis"
	serverNATS       = "NATS"
)

// serverRow is the drain's row of a server's CPU.
func serverRow(name string) string {
	return "drain, " + name + " server's CPU s per 10k events (of the machine's)"
}

// serversOf are the local servers topo uses.
func (h *harness) serversOf(topo string) []server {
	names := []string{serverPostgreSQL}
	switch topo {
	case topoPostgresRedis:
		names = append(names, serverRedis)
	case topoDistributed:
		names = append(names, serverRedis, serverNATS)
	}
	var out []server
	for _, s := range h.servers {
		if slices.Contains(names, s.name) {
			out = append(out, s)
		}
	}
	return out
}

// serverTicks reads the CPU of each of servers, in clock ticks; a server
// that cannot be read is left out (-1).
func serverTicks(servers []server) []int64 {
	out := make([]int64, len(servers))
	for i, s := range servers {
		n, err := s.cpuTicks()
		if err != nil {
			n = -1
		}
		out[i] = n
	}
	return out
}

func (h *harness) close() {
	h.recv.close()
	_ = os.RemoveAll(h.dir)
}

// run measures everything opt.Runs times.
func (h *harness) run(ctx context.Context) error {
	for i := range h.opt.Runs {
		h.runIdx = i
		h.log.Info("run", "n", i+1, "of", h.opt.Runs)
		if err := h.ceilings(ctx); err != nil {
			return err
		}
		for _, topo := range h.opt.Topologies {
			for _, batch := range h.opt.Batches { // the variants alternate: same load, side by side
				if err := h.topology(ctx, topo, batch); err != nil {
					return fmt.Errorf("%s: %w", h.opt.column(topo, batch), err)
				}
			}
		}
		h.drainShares()
	}
	return nil
}

// drainRow is the topologies table's row of the drain rate.
func (o options) drainRow() string { return fmt.Sprintf("drain %d events, events/s", o.Rows) }

// drainFirstRow is the row of the time from the processes' start to the
// drain's first delivery: start-up (connections, migrations, a stream and
// consumer) and the first read, which the drain rate includes.
const drainFirstRow = "drain, start to first delivery, s"

// drainShareRow is the row of each topology's drain rate as a share of
// postgres-only's with the same webhook variant, in the same run.
const drainShareRow = "drain, share of postgres-only's in the same run"

// drainShares records, for the run just measured, each other topology's
// drain rate over postgres-only's with the same webhook variant (the
// issue's targets are such ratios, and the machine's speed drifts too
// much between runs to divide figures of different runs). Nothing is
// recorded without a postgres-only drain in the run.
func (h *harness) drainShares() {
	last := func(col string) (float64, bool) {
		vs := h.figs.vals[figKey{tableTopologies, h.opt.drainRow(), col}]
		if len(vs) <= h.runIdx {
			return 0, false
		}
		return vs[h.runIdx], true
	}
	for _, batch := range h.opt.Batches {
		base, ok := last(h.opt.column(topoPostgresOnly, batch))
		if !ok || base <= 0 {
			continue
		}
		for _, topo := range h.opt.Topologies {
			if topo == topoPostgresOnly {
				continue
			}
			if v, ok := last(h.opt.column(topo, batch)); ok {
				h.figs.add(tableTopologies, drainShareRow, h.opt.column(topo, batch), v/base)
			}
		}
	}
}

// processes are the names and roles of a topology's processes.
func processes(topo string) (product string, names, roles []string) {
	switch topo {
	case topoPostgresRedis:
		return "postgres-redis", []string{"service"}, []string{""}
	case topoDistributed:
		return "nats-distributed", []string{"bridge", "worker1", "worker2"}, []string{"bridge", "worker", "worker"}
	default:
		return "postgres-only", []string{"service"}, []string{""}
	}
}

// prepare writes the configuration of every process of topo on db, its
// webhook batched when batch > 0, waking as wake says (database.wake),
// and migrates db with the binary (which installs the notify trigger or,
// for poll, drops it);
// cleanup removes the run's Redis keys and stream.
func (h *harness) prepare(ctx context.Context, topo string, batch int, db *database, hookURL, wake string) (cfgs, names []string, cleanup func() error, err error) {
	product, names, roles := processes(topo)
	base := serviceConfig{Topology: product, DatabaseURL: db.URL, HookURL: hookURL, BatchEvents: batch, Wake: wake, EveryEntity: h.opt.CeilingObserver == ceilingEvery}
	cleanup = func() error { return nil }
	if topo != topoPostgresOnly {
		base.RedisURL, base.RedisPrefix = h.opt.Services.RedisURL, db.name+":"
		cleanup = func() error { return dropRedisKeys(base.RedisURL, base.RedisPrefix) }
	}
	if topo == topoDistributed {
		base.NATSURL = h.opt.Services.NATSURL
		base.Stream, base.Subject, base.Durable = strings.ToUpper(db.name), "bench."+db.name, db.name
		redisCleanup := cleanup
		cleanup = func() error {
			return errors.Join(redisCleanup(), deleteStream(base.NATSURL, base.Stream))
		}
	}
	for i, name := range names {
		c := base
		c.Role, c.Listen = roles[i], "127.0.0.1:0" // the child logs the port it got (child.adminPort)
		p, err := c.write(h.dir, fmt.Sprintf("%s-%s-%s-%s", topo, db.name, name, wake))
		if err != nil {
			return nil, nil, cleanup, err
		}
		cfgs = append(cfgs, p)
	}
	if _, err := runCommand(ctx, h.opt.Bin, h.token, cfgs[0], "migrate", "--wait", "30s"); err != nil {
		return nil, nil, cleanup, err
	}
	return cfgs, names, cleanup, nil
}

// start starts a topology's processes.
func (h *harness) start(cfgs, names []string) (*service, error) {
	s := &service{token: h.token}
	for i, cfg := range cfgs {
		c, err := startChild(h.opt.Bin, h.dir, names[i]+"-"+filepath.Base(strings.TrimSuffix(cfg, ".toml")), cfg, h.token)
		if err != nil {
			_ = s.stop()
			return nil, err
		}
		c.name = names[i]
		s.children = append(s.children, c)
	}
	return s, nil
}

// waitDelivered waits until the receiver has seen n distinct events, the
// limit passes, or a process exits.
func (h *harness) waitDelivered(ctx context.Context, s *service, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for h.recv.distinct() < n {
		if err := s.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			h.log.Warn("not every event delivered in time", "delivered", h.recv.distinct(), "want", n, "limit", limit)
			return nil // counted as missing
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for deliveries: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	// Let late duplicates arrive before counting.
	time.Sleep(200 * time.Millisecond)
	return nil
}

// profileLabel names a variant's profiles: the topology, and batchN for
// a batched webhook.
func profileLabel(topo string, batch int) string {
	if batch == 0 {
		return topo
	}
	return fmt.Sprintf("%s-batch%d", topo, batch)
}

// profileAsync fetches CPU profiles of s into the pprof dir, when set;
// wait returns its error.
func (h *harness) profileAsync(ctx context.Context, s *service, label string) (wait func() error) {
	if h.opt.PprofDir == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		done <- s.profile(ctx, h.opt.PprofDir, fmt.Sprintf("run%d-%s", h.runIdx+1, label), h.opt.Profile)
	}()
	return func() error { return <-done }
}

// topology measures one topology with one webhook variant (batch 0: one
// event per request): the drain of a backlog, then the steady rates, on a
// database of its own.
func (h *harness) topology(ctx context.Context, topo string, batch int) (err error) {
	col := h.opt.column(topo, batch)
	h.log.Info("topology", "name", topo, "webhook", batchLabel(batch))
	db, err := createDatabase(ctx, h.opt.Services.DatabaseURL, int32(h.opt.Writers+2))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.drop()) }()
	cfgs, names, cleanup, err := h.prepare(ctx, topo, batch, db, h.recv.URL, h.opt.Wake)
	defer func() { err = errors.Join(err, cleanup()) }()
	if err != nil {
		return err
	}
	ids, err := writeBacklog(ctx, db.Pool, h.opt.Rows)
	if err != nil {
		return err
	}
	h.recv.reset()
	busy0, err := machineBusy()
	if err != nil {
		return err
	}
	servers := h.serversOf(topo)
	servers0 := serverTicks(servers)
	started := time.Now()
	s, err := h.start(cfgs, names)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.stop()) }()

	// The drain: from the processes' start to the last delivery.
	waitProfile := func() error { return nil }
	if h.opt.PprofDir != "" {
		if err := s.waitPath(ctx, "/healthz", time.Minute); err != nil {
			return err
		}
		waitProfile = h.profileAsync(ctx, s, profileLabel(topo, batch)+"-drain")
	}
	if err := h.waitDelivered(ctx, s, len(ids), time.Duration(len(ids))*time.Millisecond+2*time.Minute); err != nil {
		return err
	}
	res := h.recv.result(ids)
	busy1, err := machineBusy()
	if err != nil {
		return err
	}
	cpu, err := s.cpuTicks()
	if err != nil {
		return err
	}
	rss, err := s.peakRSS()
	if err != nil {
		return err
	}
	f := h.figs
	f.add(tableTopologies, h.opt.drainRow(), col, float64(res.Delivered)/res.Last.Sub(started).Seconds())
	f.add(tableTopologies, "drain, CPU s per 10k events", col, cpuPer10k(cpu, h.hz, res.Delivered))
	f.add(tableTopologies, "drain, machine CPU s per 10k events (every process)", col, cpuPer10k(busy1-busy0, h.hz, res.Delivered))
	for _, s := range h.servers {
		f.reserve(tableTopologies, serverRow(s.name))
	}
	for i, n := range serverTicks(servers) {
		if n >= 0 && servers0[i] >= 0 {
			f.add(tableTopologies, serverRow(servers[i].name), col, cpuPer10k(n-servers0[i], h.hz, res.Delivered))
		}
	}
	f.add(tableTopologies, "drain, peak RSS MB", col, float64(rss)/1024)
	f.add(tableTopologies, "drain, events per request", col, float64(res.Delivered)/float64(max(res.Requests, 1)))
	if first := res.first(); !first.IsZero() {
		f.add(tableTopologies, drainFirstRow, col, first.Sub(started).Seconds())
	}
	dups, missing, malformed := res.Duplicates, res.Missing, res.Malformed
	h.log.Info("drained", "column", col, "delivered", res.Delivered, "requests", res.Requests, "duplicates", res.Duplicates,
		"missing", res.Missing, "unexpected", res.Unexpected, "malformed", res.Malformed)
	if err := waitProfile(); err != nil {
		return err
	}
	if err := s.waitPath(ctx, "/readyz", time.Minute); err != nil {
		return err
	}
	settled, err := s.settle(ctx, settleQuiet, settleMax)
	if err != nil {
		return err
	}
	h.log.Info("settled after the drain", "column", col, "waited", settled.Round(time.Millisecond))

	for i, rate := range h.opt.Rates {
		h.recv.reset()
		cpu0, err := s.cpuTicks()
		if err != nil {
			return err
		}
		waitProfile := func() error { return nil }
		if i == 0 {
			waitProfile = h.profileAsync(ctx, s, fmt.Sprintf("%s-%dtxs", profileLabel(topo, batch), rate))
		}
		sr, err := writeSteady(ctx, db.Pool, rate, h.opt.Duration, h.opt.Writers)
		if err != nil {
			return err
		}
		if err := h.waitDelivered(ctx, s, len(sr.Rows), time.Minute); err != nil {
			return err
		}
		res := h.recv.result(slices.Collect(maps.Keys(sr.Rows)))
		cpu1, err := s.cpuTicks()
		if err != nil {
			return err
		}
		lat := summarize(res.Latencies)
		f.add(tableTopologies, fmt.Sprintf("%d tx/s: achieved tx/s", rate), col, sr.Achieved)
		f.add(tableTopologies, fmt.Sprintf("%d tx/s: p50 ms", rate), col, lat.P50)
		f.add(tableTopologies, fmt.Sprintf("%d tx/s: p99 ms", rate), col, lat.P99)
		f.add(tableTopologies, fmt.Sprintf("%d tx/s: max ms", rate), col, lat.Max)
		after := summarize(sinceCommit(res.Arrived, sr.Rows))
		f.add(tableTopologies, fmt.Sprintf("%d tx/s: p50 ms after the commit", rate), col, after.P50)
		f.add(tableTopologies, fmt.Sprintf("%d tx/s: p99 ms after the commit", rate), col, after.P99)
		f.add(tableTopologies, fmt.Sprintf("%d tx/s: max ms after the commit", rate), col, after.Max)
		f.add(tableTopologies, fmt.Sprintf("%d tx/s: writer's insert and commit, p99 ms", rate), col, summarize(commitTimes(sr.Rows)).P99)
		if h.opt.TraceDir != "" {
			name := fmt.Sprintf("run%d-%s-%dtxs.csv", h.runIdx+1, profileLabel(topo, batch), rate)
			if err := writeTrace(filepath.Join(h.opt.TraceDir, name), sr.Rows, res.Arrived); err != nil {
				return err
			}
		}
		if i == 0 {
			f.add(tableTopologies, fmt.Sprintf("%d tx/s: CPU s per 10k events", rate), col, cpuPer10k(cpu1-cpu0, h.hz, res.Delivered))
		}
		dups += res.Duplicates
		missing += res.Missing
		malformed += res.Malformed
		h.log.Info("steady rate", "column", col, "rate", rate, "achieved", int(sr.Achieved), "dropped", sr.Dropped,
			"delivered", res.Delivered, "requests", res.Requests, "p50_ms", lat.P50, "p99_ms", lat.P99, "max_ms", lat.Max,
			"p99_ms_after_commit", after.P99)
		if err := waitProfile(); err != nil {
			return err
		}
	}
	if rss, err = s.peakRSS(); err != nil {
		return err
	}
	f.add(tableTopologies, "peak RSS MB, whole run", col, float64(rss)/1024)
	f.count(tableTopologies, "duplicates", col, dups)
	f.count(tableTopologies, "missing", col, missing)
	f.count(tableTopologies, "malformed requests", col, malformed)
	return nil
}
