package config

import (
	"fmt"
	"net"
	"net/mail"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Validate checks values and the dependencies between them.
func (c *Config) Validate() error {
	if _, err := ParseTopology(string(c.Topology)); err != nil {
		return &ConfigError{Key: "topology", Msg: err.Error()}
	}
	if !c.Role.Valid() {
		names := make([]string, len(Roles))
		for i, r := range Roles {
			names[i] = string(r)
		}
		return &ConfigError{Key: "role", Msg: fmt.Sprintf("%q is not a role: want %s", c.Role, strings.Join(names, ", "))}
	}
	switch c.Topology {
	case TopologyPostgresOnly, TopologyMemory:
		if c.Role != RoleAll {
			return &ConfigError{Key: "role", Msg: fmt.Sprintf("%q is only meaningful in the NATS topologies; use \"all\"", c.Role)}
		}
	case TopologyPostgresRedis:
		if c.Role != RoleAll {
			return &ConfigError{Key: "role", Msg: fmt.Sprintf("%q is only meaningful in the NATS topologies; use \"all\"", c.Role)}
		}
		if !c.Redis.Configured() {
			msg := "topology postgres-redis needs Redis: set redis.url (or redis.addrs)"
			var on []string
			for key, v := range map[string]bool{keyEnableDedup: c.Performance.EnableDedup, keyEnableCaching: c.Performance.EnableCaching} {
				if v {
					on = append(on, key)
				}
			}
			if len(on) > 0 {
				slices.Sort(on)
				msg += "; " + strings.Join(on, " and ") + " on"
			}
			return &ConfigError{Key: "redis.url", Msg: msg}
		}
	case TopologyNATSDistributed, TopologyMultiDatabase:
		if err := c.validateNATS(); err != nil {
			return err
		}
	}
	if len(c.Databases) > 0 && c.Topology != TopologyMultiDatabase {
		return &ConfigError{Key: "databases", Msg: "only used by topology multi-database"}
	}
	if err := c.validateRedis(); err != nil {
		return err
	}
	if err := c.Email.validate(c.IsSet); err != nil {
		return err
	}
	if err := c.Retention.validate(c.Topology); err != nil {
		return err
	}
	if err := c.Tracing.validate(); err != nil {
		return err
	}
	if err := c.validateRetry(); err != nil {
		return err
	}
	if err := c.validateDelivery(); err != nil {
		return err
	}
	if c.Database.Wake != WakeNotify && c.Database.Wake != WakePoll {
		return &ConfigError{Key: "database.wake", Msg: fmt.Sprintf("%q is not %q or %q", c.Database.Wake, WakeNotify, WakePoll)}
	}
	if c.Database.Wake == WakePoll && c.Database.PollInterval > 0 && c.Database.PollInterval < time.Millisecond {
		return &ConfigError{Key: "database.poll_interval", Msg: fmt.Sprintf("%s: under database.wake = %q the reader polls this often while idle; at least 1ms", c.Database.PollInterval, WakePoll)}
	}
	if c.Topology != TopologyMemory {
		if c.Database.URL == "" {
			return &ConfigError{Key: "database.url", Msg: "required for topology " + string(c.Topology) + " (or set FRAISEQL_DATABASE_URL)"}
		}
		for key, v := range map[string]string{"database.change_log_table": c.Database.ChangeLogTable, "database.notify_channel": c.Database.NotifyChannel, "database.observer_schema": c.Database.ObserverSchema} {
			if strings.TrimSpace(v) == "" {
				return &ConfigError{Key: key, Msg: "must not be empty"}
			}
		}
	}
	positive := []struct {
		key string
		v   int64
	}{
		{"database.max_connections", int64(c.Database.MaxConnections)},
		{"database.connect_timeout", int64(c.Database.ConnectTimeout)},
		{"database.poll_interval", int64(c.Database.PollInterval)},
		{"reader.batch_size", int64(c.Reader.BatchSize)},
		{"reader.max_in_flight", int64(c.Reader.MaxInFlight)},
		{"reader.max_in_flight_bytes", c.Reader.MaxInFlightBytes},
		{"reader.max_event_bytes", c.Reader.MaxEventBytes},
		{"reader.checkpoint_interval", int64(c.Reader.CheckpointInterval)},
		{"reader.lease_ttl", int64(c.Reader.LeaseTTL)},
		{"reader.stall_after", int64(c.Reader.StallAfter)},
		{"performance.max_concurrent_actions", int64(c.Performance.MaxConcurrentActions)},
		{"redis.connect_timeout", int64(c.Redis.ConnectTimeout)},
		{"redis.command_timeout", int64(c.Redis.CommandTimeout)},
		{"redis.dedup_window", int64(c.Redis.DedupWindow)},
		{"redis.dedup_lease", int64(c.Redis.DedupLease)},
		{"redis.cache_ttl", int64(c.Redis.CacheTTL)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return &ConfigError{Key: p.key, Msg: "must be positive"}
		}
	}
	if err := validListen(c.HTTP.Listen); err != nil {
		return err
	}
	if !tokenName.MatchString(c.Reader.Name) {
		// It names the checkpoint and the lease "reader:NAME"; a name such
		// as "bridge:x" read as a bridge's, and a replay checked the wrong
		// lease and moved the checkpoint under the running reader.
		return &ConfigError{Key: "reader.name", Msg: fmt.Sprintf("%q: required; use letters, digits, - and _", c.Reader.Name)}
	}
	if c.Topology.Distributed() && c.Reader.Name != Defaults().Reader.Name {
		return &ConfigError{Key: "reader.name", Msg: "names the reader of postgres-only, postgres-redis and memory: nats-distributed's bridge is bridge:default, multi-database's are named by their [[databases]] name; leave reader.name unset"}
	}
	if c.Reader.MaxEventBytes > c.Reader.MaxInFlightBytes {
		return &ConfigError{Key: "reader.max_event_bytes", Msg: fmt.Sprintf("%d is larger than reader.max_in_flight_bytes (%d)", c.Reader.MaxEventBytes, c.Reader.MaxInFlightBytes)}
	}
	if c.Reader.CoalesceWait < 0 || c.Reader.CoalesceWait > time.Second {
		return &ConfigError{Key: "reader.coalesce_wait", Msg: fmt.Sprintf("%s must be between 0s and 1s", c.Reader.CoalesceWait)}
	}
	if c.Reader.CoalesceWaitMax < 0 || c.Reader.CoalesceWaitMax > time.Second {
		return &ConfigError{Key: "reader.coalesce_wait_max", Msg: fmt.Sprintf("%s must be between 0s and 1s", c.Reader.CoalesceWaitMax)}
	}
	if c.Reader.LeaseTTL < 3*time.Second {
		return &ConfigError{Key: "reader.lease_ttl", Msg: "must be at least 3s"}
	}
	switch c.Logging.Level {
	case "debug", "info", "warn", "error":
	default:
		return &ConfigError{Key: "logging.level", Msg: fmt.Sprintf("%q is not one of debug, info, warn, error", c.Logging.Level)}
	}
	switch c.Logging.Format {
	case "auto", "text", "json":
	default:
		return &ConfigError{Key: "logging.format", Msg: fmt.Sprintf("%q is not one of auto, text, json", c.Logging.Format)}
	}
	if c.Topology == TopologyMemory && c.Memory.EventsFile != "" {
		if _, err := os.Stat(c.Memory.EventsFile); err != nil {
			return &ConfigError{Key: "memory.events_file", Msg: err.Error()}
		}
	} else if c.Memory.EventsFile != "" {
		return &ConfigError{Key: "memory.events_file", Msg: "only used by topology memory"}
	}
	return nil
}

// validateRedis checks the Redis keys and what depends on them.
func (c *Config) validateRedis() error {
	r := c.Redis
	if r.URL != "" && len(r.Addrs) > 0 {
		return &ConfigError{Key: "redis.url", Msg: "set redis.url or redis.addrs, not both"}
	}
	if r.URL != "" && !strings.HasPrefix(r.URL, "redis://") && !strings.HasPrefix(r.URL, "rediss://") && !strings.HasPrefix(r.URL, "unix://") {
		return &ConfigError{Key: "redis.url", Msg: "must start with redis://, rediss:// or unix://"}
	}
	if r.MasterName != "" && len(r.Addrs) == 0 {
		return &ConfigError{Key: "redis.master_name", Msg: "Sentinel needs redis.addrs"}
	}
	if r.Cluster && len(r.Addrs) == 0 {
		return &ConfigError{Key: "redis.cluster", Msg: "Cluster needs redis.addrs"}
	}
	if r.Cluster && r.MasterName != "" {
		return &ConfigError{Key: "redis.cluster", Msg: "choose Cluster (redis.cluster) or Sentinel (redis.master_name), not both"}
	}
	if len(r.Addrs) == 0 && (r.Username != "" || r.PasswordEnv != "") {
		return &ConfigError{Key: "redis.username", Msg: "redis.username and redis.password_env apply to redis.addrs; put credentials in redis.url"}
	}
	if len(r.Addrs) > 1 && r.MasterName == "" && !r.Cluster {
		return &ConfigError{Key: "redis.addrs", Msg: fmt.Sprintf("%d addresses need Sentinel (redis.master_name) or Cluster (redis.cluster = true); one address is a single server", len(r.Addrs))}
	}
	for i, a := range r.Addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return &ConfigError{Key: fmt.Sprintf("redis.addrs[%d]", i), Msg: fmt.Sprintf("%q is not host:port", a)}
		}
	}
	if r.PoolSize < 0 {
		return &ConfigError{Key: "redis.pool_size", Msg: "must not be negative"}
	}
	if r.Configured() || c.Topology == TopologyMemory || c.Topology == TopologyPostgresOnly {
		return nil
	}
	if c.Topology.Distributed() && !c.Role.RunsWorker() {
		return nil // a bridge runs no actions: dedup and caching do not apply
	}
	for _, f := range []struct {
		key string
		on  bool
	}{{keyEnableDedup, c.Performance.EnableDedup}, {keyEnableCaching, c.Performance.EnableCaching}} {
		if !f.on {
			continue
		}
		msg := "needs Redis in topology " + string(c.Topology) + ": set redis.url (or redis.addrs)"
		if !c.IsSet(f.key) {
			msg = "on by default in topology " + string(c.Topology) + ", and needs Redis: set redis.url (or redis.addrs), or " + f.key + " = false"
		}
		return &ConfigError{Key: f.key, Msg: msg}
	}
	return nil
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// subjectPrefix reports whether p is a NATS subject without wildcards:
// non-empty tokens separated by dots, no '*', '>' or white space.
func subjectPrefix(p string) bool {
	if p == "" || strings.ContainsAny(p, " \t\r\n") {
		return false
	}
	for t := range strings.SplitSeq(p, ".") {
		if t == "" || strings.ContainsAny(t, "*>") {
			return false
		}
	}
	return true
}

