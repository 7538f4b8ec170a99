// Package config is the service configuration: the Config struct and its
// sections, Defaults, Load (koanf: struct defaults, then a TOML file, then
// FRAISEQL_* environment variables), Validate, and the observers it
// describes (BuildObservers, LoadObservers, observers_file). Every problem
// is a *ConfigError naming the file and the key. It imports koanf and the
// domain only: no adapter, no I/O beyond reading the files it is given.
package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Topology names how the service is deployed, and so which adapters make
// it up (see ARCHITECTURE.md for the table).
type Topology string

// The topologies.
const (
	TopologyPostgresOnly    Topology = "postgres-only"
	TopologyPostgresRedis   Topology = "postgres-redis"
	TopologyNATSDistributed Topology = "nats-distributed"
	TopologyMultiDatabase   Topology = "multi-database"
	TopologyMemory          Topology = "memory"
)

// Topologies lists every topology.
var Topologies = []Topology{TopologyPostgresOnly, TopologyPostgresRedis, TopologyNATSDistributed, TopologyMultiDatabase, TopologyMemory}

// TopologyNames lists every topology name, for messages and usage text.
func TopologyNames() []string {
	out := make([]string, len(Topologies))
	for i, t := range Topologies {
		out[i] = string(t)
	}
	return out
}

// ParseTopology returns the topology named s.
func ParseTopology(s string) (Topology, error) {
	t := Topology(s)
	if !t.Valid() {
		return "", fmt.Errorf("%q is not one of %s", s, strings.Join(TopologyNames(), ", "))
	}
	return t, nil
}

// Valid reports whether t is one of Topologies.
func (t Topology) Valid() bool { return slices.Contains(Topologies, t) }

// Distributed reports whether t moves events over NATS JetStream: bridges
// read the change logs, workers run the actions (and role applies).
func (t Topology) Distributed() bool {
	return t == TopologyNATSDistributed || t == TopologyMultiDatabase
}

// Role picks what a process of a NATS topology runs; the other topologies
// always run everything (RoleAll).
type Role string

// The roles.
const (
	RoleAll    Role = "all"    // bridge and worker in one process
	RoleBridge Role = "bridge" // change log to JetStream only
	RoleWorker Role = "worker" // JetStream to actions only
)

// Roles lists every role.
var Roles = []Role{RoleAll, RoleBridge, RoleWorker}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("%q is not one of all, bridge, worker", s)
	}
	return r, nil
}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// RunsBridge reports whether a process with role r reads change logs.
func (r Role) RunsBridge() bool { return r == RoleAll || r == RoleBridge }

// RunsWorker reports whether a process with role r runs actions.
func (r Role) RunsWorker() bool { return r == RoleAll || r == RoleWorker }

// Config is the whole service configuration. Every key has a default (see
// Defaults); a TOML file overrides them and FRAISEQL_* environment
// variables override the file.
type Config struct {
	Topology      Topology          `koanf:"topology"`
	Role          Role              `koanf:"role"`
	ObserversFile string            `koanf:"observers_file"`
	Database      DatabaseConfig    `koanf:"database"`
	Redis         RedisConfig       `koanf:"redis"`
	NATS          NATSConfig        `koanf:"nats"`
	Databases     []SourceDatabase  `koanf:"databases"`
	Reader        ReaderConfig      `koanf:"reader"`
	Performance   PerformanceConfig `koanf:"performance"`
	Retry         RetrySection      `koanf:"retry"`
	Delivery      DeliverySection   `koanf:"delivery"`
	HTTP          HTTPConfig        `koanf:"http"`
	Logging       LoggingConfig     `koanf:"logging"`
	Security      SecurityConfig    `koanf:"security"`
	Email         EmailConfig       `koanf:"email"`
	Memory        MemoryConfig      `koanf:"memory"`
	Retention     RetentionConfig   `koanf:"retention"`
	Tracing       TracingConfig     `koanf:"tracing"`
	Observers     []ObserverConfig  `koanf:"observers"`

	// File is the configuration file the values came from ("" for none).
	File string `koanf:"-"`
	// explicit holds the keys the file or the environment set (Load
	// fills it): a topology-dependent default never overrides them.
	explicit map[string]bool
}

