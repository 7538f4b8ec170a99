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
// the service, (b) with the capture the binary's migration installs and
// the service (postgres-only, an observer matching nothing) running, as
// BenchmarkCaptureCommitRate's a and c; interleaved per client count.
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
	cfgs, ports, names, cleanup, err := h.prepare(ctx, topoPostgresOnly, 0, db, "")
	defer func() { err = errors.Join(err, cleanup()) }()
	if err != nil {
		return err
	}
	for _, n := range h.opt.Clients {
		// a: the application alone.
		if _, err := db.Pool.Exec(ctx, `DROP TRIGGER IF EXISTS `+pgbench.TriggerName+` ON core.tb_entity_change_log`); err != nil {
			return fmt.Errorf("drop the capture trigger: %w", err)
		}
		a, err := h.commitRate(ctx, db, bin, script, n)
		if err != nil {
			return err
		}
		// b: the capture installed (by the binary's migration) and the service running.
		if _, err := runCommand(ctx, h.opt.Bin, h.token, cfgs[0], "migrate"); err != nil {
			return err
		}
		s, err := h.start(cfgs, ports, names)
		if err != nil {
			return err
		}
		b, err := func() (r pgbench.Result, err error) {
			defer func() { err = errors.Join(err, s.stop()) }()
			if err := s.waitPath(ctx, "/readyz", time.Minute); err != nil {
				return r, err
			}
			r, err = h.commitRate(ctx, db, bin, script, n)
			if err == nil {
				err = s.alive()
			}
			return r, err
		}()
		if err != nil {
			return err
		}
		h.figs.add(tableCeilings, fmt.Sprintf("application commits/s, %d clients, no trigger, no service", n), colValue, a.TPS)
		h.figs.add(tableCeilings, fmt.Sprintf("application commits/s, %d clients, capture installed, service running", n), colValue, b.TPS)
		h.figs.add(tableCeilings, fmt.Sprintf("ratio with/without capture, %d clients", n), colValue, b.TPS/a.TPS)
		h.log.Info("write ceiling", "clients", n, "without", int(a.TPS), "with", int(b.TPS))
	}
	return nil
}

// commitRate empties the change log and runs pgbench on it.
func (h *harness) commitRate(ctx context.Context, db *database, bin, script string, clients int) (pgbench.Result, error) {
	if _, err := db.Pool.Exec(ctx, `TRUNCATE core.tb_entity_change_log`); err != nil {
		return pgbench.Result{}, fmt.Errorf("truncate the change log: %w", err)
	}
	return pgbench.Run(ctx, bin, script, clients, h.opt.WriteLength, db.URL)
}
