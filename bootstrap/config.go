package bootstrap

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
	gotoml "github.com/pelletier/go-toml/v2"
)

// The topologies.
const (
	TopologyPostgresOnly    = "postgres-only"
	TopologyPostgresRedis   = "postgres-redis"
	TopologyNATSDistributed = "nats-distributed"
	TopologyMultiDatabase   = "multi-database"
	TopologyMemory          = "memory"
)

// Topologies lists every topology name.
var Topologies = []string{TopologyPostgresOnly, TopologyPostgresRedis, TopologyNATSDistributed, TopologyMultiDatabase, TopologyMemory}

// Config is the whole service configuration. Every key has a default (see
// Defaults); a TOML file overrides them and FRAISEQL_* environment
// variables override the file.
type Config struct {
	Topology      string            `koanf:"topology"`
	Role          string            `koanf:"role"`
	ObserversFile string            `koanf:"observers_file"`
	Database      DatabaseConfig    `koanf:"database"`
	Redis         RedisConfig       `koanf:"redis"`
	NATS          NATSConfig        `koanf:"nats"`
	Databases     []SourceDatabase  `koanf:"databases"`
	Reader        ReaderConfig      `koanf:"reader"`
	Performance   PerformanceConfig `koanf:"performance"`
	HTTP          HTTPConfig        `koanf:"http"`
	Logging       LoggingConfig     `koanf:"logging"`
	Security      SecurityConfig    `koanf:"security"`
	Memory        MemoryConfig      `koanf:"memory"`
	Observers     []ObserverConfig  `koanf:"observers"`

	// File is the configuration file the values came from ("" for none).
	File string `koanf:"-"`
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
}

// ReaderConfig tunes the change-log reader.
type ReaderConfig struct {
	Name               string        `koanf:"name"`
	BatchSize          int           `koanf:"batch_size"`
	MaxInFlight        int           `koanf:"max_in_flight"`
	CheckpointInterval time.Duration `koanf:"checkpoint_interval"`
	LeaseTTL           time.Duration `koanf:"lease_ttl"`
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
}

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
// defaults (5 attempts, 100ms, 30s, exponential).
type RetryConfig struct {
	MaxAttempts  *int           `koanf:"max_attempts"`
	InitialDelay *time.Duration `koanf:"initial_delay"`
	MaxDelay     *time.Duration `koanf:"max_delay"`
	Backoff      *string        `koanf:"backoff"`
}

// ActionConfig is one [[observers.actions]] entry; which keys apply
// depends on Type, and a key set for another type is an error.
type ActionConfig struct {
	Type string `koanf:"type"`
	Name string `koanf:"name"`

	// webhook
	URL              string            `koanf:"url"`
	URLEnv           string            `koanf:"url_env"`
	Method           string            `koanf:"method"`
	Headers          map[string]string `koanf:"headers"`
	BodyTemplate     string            `koanf:"body_template"`
	Timeout          *time.Duration    `koanf:"timeout"`
	SigningSecret    string            `koanf:"signing_secret"`
	SigningSecretEnv string            `koanf:"signing_secret_env"`

	// log
	Level           string `koanf:"level"`
	MessageTemplate string `koanf:"message_template"`

	// cache
	KeyPattern string `koanf:"key_pattern"`
	Action     string `koanf:"action"`

	// database
	FunctionName string         `koanf:"function_name"`
	Params       map[string]any `koanf:"params"`

	// slack (and message_template above)
	WebhookURL    string `koanf:"webhook_url"`
	WebhookURLEnv string `koanf:"webhook_url_env"`
	Channel       string `koanf:"channel"`

	// nats
	Subject string `koanf:"subject"`
}