// validateNATS checks the NATS keys and the databases of the NATS
// topologies.
func (c *Config) validateNATS() error {
	n := c.NATS
	if _, err := ParseRole(string(c.Role)); err != nil {
		return &ConfigError{Key: "role", Msg: err.Error()}
	}
	if n.Embedded && c.Role != RoleAll {
		return &ConfigError{Key: "nats.embedded", Msg: "an in-process server serves only its own process: use role = \"all\""}
	}
	if !n.Embedded && n.URL == "" {
		return &ConfigError{Key: "nats.url", Msg: "required (or set nats.embedded = true)"}
	}
	if n.Embedded && n.StoreDir == "" {
		return &ConfigError{Key: "nats.store_dir", Msg: "required with nats.embedded"}
	}
	if !subjectPrefix(n.SubjectPrefix) {
		return &ConfigError{Key: "nats.subject_prefix", Msg: fmt.Sprintf("%q is not a subject prefix (tokens separated by dots, no wildcards)", n.SubjectPrefix)}
	}
	if !tokenName.MatchString(n.Stream.Name) {
		return &ConfigError{Key: "nats.stream.name", Msg: fmt.Sprintf("%q: use letters, digits, - and _", n.Stream.Name)}
	}
	switch n.Stream.Storage {
	case "file", "memory":
	default:
		return &ConfigError{Key: "nats.stream.storage", Msg: fmt.Sprintf("%q is not one of file, memory", n.Stream.Storage)}
	}
	switch n.Stream.Retention {
	case "limits", "workqueue", "interest":
	default:
		return &ConfigError{Key: "nats.stream.retention", Msg: fmt.Sprintf("%q is not one of limits, workqueue, interest", n.Stream.Retention)}
	}
	checks := []struct {
		key string
		ok  bool
		msg string
	}{
		{"nats.max_pending_publishes", n.MaxPendingPublishes >= 1, "must be at least 1"},
		{"nats.stream.max_age", n.Stream.MaxAge >= 0, "must not be negative (0 = unlimited)"},
		{"nats.stream.max_msgs", n.Stream.MaxMsgs >= 0, "must not be negative (0 = unlimited)"},
		{"nats.stream.max_bytes", n.Stream.MaxBytes >= 0, "must not be negative (0 = unlimited)"},
		{"nats.stream.duplicate_window", n.Stream.DuplicateWindow > 0, "must be positive"},
		{"nats.stream.replicas", n.Stream.Replicas >= 1 && n.Stream.Replicas <= 5, "must be between 1 and 5"},
		{"nats.consumer.durable", tokenName.MatchString(n.Consumer.Durable), "use letters, digits, - and _"},
		{"nats.consumer.ack_wait", n.Consumer.AckWait >= time.Second, "must be at least 1s"},
		{"nats.consumer.max_deliver", n.Consumer.MaxDeliver >= 1, "must be at least 1"},
		{"nats.consumer.max_ack_pending", n.Consumer.MaxAckPending >= 1, "must be at least 1"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return &ConfigError{Key: ch.key, Msg: ch.msg}
		}
	}
	if n.Stream.Retention == "limits" {
		for _, lim := range []struct {
			key string
			v   int64
		}{{"nats.stream.max_msgs", n.Stream.MaxMsgs}, {"nats.stream.max_bytes", n.Stream.MaxBytes}} {
			if lim.v > 0 {
				return &ConfigError{Key: lim.key, Msg: fmt.Sprintf("%d with retention = \"limits\": a full stream would drop its oldest messages, consumed or not, and so events no worker has taken; "+
					"use retention = \"workqueue\" (acknowledged messages leave the stream, and a full one holds the bridge back) or bound the stream by max_age", lim.v)}
			}
		}
	}
	if n.Stream.MaxAge > 0 && n.Stream.DuplicateWindow > n.Stream.MaxAge {
		return &ConfigError{Key: "nats.stream.duplicate_window", Msg: fmt.Sprintf("%s must not exceed nats.stream.max_age (%s): JetStream refuses the stream", n.Stream.DuplicateWindow, n.Stream.MaxAge)}
	}
	if c.Topology == TopologyNATSDistributed {
		return nil
	}
	if len(c.Databases) == 0 && c.Role != RoleWorker {
		return &ConfigError{Key: "databases", Msg: "topology multi-database needs at least one [[databases]] entry"}
	}
	seen := map[string]bool{}
	for i, d := range c.Databases {
		key := fmt.Sprintf("databases[%d]", i)
		if !tokenName.MatchString(d.Name) {
			return &ConfigError{Key: key + ".name", Msg: fmt.Sprintf("%q: required; use letters, digits, - and _ (it becomes a subject token and the events' source)", d.Name)}
		}
		if seen[d.Name] {
			return &ConfigError{Key: key + ".name", Msg: fmt.Sprintf("%q is used twice", d.Name)}
		}
		seen[d.Name] = true
		if (d.URL == "") == (d.URLEnv == "") {
			return &ConfigError{Key: key + ".url", Msg: "set exactly one of url and url_env"}
		}
	}
	return nil
}

