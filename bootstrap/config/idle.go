package config

import (
	"fmt"
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
// dedup off, redis.cache_ttl with caching off,
// performance.max_concurrent_actions with concurrency off, the Redis
// connection's keys without a Redis server, http.pprof without the admin
// API, nats.url with nats.embedded and a rate_burst without a rate limit.
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
	if !c.Redis.Configured() {
		// username and password_env are refused instead (they belong to
		// redis.addrs); the dedup and cache keys serve the in-process
		// stores too.
		add("no Redis server is configured (redis.url or redis.addrs)",
			"redis.key_prefix", "redis.pool_size", "redis.connect_timeout", "redis.command_timeout")
	}
	if c.HTTP.Listen == "" {
		add("the admin API is off (http.listen is empty)", "http.pprof")
	}
	if c.Topology.Distributed() && c.NATS.Embedded {
		add("nats.embedded runs a server inside the service on a free port: the service does not dial nats.url (only a command-line dlq retry of a nats action does)", "nats.url")
	}
	out = append(out, c.idleBursts()...)
	return out
}

// idleBursts names the rate_burst values (other than 0, the default) of
// endpoints without a rate limit: a burst shapes a limit, and there is
// none.
func (c Config) idleBursts() []IdleKeys {
	d := c.Delivery
	var keys []string
	if d.RateBurst != 0 && d.RateLimit == 0 && !slices.ContainsFunc(d.Endpoints, func(e EndpointConfig) bool {
		return e.RateLimit != nil && *e.RateLimit > 0 && e.RateBurst == nil // limited, with delivery.rate_burst
	}) {
		keys = append(keys, "delivery.rate_burst")
	}
	for i, e := range d.Endpoints {
		rate := d.RateLimit
		if e.RateLimit != nil {
			rate = *e.RateLimit
		}
		if e.RateBurst != nil && *e.RateBurst != 0 && rate == 0 {
			keys = append(keys, fmt.Sprintf("delivery.endpoints[%d].rate_burst", i))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return []IdleKeys{{Keys: keys, Why: "no rate limit applies (rate_limit = 0: unlimited), so there is no burst to shape"}}
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
