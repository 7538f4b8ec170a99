package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observer/internal/pgbench"
)

// ceilings measures what bounds every topology, in the same run: the
// receiver's own request rate, and the application's single-row commit
// rate on the change log (a) without the capture's trigger and without
// the service, then with the service (postgres-only, an observer matching
// nothing) running and the change log as the binary's migration leaves it
// for (b) database.wake = notify (the trigger installed) and (c)
// database.wake = poll (no trigger), as BenchmarkCaptureCommitRate's a, c
// and d, and (t) the trigger installed but no service running: what the
// trigger alone costs, apart from the service's reads on the same cores;
// alternated per client count in rounds (see writeCeiling).
func (h *harness) ceilings(ctx context.Context) (err error) {
	h.recv.reset()
	rps, err := hammer(ctx, h.recv.URL, h.opt.HammerConns, h.opt.HammerLength)
	if err != nil {
		return err
	}
	h.recv.reset()
	h.figs.add(tableCeilings, fmt.Sprintf("receiver alone, %d connections, req/s", h.opt.HammerConns), colValue, rps)
	if len(h.opt.Clients) == 0 {
		return nil
	}

	bin, err := pgbench.Find()
	if err != nil {
		return err
	}
	script, err := pgbench.WriteScript(h.dir)
	if err != nil {
		return err
	}
	db, err := createDatabase(ctx, h.opt.Services.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.drop()) }()
	wakes := []string{wakeNotify, wakePoll}
	services := make(map[string]preparedService, len(wakes))
	for _, wake := range wakes {
		cfgs, names, cleanup, perr := h.prepare(ctx, topoPostgresOnly, 0, db, "", wake)
		defer func() { err = errors.Join(err, cleanup()) }() // the function's err
		if perr != nil {
			return perr
		}
		services[wake] = preparedService{cfgs, names}
	}
	for _, n := range h.opt.Clients {
		if err := h.writeCeiling(ctx, db, bin, script, n, wakes, services); err != nil {
			return err
		}
	}
	return nil
}

// writeCeiling measures the commit rate of clients pgbench clients in
// WriteRounds rounds: the application alone (a), then with the service
// under each wake and with notify's trigger and no service (t), in an
// order that rotates by round (so that no variant always holds the same
// place after a, a bias the ratios could not show otherwise), with a
// again after the last round. Each round's
// ratios are to the mean of the a before and the a after it, so that
// the machine's drift (its speed varies by the hour, by ±20% between
// runs a minute apart) weighs on both sides alike; the figures are the
// medians over the rounds.
func (h *harness) writeCeiling(ctx context.Context, db *database, bin, script string, n int, wakes []string, services map[string]preparedService) error {
	alone := func() (float64, error) {
		if _, err := db.Pool.Exec(ctx, `DROP TRIGGER IF EXISTS `+pgbench.TriggerName+` ON core.tb_entity_change_log`); err != nil {
			return 0, fmt.Errorf("drop the capture trigger: %w", err)
		}
		r, err := h.commitRate(ctx, db, bin, script, n)
		return r.TPS, err
	}
	before, err := alone()
	if err != nil {
		return err
	}
	first := before
	var means []float64
	tps, ratios, cpus := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	variants := append(append([]string{}, wakes...), triggerOnly)
	for round := range h.opt.WriteRounds {
		got := make(map[string]float64, len(variants))
		for _, v := range rotated(variants, round) {
			if v == triggerOnly {
				r, err := h.commitRateWithTrigger(ctx, db, bin, script, n, services[wakeNotify])
				if err != nil {
					return fmt.Errorf("the capture trigger without the service: %w", err)
				}
				got[v] = r.TPS
				continue
			}
			r, cpu, err := h.commitRateWithService(ctx, db, bin, script, n, services[v])
			if err != nil {
				return fmt.Errorf("database.wake = %s: %w", v, err)
			}
			got[v] = r.TPS
			cpus[v] = append(cpus[v], cpuPer10k(cpu, h.hz, int(r.Commits)))
		}
		after, err := alone()
		if err != nil {
			return err
		}
		a := (before + after) / 2
		means = append(means, a)
		for _, wake := range wakes {
			tps[wake] = append(tps[wake], got[wake])
			ratios[wake] = append(ratios[wake], got[wake]/a)
		}
		tps[triggerOnly] = append(tps[triggerOnly], got[triggerOnly])
		ratios[triggerOnly] = append(ratios[triggerOnly], got[triggerOnly]/a)
		before = after
	}
	rounds := fmt.Sprintf("median of %d rounds", h.opt.WriteRounds)
	h.figs.add(tableCeilings, fmt.Sprintf("application commits/s, %d clients, no trigger, no service (%s)", n, rounds), colValue, median(means))
	h.figs.add(tableCeilings, fmt.Sprintf("application alone last / first, %d clients (the machine's drift)", n), colValue, before/first)
	for _, wake := range wakes {
		h.figs.add(tableCeilings, fmt.Sprintf("application commits/s, %d clients, service running, database.wake = %s (%s)", n, wake, rounds), colValue, median(tps[wake]))
		h.figs.add(tableCeilings, fmt.Sprintf("ratio to no trigger and no service, %d clients, database.wake = %s (%s)", n, wake, rounds), colValue, median(ratios[wake]))
		h.figs.add(tableCeilings, fmt.Sprintf("service CPU s per 10k rows written, %d clients, database.wake = %s (%s)", n, wake, rounds), colValue, median(cpus[wake]))
		h.log.Info("write ceiling", "clients", n, "wake", wake, "ratios", ratios[wake])
	}
	h.figs.add(tableCeilings, fmt.Sprintf("application commits/s, %d clients, capture trigger installed, no service (%s)", n, rounds), colValue, median(tps[triggerOnly]))
	h.figs.add(tableCeilings, fmt.Sprintf("ratio to no trigger and no service, %d clients, capture trigger installed, no service (%s)", n, rounds), colValue, median(ratios[triggerOnly]))
	h.log.Info("write ceiling", "clients", n, "wake", "notify's trigger, no service", "ratios", ratios[triggerOnly])
	return nil
}

