// Package stores is the part of the composition root that opens where a
// topology keeps its state, for the service (bootstrap.App) and the
// one-shot commands (bootstrap/operate) alike: PostgreSQL (Connect with
// retries, ConnectOnce, MigrateOnStart) and the state stores of a database
// (Postgres, Source), a process's primary state (OpenDatabase,
// OpenMemory), Redis (dedup marks, cached results), the NATS connection
// (JetStream keeps the events between bridges and workers), and the
// retention rules of a database.
package stores

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// State is a process's primary state: the state database's stores, or
// the memory topology's.
type State struct {
	// Store holds the checkpoints, leases, dead letters, change log,
	// parked retries and endpoint states.
	Store *admin.Store
	// DB is the state database (nil in the memory topology); the caller
	// closes it.
	DB          *postgres.DB
	DeadLetters ports.DeadLetterCounter
	Retries     ports.RetryStore
	DeliveryLog ports.DeliveryLog
	// Memory is the memory topology's source of posted events (nil
	// otherwise).
	Memory *memory.Source
}

// PrimaryReaders are the readers whose checkpoints the state store keeps:
// the local reader, or nats-distributed's bridge. (Multi-database bridges
// keep theirs in their source databases.)
func PrimaryReaders(cfg config.Config) []admin.Reader {
	switch {
	case !cfg.Topology.Distributed():
		return []admin.Reader{admin.ReaderOf(cfg.Reader.Name)}
	case cfg.Topology == config.TopologyNATSDistributed:
		return []admin.Reader{admin.ReaderOf("bridge:default")}
	}
	return nil
}

// OpenMemory builds the memory topology's state and loads
// memory.events_file.
func OpenMemory(ctx context.Context, cfg config.Config, logger *slog.Logger) (*State, error) {
	src, err := memory.NewSource(time.Now, memory.SourceConfig{PollInterval: cfg.Database.PollInterval, MaxEventBytes: cfg.Reader.MaxEventBytes})
	if err != nil {
		return nil, err
	}
	dl := memory.NewDeadLetters(time.Now)
	retries := memory.NewRetries(dl, time.Now)
	leases := memory.NewLease(time.Now)
	st := &State{Memory: src, DeadLetters: dl, Retries: retries, DeliveryLog: memory.NewDeliveryLog(0),
		Store: &admin.Store{Name: "memory", Checkpoints: memory.NewCheckpointsWithLease(leases), Leases: leases,
			DeadLetters: dl, ChangeLog: src, Retries: retries, Endpoints: memory.NewEndpointStates(), Readers: PrimaryReaders(cfg)}}
	if f := cfg.Memory.EventsFile; f != "" {
		n, err := loadEventsFile(ctx, src, f)
		if err != nil {
			return nil, err
		}
		logger.Info("events loaded", slog.String("file", f), slog.Int("events", n))
	}
	return st, nil
}

// loadEventsFile appends the events of the JSON-lines file f to src; the
// error names the key or the file and line.
func loadEventsFile(ctx context.Context, src *memory.Source, f string) (int, error) {
	fh, err := os.Open(f)
	if err != nil {
		return 0, &config.ConfigError{Key: "memory.events_file", Msg: err.Error()}
	}
	defer fh.Close()
	n, err := src.LoadJSONLines(ctx, fh)
	if err != nil {
		return n, &config.ConfigError{File: f, Msg: err.Error()}
	}
	return n, nil
}

// CheckEventsFile reads memory.events_file, when set, as a memory
// topology's start would, into a log that is then dropped: validate-config
// finds a line the start would refuse.
func CheckEventsFile(ctx context.Context, cfg config.Config) error {
	if cfg.Topology != config.TopologyMemory || cfg.Memory.EventsFile == "" {
		return nil
	}
	src, err := memory.NewSource(time.Now, memory.SourceConfig{MaxEventBytes: cfg.Reader.MaxEventBytes})
	if err != nil {
		return err
	}
	_, err = loadEventsFile(ctx, src, cfg.Memory.EventsFile)
	return err
}

