// Package operate is the part of the composition root that serves the
// one-shot commands: the Operator (status, replay, dlq, deliveries,
// resend, prune) over the stores a configuration names, without readers,
// workers or the admin server (for the memory topology, through the
// running service's admin API); WaitForDatabases (--wait) and
// Healthcheck. The running service is bootstrap.App.
package operate

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/actions"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// StateCommands report a deployment's persisted state and replay a
// reader: *admin.State over the stores, or, for the memory topology, the
// running service's admin API (*adminhttp.Client).
type StateCommands interface {
	Status(ctx context.Context) (admin.StatusReport, error)
	Replay(ctx context.Context, reader string, since time.Time) (admin.ReplayResult, error)
}

// Operator is what the operator commands (status, dlq, replay) run on:
// the admin use cases over the stores a configuration names, without
// readers, workers or the admin server. Close it when done.
type Operator struct {
	// State reports the persisted state and replays.
	State StateCommands

	cfg         config.Config
	env         func(string) (string, bool)
	logger      *slog.Logger
	holder      string
	deps        actions.Deps
	deadLetters *admin.DeadLetters
	durable     DurableCommands
	log         ports.DeliveryLog           // the state database's delivery log
	writer      *application.DeliveryWriter // records the attempts of dlq retry and resend

	primary   *admin.Store // nil in the memory topology
	primaryDB *postgres.DB
	dbs       map[*admin.Store]*postgres.DB

	mu      sync.Mutex
	retrier *application.DeadLetterRetrier // built on first retry
	sources []*admin.Store                 // multi-database sources, opened on first use
	closers []func()
}

// Options carries what the process hands the operator.
type Options struct {
	Logger *slog.Logger
	// LookupEnv resolves *_env secrets (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
}