// rotated returns a copy of vs rotated left by k places.
func rotated(vs []string, k int) []string {
	if len(vs) == 0 {
		return nil
	}
	k %= len(vs)
	return append(append([]string{}, vs[k:]...), vs[:k]...)
}

// triggerOnly keys writeCeiling's figures of the trigger without the
// service.
const triggerOnly = "trigger only"

// commitRateWithTrigger migrates the change log with notify's
// configuration p (so the capture trigger is installed, as the service
// would install it) and runs pgbench without starting the service: what
// the trigger alone costs the writers.
func (h *harness) commitRateWithTrigger(ctx context.Context, db *database, bin, script string, clients int, p preparedService) (pgbench.Result, error) {
	if _, err := runCommand(ctx, h.opt.Bin, h.token, p.cfgs[0], "migrate"); err != nil {
		return pgbench.Result{}, err
	}
	var triggers int
	if err := db.Pool.QueryRow(ctx, pgbench.TriggerCountSQL, pgbench.TriggerName).Scan(&triggers); err != nil {
		return pgbench.Result{}, fmt.Errorf("look up the capture trigger: %w", err)
	}
	if triggers != 1 {
		return pgbench.Result{}, fmt.Errorf("migrate with %s installed no %s trigger on the change log", p.cfgs[0], pgbench.TriggerName)
	}
	return h.commitRate(ctx, db, bin, script, clients)
}

// preparedService is what prepare wrote for one configuration.
type preparedService struct {
	cfgs  []string
	names []string
}

// commitRateWithService migrates the change log with the binary and p's
// configuration (so the trigger is as that configuration wants it),
// starts the service and runs pgbench while it runs; cpu is the CPU the
// service used meanwhile, in clock ticks (reading the rows pgbench wrote,
// of an entity its observer does not name).
func (h *harness) commitRateWithService(ctx context.Context, db *database, bin, script string, clients int, p preparedService) (r pgbench.Result, cpu int64, err error) {
	if _, err := runCommand(ctx, h.opt.Bin, h.token, p.cfgs[0], "migrate"); err != nil {
		return r, 0, err
	}
	s, err := h.start(p.cfgs, p.names)
	if err != nil {
		return r, 0, err
	}
	defer func() { err = errors.Join(err, s.stop()) }()
	if err := s.waitPath(ctx, "/readyz", time.Minute); err != nil {
		return r, 0, err
	}
	before, err := s.cpuTicks()
	if err != nil {
		return r, 0, err
	}
	if r, err = h.commitRate(ctx, db, bin, script, clients); err != nil {
		return r, 0, err
	}
	after, err := s.cpuTicks()
	if err == nil {
		err = s.alive()
	}
	return r, after - before, err
}

// commitRate empties the change log and runs pgbench on it.
func (h *harness) commitRate(ctx context.Context, db *database, bin, script string, clients int) (pgbench.Result, error) {
	if _, err := db.Pool.Exec(ctx, `TRUNCATE core.tb_entity_change_log`); err != nil {
		return pgbench.Result{}, fmt.Errorf("truncate the change log: %w", err)
	}
	return pgbench.Run(ctx, bin, script, clients, h.opt.WriteLength, db.URL)
}