// Defaults returns the configuration used for every key the file and the
// environment leave unset.
func Defaults() Config {
	return Config{
		Topology: TopologyPostgresOnly,
		Role:     "all",
		Database: DatabaseConfig{
			URL:            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
			ChangeLogTable: "core.tb_entity_change_log",
			NotifyChannel:  "fraiseql_events",
			ObserverSchema: "observer",
			MaxConnections: 10,
			ConnectTimeout: 5 * time.Second,
			PollInterval:   time.Second,
		},
		Reader: ReaderConfig{
			Name:               "default",
			BatchSize:          500,
			MaxInFlight:        10000,
			CheckpointInterval: time.Second,
			LeaseTTL:           15 * time.Second,
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
		HTTP:        HTTPConfig{Listen: "127.0.0.1:9090", AdminTokenEnv: "FRAISEQL_ADMIN_TOKEN"},
		Logging:     LoggingConfig{Level: "info", Format: "auto"},
	}
}

// EnvPrefix starts every environment override.
const EnvPrefix = "FRAISEQL_"

// ConfigError is a configuration problem; Key names the offending key.
type ConfigError struct {
	File string
	Key  string
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// LoadConfig reads defaults, then path (when not empty), then the
// environment (environ, usually os.Environ()), and validates the result.
// Every error is a *ConfigError or wraps one, naming the file and key.
func LoadConfig(path string, environ []string) (Config, error) {
	k := koanf.New(".")
	if err := k.Load(structs.Provider(Defaults(), "koanf"), nil); err != nil {
		return Config{}, fmt.Errorf("load defaults: %w", err)
	}
	known := map[string]reflect.Kind{}
	collectKeys(reflect.TypeOf(Config{}), "", known)

	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return Config{}, &ConfigError{File: path, Msg: err.Error()}
		}
		var probe map[string]any
		if err := gotoml.Unmarshal(raw, &probe); err != nil {
			return Config{}, tomlError(path, err)
		}
		kf := koanf.New(".")
		if err := kf.Load(rawbytes.Provider(raw), toml.Parser()); err != nil {
			return Config{}, &ConfigError{File: path, Msg: err.Error()}
		}
		for _, key := range kf.Keys() {
			if _, ok := known[key]; !ok && !underKnownMap(key, known) {
				return Config{}, &ConfigError{File: path, Key: key, Msg: "unknown key" + suggest(key, known)}
			}
		}
		if err := k.Merge(kf); err != nil {
			return Config{}, &ConfigError{File: path, Msg: err.Error()}
		}
	}

	var envErrs []error
	envKeys := map[string]string{}
	for key := range known {
		envKeys[EnvPrefix+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
	}
	err := k.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key, ok := envKeys[name]
			if !ok || known[key] == reflect.Array {
				return "", nil // another program's FRAISEQL_* variable, or a secret named by *_env
			}
			v, err := parseEnvValue(known[key], value)
			if err != nil {
				envErrs = append(envErrs, &ConfigError{Key: key, Msg: fmt.Sprintf("environment variable %s: %v", name, err)})
				return "", nil
			}
			return key, v
		},
	}), nil)
	if err != nil {
		return Config{}, fmt.Errorf("load environment: %w", err)
	}
	if len(envErrs) > 0 {
		return Config{}, errors.Join(envErrs...)
	}

	var cfg Config
	dc := &mapstructure.DecoderConfig{
		DecodeHook:  mapstructure.ComposeDecodeHookFunc(mapstructure.StringToTimeDurationHookFunc()),
		ErrorUnused: true,
		TagName:     "koanf",
		Result:      &cfg,
	}
	dec, err := mapstructure.NewDecoder(dc)
	if err != nil {
		return Config{}, err
	}
	if err := dec.Decode(k.Raw()); err != nil {
		return Config{}, decodeError(path, err)
	}
	cfg.File = path
	if err := cfg.Validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) && ce.File == "" {
			ce.File = path
		}
		return Config{}, err
	}
	return cfg, nil
}

// collectKeys records every leaf key path of t with its kind.
func collectKeys(t reflect.Type, prefix string, out map[string]reflect.Kind) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		ft := f.Type
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)) {
			collectKeys(ft, key, out)
			continue
		}
		kind := ft.Kind()
		switch {
		case ft == reflect.TypeOf(time.Duration(0)):
			kind = reflect.Interface // marks durations
		case kind == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			kind = reflect.Array // marks tables ([[observers]], [[databases]]): not settable from the environment
		}
		out[key] = kind
	}
}

func underKnownMap(key string, known map[string]reflect.Kind) bool {
	for k, kind := range known {
		if kind == reflect.Map && strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

func suggest(key string, known map[string]reflect.Kind) string {
	last := key[strings.LastIndex(key, ".")+1:]
	var cands []string
	for k := range known {
		if strings.HasSuffix(k, "."+last) || k == last {
			cands = append(cands, k)
		}
	}
	sort.Strings(cands)
	if len(cands) > 0 {
		return " (did you mean " + strings.Join(cands, " or ") + "?)"
	}
	return ""
}

func parseEnvValue(kind reflect.Kind, v string) (any, error) {
	switch kind {
	case reflect.Bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not a boolean", v)
		}
		return b, nil
	case reflect.Int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", v)
		}
		return n, nil
	case reflect.Int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", v)
		}
		return n, nil
	case reflect.Interface: // duration
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration (use e.g. 500ms, 5s, 5m)", v)
		}
		return d, nil
	case reflect.Slice:
		var out []string
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	default:
		return v, nil
	}
}

