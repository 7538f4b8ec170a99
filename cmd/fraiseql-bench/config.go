package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The topologies the harness measures, by their name on the command line.
const (
	topoPostgresOnly  = "postgres-only"
	topoPostgresRedis = "postgres-redis"
	topoDistributed   = "distributed" // nats-distributed: one bridge and two workers
)

var allTopologies = []string{topoPostgresOnly, topoPostgresRedis, topoDistributed}

// The values of -ceiling-observer.
const (
	ceilingOther = "other" // an entity pgbench does not write
	ceilingEvery = "every" // every entity, a condition no row meets
)

// The values of database.wake.
const (
	wakeNotify = "notify"
	wakePoll   = "poll"
)

// adminTokenEnv is the variable the generated configuration names as
// http.admin_token_env; the harness sets it in its children's environment.
const adminTokenEnv = "FRAISEQL_BENCH_ADMIN_TOKEN"

// serviceConfig is what one process's configuration file says.
type serviceConfig struct {
	Topology    string // product topology: postgres-only, postgres-redis, nats-distributed
	Role        string // nats-distributed only: bridge | worker
	DatabaseURL string
	RedisURL    string // "" outside the Redis topologies
	RedisPrefix string
	NATSURL     string // "" outside nats-distributed
	Stream      string
	Subject     string
	Durable     string
	Listen      string // admin HTTP, 127.0.0.1:port
	HookURL     string // the webhook every event is sent to; "" for an observer that matches nothing
	BatchEvents int    // > 0: the webhook action sends batches of up to this many events ([observers.actions.batch] max_events)
	Wake        string // database.wake: notify or poll
	EveryEntity bool   // without HookURL: the observer takes every entity, with a condition no row meets
}

// toml renders the configuration: the product's defaults but for the
// names that isolate the run, the admin listener with pprof, the loopback
// receiver allowed, and one observer (its webhook batched when
// BatchEvents > 0, the other batch keys at their defaults).
func (c serviceConfig) toml() string {
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "# written by fraiseql-bench\ntopology = %s\n", q(c.Topology))
	if c.Role != "" {
		fmt.Fprintf(&b, "role = %s\n", q(c.Role))
	}
	fmt.Fprintf(&b, "\n[database]\nurl = %s\nmigrate_on_start = true\n", q(c.DatabaseURL))
	if c.Wake != "" {
		fmt.Fprintf(&b, "wake = %s\n", q(c.Wake))
	}
	if c.RedisURL != "" {
		fmt.Fprintf(&b, "\n[redis]\nurl = %s\nkey_prefix = %s\n", q(c.RedisURL), q(c.RedisPrefix))
	}
	if c.NATSURL != "" {
		fmt.Fprintf(&b, "\n[nats]\nurl = %s\nsubject_prefix = %s\n", q(c.NATSURL), q(c.Subject))
		fmt.Fprintf(&b, "\n[nats.stream]\nname = %s\nstorage = \"memory\"\n", q(c.Stream))
		fmt.Fprintf(&b, "\n[nats.consumer]\ndurable = %s\n", q(c.Durable))
	}
	fmt.Fprintf(&b, "\n[http]\nlisten = %s\nadmin_token_env = %s\npprof = true\n", q(c.Listen), q(adminTokenEnv))
	b.WriteString("\n[logging]\nlevel = \"info\"\nformat = \"json\"\n")
	b.WriteString("\n[security]\nallowed_networks = [\"127.0.0.1/32\"]\n")
	if c.HookURL != "" {
		fmt.Fprintf(&b, "\n[[observers]]\nname = \"bench\"\nentity = \"*\"\nevents = [\"INSERT\", \"UPDATE\", \"DELETE\"]\n"+
			"[[observers.actions]]\ntype = \"webhook\"\nurl = %s\n", q(c.HookURL))
		if c.BatchEvents > 0 {
			fmt.Fprintf(&b, "[observers.actions.batch]\nmax_events = %d\n", c.BatchEvents)
		}
	} else if c.EveryEntity {
		b.WriteString("\n[[observers]]\nname = \"unmet\"\nentity = \"*\"\nevents = [\"INSERT\"]\ncondition = \"total < 0\"\n" +
			"[[observers.actions]]\ntype = \"log\"\n")
	} else {
		b.WriteString("\n[[observers]]\nname = \"unmatched\"\nentity = \"Unmatched\"\nevents = [\"INSERT\"]\n" +
			"[[observers.actions]]\ntype = \"log\"\n")
	}
	return b.String()
}

// write stores the configuration in dir under name.toml.
func (c serviceConfig) write(dir, name string) (string, error) {
	p := filepath.Join(dir, name+".toml")
	if err := os.WriteFile(p, []byte(c.toml()), 0o600); err != nil {
		return "", fmt.Errorf("write config %s: %w", p, err)
	}
	return p, nil
}
