package config

import (
	"slices"
	"strings"
)

// IdleKeys are keys the file or the environment set that have no effect
// with the rest of the configuration, and why; run and validate-config
// warn of them (as of the [tracing] keys while tracing is off).
type IdleKeys struct {
	Keys []string
	Why  string
}

// IdleKeys lists the groups of keys set to no effect: [nats] outside the
// NATS topologies, [database] in the memory topology,
// delivery.log_retention with the delivery log off, the dedup keys with
// dedup off, redis.cache_ttl with caching off and
// performance.max_concurrent_actions with concurrency off.
func (c Config) IdleKeys() []IdleKeys {
	var out []IdleKeys
	add := func(why string, keys ...string) {
		var set []string
		for _, k := range keys {
			if c.IsSet(k) {
				set = append(set, k)
			}
		}
		if len(set) > 0 {
			out = append(out, IdleKeys{Keys: set, Why: why})
		}
	}
	if !c.Topology.Distributed() {
		// nats.store_dir is left out: the container image sets it
		// (FRAISEQL_NATS_STORE_DIR) whatever the topology.
		add("only the NATS topologies (nats-distributed, multi-database) use [nats]; this is "+string(c.Topology),
			c.explicitUnder("nats.", "nats.store_dir")...)
	}
	if c.Topology == TopologyMemory {
		add("the memory topology has no database (its events come from the admin API or memory.events_file)", c.explicitUnder("database.")...)
	}
	if !c.Performance.EnableConcurrent {
		add("concurrency is off (performance.enable_concurrent = false: one action at a time)", "performance.max_concurrent_actions")
	}
	if c.Delivery.Log == DeliveryLogOff {
		add(`the delivery log is off (delivery.log = "off")`, "delivery.log_retention")
	}
	if !c.Performance.EnableDedup {
		add("dedup is off (performance.enable_dedup)", "redis.dedup_window", "redis.dedup_lease")
	}
	if !c.Performance.EnableCaching {
		add("caching is off (performance.enable_caching)", "redis.cache_ttl")
	}
	return out
}

// explicitUnder lists, sorted, the keys the file or the environment set
// that start with prefix, but for except.
func (c Config) explicitUnder(prefix string, except ...string) []string {
	var keys []string
	for k := range c.explicit {
		if strings.HasPrefix(k, prefix) && !slices.Contains(except, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
