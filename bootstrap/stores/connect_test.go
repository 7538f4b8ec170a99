package stores_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/bootstrap/stores"
)

// An empty password variable is refused at run as validate-config refuses
// it, naming the key; the server is never dialled.
func TestConnectRedisRefusesAnEmptyPasswordVariable(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.File = "observer.toml"
	cfg.Redis.Addrs = []string{"127.0.0.1:1"}
	cfg.Redis.PasswordEnv = "REDIS_PASSWORD"
	for name, env := range map[string]func(string) (string, bool){
		"unset": func(string) (string, bool) { return "", false },
		"empty": func(string) (string, bool) { return "", true },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := stores.ConnectRedis(context.Background(), cfg, env, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil {
				_ = c.Close()
				t.Fatal("no error")
			}
			var ce *config.ConfigError
			if !errors.As(err, &ce) || ce.Key != "redis.password_env" || !strings.Contains(err.Error(), "REDIS_PASSWORD") {
				t.Fatalf("error %v does not name redis.password_env and the variable", err)
			}
		})
	}
}

// Only a process that reads [database]'s change log lets database.wake
// decide its notify trigger at start; the migrate command follows wake.
func TestTriggerPolicyFollowsWakeAndRole(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		topo  config.Topology
		role  config.Role
		reads bool
	}{
		{config.TopologyPostgresOnly, config.RoleAll, true},
		{config.TopologyPostgresRedis, config.RoleAll, true},
		{config.TopologyMemory, config.RoleAll, true},
		{config.TopologyNATSDistributed, config.RoleAll, true},
		{config.TopologyNATSDistributed, config.RoleBridge, true},
		{config.TopologyNATSDistributed, config.RoleWorker, false},
		{config.TopologyMultiDatabase, config.RoleAll, false}, // its bridges read [[databases]]
	} {
		cfg := config.Defaults()
		cfg.Topology, cfg.Role = c.topo, c.role
		if got := stores.ReadsPrimaryChangeLog(cfg); got != c.reads {
			t.Errorf("%s role %s: ReadsPrimaryChangeLog = %v, want %v", c.topo, c.role, got, c.reads)
		}
	}
	db := config.Defaults().Database
	if got := stores.TriggerPolicy(db); got != postgres.TriggerInstall {
		t.Errorf("wake notify: policy %d, want install", got)
	}
	db.Wake = config.WakePoll
	if got := stores.TriggerPolicy(db); got != postgres.TriggerDrop {
		t.Errorf("wake poll: policy %d, want drop", got)
	}
}

// A replay in the NATS topologies says that JetStream drops events
// published again within its duplicate window (the bridge's Nats-Msg-Id
// is the event id): a replay of recent events reached no worker, and the
// note spoke of Redis only.
func TestDedupNoteOfTheNATSTopologies(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.Topology = config.TopologyNATSDistributed
	note := stores.DedupNote(cfg)
	if !strings.Contains(note, "nats.stream.duplicate_window (2m0s)") {
		t.Errorf("note without dedup = %q, want the duplicate window", note)
	}
	cfg.Performance.EnableDedup = true
	cfg.Redis.URL = "redis://127.0.0.1:6379/0"
	if note := stores.DedupNote(cfg); !strings.Contains(note, "duplicate_window") || !strings.Contains(note, "dedup:v1:event") {
		t.Errorf("note with dedup = %q, want both the duplicate window and the dedup marks", note)
	}
	cfg.Topology = config.TopologyPostgresRedis
	if note := stores.DedupNote(cfg); strings.Contains(note, "duplicate_window") {
		t.Errorf("postgres-redis note = %q mentions JetStream", note)
	}
}