// tomlError names the line and column of a syntax error.
func tomlError(path string, err error) error {
	var de *gotoml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return &ConfigError{File: fmt.Sprintf("%s:%d:%d", path, row, col), Msg: strings.TrimPrefix(de.Error(), "toml: ")}
	}
	return &ConfigError{File: path, Msg: err.Error()}
}

var decodeLine = regexp.MustCompile(`^'([^']*)' (.*)$`)

// decodeError turns mapstructure's first message into a ConfigError naming
// the key: unknown keys and values of the wrong type or format.
func decodeError(path string, err error) error {
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "*"))
		m := decodeLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		key, msg := m[1], m[2]
		if rest, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
			if key == "" {
				return &ConfigError{File: path, Key: rest, Msg: "unknown key"}
			}
			return &ConfigError{File: path, Key: key + "." + rest, Msg: "unknown key"}
		}
		if strings.Contains(msg, "time: ") {
			msg = "not a duration (use e.g. \"500ms\", \"5s\", \"5m\"): " + msg[strings.Index(msg, "time: ")+6:]
		}
		return &ConfigError{File: path, Key: key, Msg: msg}
	}
	return &ConfigError{File: path, Msg: err.Error()}
}

// Validate checks values and the dependencies between them.
func (c *Config) Validate() error {
	if !slices.Contains(Topologies, c.Topology) {
		return &ConfigError{Key: "topology", Msg: fmt.Sprintf("%q is not one of %s", c.Topology, strings.Join(Topologies, ", "))}
	}
	switch c.Topology {
	case TopologyPostgresOnly, TopologyMemory:
		if c.Role != "all" {
			return &ConfigError{Key: "role", Msg: fmt.Sprintf("%q is only meaningful in the NATS topologies; use \"all\"", c.Role)}
		}
	case TopologyPostgresRedis:
		if c.Role != "all" {
			return &ConfigError{Key: "role", Msg: fmt.Sprintf("%q is only meaningful in the NATS topologies; use \"all\"", c.Role)}
		}
		if !c.Redis.Configured() {
			msg := "topology postgres-redis needs Redis: set redis.url (or redis.addrs)"
			switch {
			case c.Performance.EnableDedup:
				msg += "; performance.enable_dedup is on"
			case c.Performance.EnableCaching:
				msg += "; performance.enable_caching is on"
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
	if c.Topology != TopologyMemory {
		if c.Database.URL == "" {
			return &ConfigError{Key: "database.url", Msg: "required for topology " + c.Topology + " (or set FRAISEQL_DATABASE_URL)"}
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
		{"reader.checkpoint_interval", int64(c.Reader.CheckpointInterval)},
		{"reader.lease_ttl", int64(c.Reader.LeaseTTL)},
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
	if c.Reader.Name == "" {
		return &ConfigError{Key: "reader.name", Msg: "must not be empty"}
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
	if r.PoolSize < 0 {
		return &ConfigError{Key: "redis.pool_size", Msg: "must not be negative"}
	}
	if r.Configured() || c.Topology == TopologyMemory || c.Topology == TopologyPostgresOnly {
		return nil
	}
	switch {
	case c.Performance.EnableDedup:
		return &ConfigError{Key: "performance.enable_dedup", Msg: "needs Redis in topology " + c.Topology + ": set redis.url (or redis.addrs)"}
	case c.Performance.EnableCaching:
		return &ConfigError{Key: "performance.enable_caching", Msg: "needs Redis in topology " + c.Topology + ": set redis.url (or redis.addrs)"}
	}
	return nil
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// validateNATS checks the NATS keys and the databases of the NATS
// topologies.
func (c *Config) validateNATS() error {
	n := c.NATS
	switch c.Role {
	case "all", "bridge", "worker":
	default:
		return &ConfigError{Key: "role", Msg: fmt.Sprintf("%q is not one of all, bridge, worker", c.Role)}
	}
	if n.Embedded && c.Role != "all" {
		return &ConfigError{Key: "nats.embedded", Msg: "an in-process server serves only its own process: use role = \"all\""}
	}
	if !n.Embedded && n.URL == "" {
		return &ConfigError{Key: "nats.url", Msg: "required (or set nats.embedded = true)"}
	}
	if n.Embedded && n.StoreDir == "" {
		return &ConfigError{Key: "nats.store_dir", Msg: "required with nats.embedded"}
	}
	if n.SubjectPrefix == "" || strings.ContainsAny(n.SubjectPrefix, "*> \t") || strings.HasSuffix(n.SubjectPrefix, ".") {
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
	if c.Topology == TopologyNATSDistributed {
		return nil
	}
	if len(c.Databases) == 0 && c.Role != "worker" {
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