// Open connects to the configuration's state database (one
// attempt: a database that is down is an error at once; see
// WaitForDatabases). It does not migrate. The memory topology keeps its state in the
// running process: status and replay ask its admin API (http.listen, the
// token from http.admin_token_env); its dead letters are refused.
func Open(ctx context.Context, cfg config.Config, opts Options) (_ *Operator, err error) {
	if opts.Logger == nil {
		return nil, errors.New("bootstrap: logger is required")
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	o := &Operator{cfg: cfg, env: opts.LookupEnv, logger: opts.Logger, holder: stores.HolderName(), dbs: map[*admin.Store]*postgres.DB{}}
	if cfg.Topology == config.TopologyMemory {
		c, err := adminClient(cfg, opts.LookupEnv)
		if err != nil {
			return nil, err
		}
		o.State, o.durable = c, c
		return o, nil
	}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	primary, err := o.openStore(ctx, "database", cfg.Database.URL, stores.PrimaryReaders(cfg))
	if err != nil {
		return nil, err
	}
	o.primary, o.primaryDB = primary, o.dbOf(primary)
	var sources func(context.Context) ([]*admin.Store, error)
	if cfg.Topology == config.TopologyMultiDatabase {
		sources = o.openSources
	}
	o.State = &admin.State{Topology: string(cfg.Topology), Stores: admin.Stores{Primary: primary, Sources: sources},
		Holder: o.holder, LeaseTTL: cfg.Reader.LeaseTTL, Logger: o.logger, DedupNote: stores.DedupNote(cfg)}
	o.deadLetters = &admin.DeadLetters{Store: primary.DeadLetters, Retrier: o.buildRetrier}
	if err := o.openDurable(admin.Stores{Primary: primary, Sources: sources}); err != nil {
		return nil, err
	}
	return o, nil
}

// DeadLetters returns the dead-letter commands on the state database.
func (o *Operator) DeadLetters() (*admin.DeadLetters, error) {
	if o.deadLetters == nil {
		return nil, &config.ConfigError{File: o.cfg.File, Key: "topology",
			Msg: "the memory topology keeps its dead letters in the running process: use the admin API (/api/observers/dlq)"}
	}
	return o.deadLetters, nil
}

// adminClient reaches the running memory-topology service's admin API.
func adminClient(cfg config.Config, env func(string) (string, bool)) (*adminhttp.Client, error) {
	const why = "the memory topology keeps its state in the running process: status and replay ask its admin API"
	host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	switch {
	case cfg.HTTP.Listen == "":
		return nil, &config.ConfigError{File: cfg.File, Key: "http.listen", Msg: why + ", which is off"}
	case err != nil:
		return nil, &config.ConfigError{File: cfg.File, Key: "http.listen", Msg: err.Error()}
	case port == "0":
		return nil, &config.ConfigError{File: cfg.File, Key: "http.listen", Msg: why + ", whose port 0 is chosen at start: set a fixed port"}
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	token, _ := env(cfg.HTTP.AdminTokenEnv)
	if token == "" {
		return nil, &config.ConfigError{File: cfg.File, Key: "http.admin_token_env",
			Msg: why + ", with the token in the environment variable " + cfg.HTTP.AdminTokenEnv + ", which is not set"}
	}
	return adminhttp.NewClient("http://"+net.JoinHostPort(host, port), token, 30*time.Second), nil
}

// Close releases what the operator opened, in reverse order.
func (o *Operator) Close() {
	o.mu.Lock()
	closers := o.closers
	o.closers = nil
	o.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}

func (o *Operator) onClose(f func()) {
	o.mu.Lock()
	o.closers = append(o.closers, f)
	o.mu.Unlock()
}

// openStore connects to one database holding observer state.
func (o *Operator) openStore(ctx context.Context, name, url string, readers []admin.Reader) (*admin.Store, error) {
	dbCfg := o.cfg.Database
	dbCfg.URL = url
	d, err := stores.ConnectOnce(ctx, dbCfg, name, o.logger)
	if err != nil {
		return nil, err
	}
	o.onClose(d.Close)
	if o.deps.DB == nil {
		o.deps.DB = d // database actions re-run on the state database, as in the service
	}
	s, _, err := stores.Postgres(o.cfg, d, name, url, readers)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	o.dbs[s] = d
	o.mu.Unlock()
	return s, nil
}

// dbOf returns the database a store of the operator is in.
func (o *Operator) dbOf(s *admin.Store) *postgres.DB {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dbs[s]
}

// openSources opens the multi-database sources on first use.
func (o *Operator) openSources(ctx context.Context) ([]*admin.Store, error) {
	o.mu.Lock()
	opened := o.sources
	o.mu.Unlock()
	if opened != nil {
		return opened, nil
	}
	var out []*admin.Store
	for i, d := range o.cfg.Databases {
		url, err := stores.SourceURL(o.cfg, o.env, i)
		if err != nil {
			return nil, err
		}
		s, err := o.openStore(ctx, "databases."+d.Name, url, []admin.Reader{admin.ReaderOf("bridge:" + d.Name)})
		if err != nil {
			return nil, err
		}
		s.Where = "source database " + d.Name
		out = append(out, s)
	}
	o.mu.Lock()
	o.sources = out
	o.mu.Unlock()
	return out, nil
}

// buildRetrier builds the observers and action executors the way run does
// (Redis when configured, the SSRF policy, every executor), once.
func (o *Operator) buildRetrier(ctx context.Context) (*application.DeadLetterRetrier, error) {
	if r := o.builtRetrier(); r != nil {
		return r, nil
	}
	observers, err := actions.LoadObservers(o.cfg, o.env)
	if err != nil {
		return nil, err
	}
	deps := o.deps
	if o.cfg.Redis.Configured() {
		if deps.Redis, err = stores.ConnectRedis(ctx, o.cfg, o.env, o.logger); err != nil {
			return nil, err
		}
		o.onClose(func() { _ = deps.Redis.Close() })
	}
	if actions.Uses(observers, domain.ActionNATS) {
		// LoadObservers made sure this is a NATS topology.
		if deps.NATS, err = natsadapter.Connect(ctx, stores.NATSConfig(o.cfg, o.holder), o.logger); err != nil {
			return nil, err
		}
		o.onClose(deps.NATS.Close)
	}
	dispatcher, closeExec, err := actions.Build(o.cfg, o.env, o.logger, deps)
	if err != nil {
		return nil, err
	}
	o.onClose(closeExec)
	if err := actions.CheckSupported(o.cfg, dispatcher, observers); err != nil {
		return nil, err
	}
	m := domain.NewMatcher(observers)
	r := &application.DeadLetterRetrier{
		Store: o.deadLetters.Store, Executor: o.recorded(dispatcher), Matcher: func() *domain.Matcher { return m }, Now: time.Now,
	}
	o.mu.Lock()
	o.retrier = r
	o.mu.Unlock()
	return r, nil
}

func (o *Operator) builtRetrier() *application.DeadLetterRetrier {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.retrier
}
