package config

import (
	"strings"
	"time"
)

// Keys whose default depends on the topology: dedup and the action-result
// cache are what postgres-redis and the NATS topologies are for, so there
// they are on unless the file or the environment turns them off; in
// postgres-only and memory they are off unless turned on.
const (
	keyEnableDedup   = "performance.enable_dedup"
	keyEnableCaching = "performance.enable_caching"
)

// keyPollInterval defaults to PollIntervalPolling under database.wake =
// "poll": there it bounds how long the first row after a quiet spell
// waits, not only a lost notification's.
const keyPollInterval = "database.poll_interval"

// PollIntervalPolling is database.poll_interval's default under
// database.wake = "poll" (1s under notify): an idle reader reads ten times
// a second.
const PollIntervalPolling = 100 * time.Millisecond

// UsesRedis reports whether Redis dedup and result caching are part of
// topology t (postgres-redis and the NATS topologies): there
// performance.enable_dedup and performance.enable_caching default to true.
func (t Topology) UsesRedis() bool {
	return t == TopologyPostgresRedis || t.Distributed()
}

// IsSet reports whether key (e.g. "performance.enable_dedup") was set by
// the configuration file or a FRAISEQL_* variable rather than left to its
// default.
func (c Config) IsSet(key string) bool { return c.explicit[key] }

// SetTopology changes the topology (run --topology), applies that
// topology's defaults to the keys neither the file nor the environment
// set, and validates the result.
func (c *Config) SetTopology(t Topology) error {
	c.Topology = t
	c.applyTopologyDefaults()
	return c.Validate()
}

// applyTopologyDefaults sets the topology-dependent defaults (and
// poll_interval's under database.wake = "poll") of the keys the file and
// the environment left unset; an explicit value, false included, always
// wins.
func (c *Config) applyTopologyDefaults() {
	on := c.Topology.UsesRedis()
	if !c.IsSet(keyEnableDedup) {
		c.Performance.EnableDedup = on
	}
	if !c.IsSet(keyEnableCaching) {
		c.Performance.EnableCaching = on
	}
	if !c.IsSet(keyPollInterval) {
		c.Database.PollInterval = Defaults().Database.PollInterval
		if c.Database.Wake == WakePoll && c.Topology != TopologyMemory {
			c.Database.PollInterval = PollIntervalPolling
		}
	}
}

// explicitKeys lists the keys set by the file (fileKeys) or by a
// FRAISEQL_* variable of environ that names a key of known.
func explicitKeys(fileKeys []string, environ []string, known map[string]string) map[string]bool {
	out := make(map[string]bool, len(fileKeys))
	for _, k := range fileKeys {
		out[k] = true
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if key, ok := known[name]; ok {
			out[key] = true
		}
	}
	return out
}