// DatabaseConfig is the PostgreSQL connection and the change-log contract.
type DatabaseConfig struct {
	URL            string        `koanf:"url"`
	ChangeLogTable string        `koanf:"change_log_table"`
	NotifyChannel  string        `koanf:"notify_channel"`
	ObserverSchema string        `koanf:"observer_schema"`
	MaxConnections int           `koanf:"max_connections"`
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	PollInterval   time.Duration `koanf:"poll_interval"`
	MigrateOnStart bool          `koanf:"migrate_on_start"`
	// Wake is how a reader learns of new rows: WakeNotify (the default: a
	// trigger on the change log notifies a waiting reader) or WakePoll (no
	// trigger: the reader polls, every millisecond while rows come, backing
	// off to poll_interval, then 100ms by default, when none do).
	Wake string `koanf:"wake"`
}

// The values of database.wake.
const (
	WakeNotify = "notify"
	WakePoll   = "poll"
)

// ReaderConfig tunes the change-log reader.
type ReaderConfig struct {
	Name        string `koanf:"name"`
	BatchSize   int    `koanf:"batch_size"`
	MaxInFlight int    `koanf:"max_in_flight"`
	// MaxInFlightBytes bounds the payload bytes of events read but not
	// finished; MaxEventBytes is the per-event limit (larger events are
	// dead-lettered without their payload).
	MaxInFlightBytes   int64         `koanf:"max_in_flight_bytes"`
	MaxEventBytes      int64         `koanf:"max_event_bytes"`
	CheckpointInterval time.Duration `koanf:"checkpoint_interval"`
	LeaseTTL           time.Duration `koanf:"lease_ttl"`
	// StallAfter: a reader whose checkpoint has not moved for this long
	// while events are unfinished is stalled (/readyz answers 503).
	StallAfter time.Duration `koanf:"stall_after"`
	// CoalesceWait: after a read that found several rows but did not fill
	// the batch (the writers are busy), the reader pauses this long so
	// that its next read collects what was committed meanwhile; "0s"
	// reads again at once.
	CoalesceWait time.Duration `koanf:"coalesce_wait"`
	// CoalesceWaitMax: the pause while the writers commit the most; it
	// grows from CoalesceWait at 2 500 rows/s to this at 10 000 rows/s
	// and above (at or below CoalesceWait: the pause stays CoalesceWait).
	CoalesceWaitMax time.Duration `koanf:"coalesce_wait_max"`
}

// RedisConfig is the Redis connection (dedup, result cache, cache
// invalidation). url takes redis:// or rediss://; for Sentinel set addrs
// and master_name, for Cluster set addrs and cluster = true.
type RedisConfig struct {
	URL            string        `koanf:"url"`
	Addrs          []string      `koanf:"addrs"`
	MasterName     string        `koanf:"master_name"`
	Cluster        bool          `koanf:"cluster"`
	Username       string        `koanf:"username"`
	PasswordEnv    string        `koanf:"password_env"`
	PoolSize       int           `koanf:"pool_size"`
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	CommandTimeout time.Duration `koanf:"command_timeout"`
	KeyPrefix      string        `koanf:"key_prefix"`
	DedupWindow    time.Duration `koanf:"dedup_window"`
	DedupLease     time.Duration `koanf:"dedup_lease"`
	CacheTTL       time.Duration `koanf:"cache_ttl"`
}

// Configured reports whether a Redis server is named.
func (r RedisConfig) Configured() bool { return r.URL != "" || len(r.Addrs) > 0 }