// OpenDatabase opens the observer's own database (waiting for it, see
// Connect), migrates it when database.migrate_on_start is set, and builds
// its stores: checkpoints, dead letters, the reader lease, parked retries
// and the delivery log.
func OpenDatabase(ctx context.Context, cfg config.Config, logger *slog.Logger) (_ *State, err error) {
	db := cfg.Database
	d, err := Connect(ctx, db, logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if db.MigrateOnStart {
		if err := MigrateOnStart(ctx, d, db, ReadsPrimaryChangeLog(cfg), logger); err != nil {
			return nil, err
		}
		logger.Info("database migrated", slog.String("change_log_table", db.ChangeLogTable), slog.String("observer_schema", db.ObserverSchema))
	}
	st := &State{DB: d}
	var dl *postgres.DeadLetters
	if st.Store, dl, err = Postgres(cfg, d, "database", db.URL, PrimaryReaders(cfg)); err != nil {
		return nil, err
	}
	st.DeadLetters = dl
	if st.Retries, err = postgres.NewRetries(d.Pool, db.ObserverSchema); err != nil {
		return nil, err
	}
	if st.DeliveryLog, err = postgres.NewDeliveryLog(d.Pool, db.ObserverSchema); err != nil {
		return nil, err
	}
	return st, nil
}

// Postgres is the state kept in database d: its checkpoints, leases,
// dead letters and change log.
func Postgres(cfg config.Config, d *postgres.DB, name, url string, readers []admin.Reader) (*admin.Store, *postgres.DeadLetters, error) {
	schema := cfg.Database.ObserverSchema
	s := &admin.Store{Name: name, URL: postgres.Redact(url), Readers: readers}
	var err error
	if s.Checkpoints, err = postgres.NewCheckpoints(d.Pool, schema); err != nil {
		return nil, nil, err
	}
	if s.Leases, err = postgres.NewLease(d.Pool, schema); err != nil {
		return nil, nil, err
	}
	dl, err := postgres.NewDeadLetters(d.Pool, schema)
	if err != nil {
		return nil, nil, err
	}
	s.DeadLetters = dl
	if s.Retries, err = postgres.NewRetries(d.Pool, schema); err != nil {
		return nil, nil, err
	}
	if s.Endpoints, err = postgres.NewEndpointStates(d.Pool, schema); err != nil {
		return nil, nil, err
	}
	stats, err := postgres.NewChangeLogStats(d.Pool, cfg.Database.ChangeLogTable)
	if err != nil {
		return nil, nil, &config.ConfigError{File: cfg.File, Key: "database.change_log_table", Msg: err.Error()}
	}
	stats = stats.WithMaxEventBytes(cfg.Reader.MaxEventBytes) // resend refuses what the reader would
	s.ChangeLog = stats
	if source, ok := strings.CutPrefix(name, "databases."); ok {
		s.ChangeLog = stats.WithSource(source) // events read from it carry the source's name, as its bridge publishes them
	}
	return s, dl, nil
}

// Source is the state a multi-database source keeps: its bridge's
// checkpoint and lease, and the invalid rows its bridge parks.
func Source(cfg config.Config, db *postgres.DB, name, url string) (*admin.Store, *postgres.DeadLetters, error) {
	s, dl, err := Postgres(cfg, db, "databases."+name, url, []admin.Reader{admin.ReaderOf("bridge:" + name)})
	if s != nil {
		s.Where = "source database " + name
		s.Retries, s.Endpoints = nil, nil // parked retries and endpoint states live in the workers' state database
	}
	return s, dl, err
}

// SourceURL resolves the url of the i-th [[databases]] entry.
func SourceURL(cfg config.Config, env func(string) (string, bool), i int) (string, error) {
	d := cfg.Databases[i]
	if d.URLEnv == "" {
		return d.URL, nil
	}
	v, ok := env(d.URLEnv)
	if !ok || v == "" {
		return "", &config.ConfigError{File: cfg.File, Key: fmt.Sprintf("databases[%d].url_env", i), Msg: "environment variable " + d.URLEnv + " is not set"}
	}
	return v, nil
}

// HolderName names this process in leases and claims: host, pid and a
// random suffix.
func HolderName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// DedupNote tells which replayed events are skipped, and how to avoid
// it, as the stores actually behave: JetStream's duplicate window in the
// NATS topologies, the dedup marks when dedup is on.
func DedupNote(c config.Config) string {
	var bus string
	if c.Topology.Distributed() {
		bus = fmt.Sprintf("the bridges publish each event with its id as Nats-Msg-Id: JetStream drops an event published again less than nats.stream.duplicate_window (%s) after it was first published, so a replay reaches the workers only for events older than that (wait that long before replaying recent ones).", c.NATS.Stream.DuplicateWindow)
	}
	if !c.Performance.EnableDedup {
		return bus
	}
	note := fmt.Sprintf("dedup is enabled (performance.enable_dedup): events that completed less than redis.dedup_window (%s) ago are skipped as duplicates when they are read again.", c.Redis.DedupWindow)
	if c.Redis.Configured() {
		note += fmt.Sprintf(" Their marks are the Redis keys %sdedup:v1:event:<event id>; to process them again, delete those keys before the service reads them (e.g. redis-cli --scan --pattern '%sdedup:v1:event:*' | xargs -r redis-cli unlink, which clears the marks of every event), or replay once the window has passed.",
			c.Redis.KeyPrefix, domain.GlobEscape(c.Redis.KeyPrefix))
	} else {
		note += " The marks are kept in the running process only: restarting the service clears them."
	}
	if c.Performance.EnableCaching {
		note += fmt.Sprintf(" With performance.enable_caching, actions that succeeded less than redis.cache_ttl (%s) ago are not repeated either (keys %scache:v1:result:*).", c.Redis.CacheTTL, c.Redis.KeyPrefix)
	}
	if bus != "" {
		note = bus + " Besides, " + note
	}
	return note
}