// validate checks the [email] keys: without a host none of the server's
// keys may be set (they would be read and ignored); isSet tells the keys
// the file or the environment set (those with defaults of their own).
func (e EmailConfig) validate(isSet func(string) bool) error {
	switch e.TLS {
	case "none", "starttls", "tls":
	default:
		return &ConfigError{Key: "email.tls", Msg: fmt.Sprintf("%q is not one of none, starttls, tls", e.TLS)}
	}
	checks := []struct {
		key string
		ok  bool
		msg string
	}{
		{"email.port", e.Port >= 0 && e.Port <= 65535, "must be between 1 and 65535 (0: the tls mode's port, 25, 587 or 465)"},
		{"email.timeout", e.Timeout > 0, "must be positive"},
		{"email.idle_timeout", e.IdleTimeout > 0, "must be positive"},
		{"email.max_idle_conns", e.MaxIdleConns >= 0, "must not be negative (0: a new session per message)"},
		{"email.helo_name", !strings.ContainsAny(e.HELOName, " \t\r\n"), "must be a host name, without spaces"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return &ConfigError{Key: ch.key, Msg: ch.msg}
		}
	}
	if !e.Configured() {
		for _, k := range []struct {
			key string
			set bool
		}{{"email.from", e.From != ""}, {"email.port", e.Port != 0}, {"email.username", e.Username != ""},
			{"email.password_env", e.PasswordEnv != ""}, {"email.helo_name", e.HELOName != ""},
			{"email.tls", isSet("email.tls")}, {"email.timeout", isSet("email.timeout")},
			{"email.max_idle_conns", isSet("email.max_idle_conns")}, {"email.idle_timeout", isSet("email.idle_timeout")}} {
			if k.set {
				return &ConfigError{Key: k.key, Msg: "set without email.host (the SMTP server)"}
			}
		}
		return nil
	}
	if strings.ContainsAny(e.Host, " \t\r\n/:") && net.ParseIP(e.Host) == nil {
		return &ConfigError{Key: "email.host", Msg: fmt.Sprintf("%q is not a host name or IP address (the port goes in email.port)", e.Host)}
	}
	if e.From == "" {
		return &ConfigError{Key: "email.from", Msg: "required with email.host: the sender address"}
	}
	if _, err := mail.ParseAddress(e.From); err != nil {
		return &ConfigError{Key: "email.from", Msg: fmt.Sprintf("%q is not an email address: %v", e.From, err)}
	}
	switch {
	case e.Username != "" && e.PasswordEnv == "":
		return &ConfigError{Key: "email.password_env", Msg: "required with email.username: the environment variable holding the password"}
	case e.Username == "" && e.PasswordEnv != "":
		return &ConfigError{Key: "email.username", Msg: "required with email.password_env"}
	case e.Username != "" && e.TLS == "none":
		return &ConfigError{Key: "email.tls", Msg: "\"none\" with email.username would send the password in clear: use starttls or tls"}
	}
	return nil
}

// validListen checks http.listen as net.Listen would read it, without
// resolving the host: "" (no admin server) or host:port with a port
// number or service name.
func validListen(listen string) error {
	if listen == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(listen)
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil {
		return &ConfigError{Key: "http.listen", Msg: fmt.Sprintf("%q is not host:port (e.g. \":8079\", \"127.0.0.1:8079\"; empty: no admin server): %v", listen, err)}
	}
	return nil
}