// NATSConfig is the JetStream connection, stream and consumer of the NATS
// topologies.
type NATSConfig struct {
	URL                 string             `koanf:"url"`
	Embedded            bool               `koanf:"embedded"`
	StoreDir            string             `koanf:"store_dir"`
	SubjectPrefix       string             `koanf:"subject_prefix"`
	MaxPendingPublishes int                `koanf:"max_pending_publishes"`
	Stream              NATSStreamConfig   `koanf:"stream"`
	Consumer            NATSConsumerConfig `koanf:"consumer"`
}

// NATSStreamConfig is applied to the stream at every start (created or
// updated).
type NATSStreamConfig struct {
	Name            string        `koanf:"name"`
	Storage         string        `koanf:"storage"`
	Retention       string        `koanf:"retention"`
	MaxAge          time.Duration `koanf:"max_age"`
	MaxMsgs         int64         `koanf:"max_msgs"`
	MaxBytes        int64         `koanf:"max_bytes"`
	DuplicateWindow time.Duration `koanf:"duplicate_window"`
	Replicas        int           `koanf:"replicas"`
}

// NATSConsumerConfig is the durable pull consumer shared by all workers.
type NATSConsumerConfig struct {
	Durable       string        `koanf:"durable"`
	AckWait       time.Duration `koanf:"ack_wait"`
	MaxDeliver    int           `koanf:"max_deliver"`
	MaxAckPending int           `koanf:"max_ack_pending"`
}

// SourceDatabase is one [[databases]] entry of the multi-database
// topology: a change log with its own bridge and cursor.
type SourceDatabase struct {
	Name   string `koanf:"name"`
	URL    string `koanf:"url"`
	URLEnv string `koanf:"url_env"`
}

// PerformanceConfig turns dedup, caching and concurrency on and off.
type PerformanceConfig struct {
	EnableDedup          bool `koanf:"enable_dedup"`
	EnableCaching        bool `koanf:"enable_caching"`
	EnableConcurrent     bool `koanf:"enable_concurrent"`
	MaxConcurrentActions int  `koanf:"max_concurrent_actions"`
}

// HTTPConfig is the admin HTTP server.
type HTTPConfig struct {
	Listen        string `koanf:"listen"`
	AdminTokenEnv string `koanf:"admin_token_env"`
	// MetricsTokenEnv names the environment variable holding the bearer
	// token /metrics then requires (a scraper's, not the admin token);
	// unset, /metrics is open.
	MetricsTokenEnv string `koanf:"metrics_token_env"`
	// PProf serves net/http/pprof under /debug/pprof/, behind the admin
	// token; off by default.
	PProf bool `koanf:"pprof"`
}

// DefaultAdminPort is the admin HTTP server's default port. Not 9090,
// which is Prometheus's own (a Prometheus scraping this service often
// runs on the same host), nor any port of the 9100-9999 range that
// Prometheus allocates to exporters (fully allocated): 8079 is the default
// of no common infrastructure service and stays clear of the usual
// development ports (8080, 8000, 8888).
const DefaultAdminPort = 8079

// LoggingConfig selects level and format.
type LoggingConfig struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"` // auto | text | json
}

// SecurityConfig governs outbound requests.
type SecurityConfig struct {
	AllowPrivateNetworks bool     `koanf:"allow_private_networks"`
	AllowedNetworks      []string `koanf:"allowed_networks"`
}

// EmailConfig is the SMTP server email actions send through. Without a
// host there is none, and an email action is refused at load.
type EmailConfig struct {
	Host string `koanf:"host"` // host name or IP address; "" = no SMTP server
	// Port 0 takes the port of the tls mode: 25 (none), 587 (starttls),
	// 465 (tls).
	Port     int    `koanf:"port"`
	From     string `koanf:"from"` // the sender, "Name <address>" or an address
	TLS      string `koanf:"tls"`  // none | starttls (refuses a server without it) | tls (implicit, from the first byte)
	Username string `koanf:"username"`
	// PasswordEnv names the environment variable holding the password
	// (with username; needs tls = starttls or tls).
	PasswordEnv string `koanf:"password_env"`
	// Timeout bounds the connection set-up, then each message's exchange.
	Timeout  time.Duration `koanf:"timeout"`
	HELOName string        `koanf:"helo_name"` // the EHLO name; "" = this machine's host name
	// MaxIdleConns is how many open sessions are kept for the next
	// messages; 0 opens a session per message.
	MaxIdleConns int `koanf:"max_idle_conns"`
	// IdleTimeout closes a kept session unused this long.
	IdleTimeout time.Duration `koanf:"idle_timeout"`
}

// Configured reports whether an SMTP server is named.
func (e EmailConfig) Configured() bool { return e.Host != "" }

// MemoryConfig configures the memory topology.
type MemoryConfig struct {
	EventsFile string `koanf:"events_file"`
}

// ObserverConfig is one [[observers]] entry.
type ObserverConfig struct {
	Name      string         `koanf:"name"`
	Entity    string         `koanf:"entity"`
	Events    []string       `koanf:"events"`
	Condition string         `koanf:"condition"`
	OnFailure string         `koanf:"on_failure"`
	Retry     *RetryConfig   `koanf:"retry"`
	Actions   []ActionConfig `koanf:"actions"`
}

// RetryConfig is an observer's retry policy; unset fields take the
// values of [retry] (see RetrySection).
type RetryConfig struct {
	MaxAttempts      *int           `koanf:"max_attempts"`
	InitialDelay     *time.Duration `koanf:"initial_delay"`
	MaxDelay         *time.Duration `koanf:"max_delay"`
	MaxAge           *time.Duration `koanf:"max_age"`
	Backoff          *string        `koanf:"backoff"`
	InMemoryAttempts *int           `koanf:"in_memory_attempts"`
}

// ActionConfig is one [[observers.actions]] entry; which keys apply
// depends on Type, and a key set for another type is an error.
type ActionConfig struct {
	Type string `koanf:"type"`
	Name string `koanf:"name"`

	// webhook
	URL     string            `koanf:"url"`
	URLEnv  string            `koanf:"url_env"`
	Method  string            `koanf:"method"`
	Headers map[string]string `koanf:"headers"`
	// HeadersEnv maps a header name to the environment variable holding
	// its value (credentials: never printed).
	HeadersEnv       map[string]string `koanf:"headers_env"`
	BodyTemplate     string            `koanf:"body_template"` // also email
	Timeout          *time.Duration    `koanf:"timeout"`
	SigningSecret    string            `koanf:"signing_secret"`
	SigningSecretEnv string            `koanf:"signing_secret_env"`
	// SigningSecretsEnv names environment variables holding more signing
	// secrets, one each: the request is signed with every secret (key
	// rotation).
	SigningSecretsEnv []string `koanf:"signing_secrets_env"`
	// Batch ([observers.actions.batch]) delivers the action's events in
	// batches (nil: one request per event).
	Batch *BatchConfig `koanf:"batch"`

	// log
	Level           string `koanf:"level"`
	MessageTemplate string `koanf:"message_template"`

	// cache
	KeyPattern string `koanf:"key_pattern"`
	KeyPrefix  string `koanf:"key_prefix"`
	Action     string `koanf:"action"`

	// database
	FunctionName string         `koanf:"function_name"`
	Params       map[string]any `koanf:"params"`

	// slack (and message_template above)
	WebhookURL    string `koanf:"webhook_url"`
	WebhookURLEnv string `koanf:"webhook_url_env"`
	Channel       string `koanf:"channel"`

	// nats (a template), email (a fixed subject)
	Subject string `koanf:"subject"`

	// email (and subject, body_template above)
	To               []string `koanf:"to"`
	ToTemplate       string   `koanf:"to_template"`
	Cc               []string `koanf:"cc"`
	Bcc              []string `koanf:"bcc"`
	ReplyTo          string   `koanf:"reply_to"`
	SubjectTemplate  string   `koanf:"subject_template"`
	HTMLBodyTemplate string   `koanf:"html_body_template"`
}

// BatchConfig is a webhook action's [observers.actions.batch]: a batch
// is sent when it holds max_events events, when the next event would take
// its body over max_bytes, or max_wait after its first event joined.
type BatchConfig struct {
	MaxEvents *int           `koanf:"max_events"` // default 100, 1 to 10000
	MaxBytes  *int           `koanf:"max_bytes"`  // default 1 MiB, 1 KiB to 16 MiB
	MaxWait   *time.Duration `koanf:"max_wait"`   // default 20ms, at most 10s
}

// The defaults of [observers.actions.batch].
const (
	DefaultBatchEvents = 100
	DefaultBatchBytes  = 1 << 20
	DefaultBatchWait   = 20 * time.Millisecond
)

// Defaults returns the configuration used for every key the file and the
// environment leave unset.
func Defaults() Config {
	return Config{
		Topology: TopologyPostgresOnly,
		Role:     RoleAll,
		Database: DatabaseConfig{
			URL:            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
			ChangeLogTable: "core.tb_entity_change_log",
			NotifyChannel:  "fraiseql_events",
			ObserverSchema: "observer",
			MaxConnections: 10,
			ConnectTimeout: 5 * time.Second,
			PollInterval:   time.Second,
			Wake:           WakeNotify,
		},
		Reader: ReaderConfig{
			Name:               "default",
			BatchSize:          500,
			MaxInFlight:        10000,
			MaxInFlightBytes:   64 << 20,
			MaxEventBytes:      1 << 20,
			CheckpointInterval: time.Second,
			LeaseTTL:           15 * time.Second,
			StallAfter:         5 * time.Minute,
			CoalesceWait:       2 * time.Millisecond,
			CoalesceWaitMax:    10 * time.Millisecond,
		},
		Redis: RedisConfig{
			ConnectTimeout: 2 * time.Second,
			CommandTimeout: 500 * time.Millisecond,
			DedupWindow:    time.Hour,
			DedupLease:     30 * time.Second,
			CacheTTL:       time.Hour,
		},
		NATS: NATSConfig{
			URL:                 "nats://127.0.0.1:4222",
			StoreDir:            "data/nats",
			SubjectPrefix:       "fraiseql.events",
			MaxPendingPublishes: 1024,
			Stream: NATSStreamConfig{
				Name:            "FRAISEQL_EVENTS",
				Storage:         "file",
				Retention:       "limits",
				MaxAge:          7 * 24 * time.Hour,
				DuplicateWindow: 2 * time.Minute,
				Replicas:        1,
			},
			Consumer: NATSConsumerConfig{
				Durable:       "fraiseql-observer-workers",
				AckWait:       30 * time.Second,
				MaxDeliver:    10,
				MaxAckPending: 1000,
			},
		},
		Performance: PerformanceConfig{EnableConcurrent: true, MaxConcurrentActions: 32},
		Retry:       defaultRetry(),
		Delivery:    defaultDelivery(),
		HTTP:        HTTPConfig{Listen: fmt.Sprintf("127.0.0.1:%d", DefaultAdminPort), AdminTokenEnv: "FRAISEQL_ADMIN_TOKEN"},
		Email:       EmailConfig{TLS: "starttls", Timeout: 10 * time.Second, MaxIdleConns: 2, IdleTimeout: 30 * time.Second},
		Logging:     LoggingConfig{Level: "info", Format: "auto"},
		Retention:   RetentionConfig{Interval: time.Hour, BatchSize: 1000},
		Tracing:     TracingConfig{Protocol: TracingHTTP, SampleRatio: 1},
	}
}
