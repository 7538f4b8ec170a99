package nats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// StreamConfig is the JetStream stream events are stored in. EnsureStream
// applies every field.
type StreamConfig struct {
	// Name of the stream (default "FRAISEQL_EVENTS").
	Name string
	// SubjectPrefix (default "fraiseql.events"): the stream holds
	// {prefix}.>, messages go to {prefix}.{source}.{entity_type}.{event_type}.
	SubjectPrefix string
	// Storage is "file" (default) or "memory".
	Storage string
	// Retention is "limits" (default), "workqueue" or "interest".
	Retention string
	// MaxAge is how long messages are kept; 0 (or negative) = unlimited.
	// The service's configuration defaults it to 7 days (168h).
	MaxAge time.Duration
	// MaxMsgs bounds the number of messages; 0 = unlimited. A full
	// stream refuses new messages (the bridge retries them), and only a
	// workqueue or interest stream may be bounded so: a limits stream
	// keeps consumed messages and would fill for good.
	MaxMsgs int64
	// MaxBytes bounds the stream's size; 0 = unlimited; as MaxMsgs.
	MaxBytes int64
	// DuplicateWindow is how long a Nats-Msg-Id is remembered (default 2m).
	DuplicateWindow time.Duration
	// Replicas (default 1).
	Replicas int
}

// ConsumerConfig is the durable pull consumer shared by all workers.
type ConsumerConfig struct {
	// Durable name (default "fraiseql-observer-workers").
	Durable string
	// AckWait is how long a delivery may stay unacknowledged before it is
	// redelivered (default 30s).
	AckWait time.Duration
	// MaxDeliver is how many times a message is delivered at most
	// (default 10; -1 = unlimited).
	MaxDeliver int
	// MaxAckPending bounds unacknowledged deliveries across all workers
	// (default 1000; -1 = unlimited).
	MaxAckPending int
	// FilterSubject (default {prefix}.>). A single subject: the plural
	// form needs NATS 2.10.
	FilterSubject string
	// MaxBytesInHand bounds the bytes of the messages a Consume has handed
	// to its handlers and not seen finished (default 64 MiB): a message
	// waits until the handlers finish enough (one larger than the whole
	// bound waits until none is in hand).
	MaxBytesInHand int64
}

// DefaultMaxBytesInHand is ConsumerConfig.MaxBytesInHand's default, the
// reader's default in-flight bytes.
const DefaultMaxBytesInHand = 64 << 20

// Config describes the connection, the stream and the consumer.
type Config struct {
	// URL of the server(s), comma-separated; ignored by ConnectEmbedded.
	URL        string
	ClientName string
	// ConnectTimeout bounds the first connection (default 5s).
	ConnectTimeout time.Duration
	// MaxPending bounds unacknowledged asynchronous publications
	// (default 1024); Publish blocks when it is reached.
	MaxPending int
	// PublishTimeout is how long a publication waits for the server's
	// acknowledgement before it fails (default 30s).
	PublishTimeout time.Duration
	Stream         StreamConfig
	Consumer       ConsumerConfig
}

// The defaults applied to a zero Config.
const (
	DefaultStreamName      = "FRAISEQL_EVENTS"
	DefaultSubjectPrefix   = "fraiseql.events"
	DefaultDurable         = "fraiseql-observer-workers"
	DefaultDuplicateWindow = 2 * time.Minute
)

// withDefaults fills unset fields.
func (cfg Config) withDefaults() Config {
	cfg.ClientName = cmp.Or(cfg.ClientName, "fraiseql-observer")
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 5*time.Second)
	cfg.MaxPending = cmp.Or(cfg.MaxPending, 1024)
	cfg.PublishTimeout = cmp.Or(cfg.PublishTimeout, 30*time.Second)

	s := &cfg.Stream
	s.Name = cmp.Or(s.Name, DefaultStreamName)
	s.SubjectPrefix = cmp.Or(strings.TrimSuffix(s.SubjectPrefix, "."), DefaultSubjectPrefix)
	s.Storage = cmp.Or(strings.ToLower(s.Storage), "file")
	s.Retention = cmp.Or(strings.ToLower(s.Retention), "limits")
	s.DuplicateWindow = cmp.Or(s.DuplicateWindow, DefaultDuplicateWindow)
	s.Replicas = cmp.Or(s.Replicas, 1)

	c := &cfg.Consumer
	c.Durable = cmp.Or(c.Durable, DefaultDurable)
	c.AckWait = cmp.Or(c.AckWait, 30*time.Second)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, 10)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, 1000)
	c.FilterSubject = cmp.Or(c.FilterSubject, s.SubjectPrefix+".>")
	c.MaxBytesInHand = cmp.Or(c.MaxBytesInHand, DefaultMaxBytesInHand)
	return cfg
}

// Validate reports the first invalid setting of a Config with its
// defaults filled.
func (cfg Config) Validate() error {
	s, c := cfg.Stream, cfg.Consumer
	switch {
	case cfg.ConnectTimeout < 0:
		return errors.New("connect timeout must not be negative")
	case cfg.MaxPending < 1:
		return fmt.Errorf("max pending must be at least 1, got %d", cfg.MaxPending)
	case cfg.PublishTimeout < 0:
		return errors.New("publish timeout must not be negative")
	case !validName(s.Name):
		return fmt.Errorf("stream name %q must not contain spaces, '.', '*', '>' or path separators", s.Name)
	case !validSubject(s.SubjectPrefix, false):
		return fmt.Errorf("subject prefix %q is not a subject without wildcards", s.SubjectPrefix)
	case s.Storage != "file" && s.Storage != "memory":
		return fmt.Errorf("stream storage %q must be \"file\" or \"memory\"", s.Storage)
	case s.Retention != "limits" && s.Retention != "workqueue" && s.Retention != "interest":
		return fmt.Errorf("stream retention %q must be \"limits\", \"workqueue\" or \"interest\"", s.Retention)
	case s.Retention == "limits" && (s.MaxMsgs > 0 || s.MaxBytes > 0):
		return fmt.Errorf("stream max msgs %d / max bytes %d with retention \"limits\": a full stream would drop unconsumed messages; use retention \"workqueue\" or max age", s.MaxMsgs, s.MaxBytes)
	case s.DuplicateWindow < 0:
		return errors.New("duplicate window must not be negative")
	case s.MaxAge > 0 && s.DuplicateWindow > s.MaxAge:
		return fmt.Errorf("duplicate window %s must not exceed max age %s", s.DuplicateWindow, s.MaxAge)
	case s.Replicas < 1 || s.Replicas > 5:
		return fmt.Errorf("stream replicas must be between 1 and 5, got %d", s.Replicas)
	case !validName(c.Durable):
		return fmt.Errorf("durable name %q must not contain spaces, '.', '*', '>' or path separators", c.Durable)
	case c.AckWait <= 0:
		return errors.New("consumer ack wait must be positive")
	case c.MaxDeliver < -1 || c.MaxDeliver == 0:
		return fmt.Errorf("consumer max deliver must be positive or -1, got %d", c.MaxDeliver)
	case c.MaxAckPending < -1 || c.MaxAckPending == 0:
		return fmt.Errorf("consumer max ack pending must be positive or -1, got %d", c.MaxAckPending)
	case c.MaxBytesInHand < 0:
		return fmt.Errorf("consumer max bytes in hand must not be negative, got %d", c.MaxBytesInHand)
	case !validSubject(c.FilterSubject, true):
		return fmt.Errorf("consumer filter subject %q is not a valid subject", c.FilterSubject)
	}
	return nil
}

func validName(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\r\n.*>/\\")
}

// validSubject checks dot-separated non-empty tokens without whitespace;
// wildcards (* as a token, > as the last token) only when allowed.
func validSubject(s string, wildcards bool) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return false
		case t == "*" || (t == ">" && i == len(tokens)-1):
			if !wildcards {
				return false
			}
		case strings.ContainsAny(t, "*>"):
			return false
		}
	}
	return true
}

// Conn is a connection to a JetStream server with the adapter's settings.
// Safe for concurrent use.
type Conn struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	cfg    Config
	logger *slog.Logger

	closeOnce sync.Once
	closed    chan struct{} // closed by Close: pending publications fail
}

// Connect connects to cfg.URL and checks that JetStream answers. The first
// connection must succeed within ConnectTimeout (else the error wraps
// ports.ErrUnavailable); after it, the client reconnects forever, logging
// each disconnect and reconnect.
func Connect(ctx context.Context, cfg Config, logger *slog.Logger) (*Conn, error) {
	if strings.TrimSpace(cfg.URL) == "" {
		return nil, errors.New("nats: connect: url is required")
	}
	return connect(ctx, cfg, logger, cfg.URL)
}

// ConnectEmbedded connects in-process (no network) to an embedded server;
// cfg.URL is ignored.
func ConnectEmbedded(ctx context.Context, e *Embedded, cfg Config, logger *slog.Logger) (*Conn, error) {
	if e == nil {
		return nil, errors.New("nats: connect: embedded server is required")
	}
	return connect(ctx, cfg, logger, "", nats.InProcessServer(e.srv))
}

func connect(ctx context.Context, cfg Config, logger *slog.Logger, url string, extra ...nats.Option) (*Conn, error) {
	if logger == nil {
		return nil, errors.New("nats: connect: logger is required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nats: config: %w", err)
	}
	target := redactURLs(url)
	if url == "" {
		target = "embedded"
	}
	log := logger.With(slog.String("nats", target))
	opts := append([]nats.Option{
		nats.Name(cfg.ClientName),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected, reconnecting", slog.String("error", err.Error()))
				return
			}
			log.Debug("nats disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", slog.String("server", redactURLs(nc.ConnectedUrl())))
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{slog.String("error", err.Error())}
			if sub != nil {
				attrs = append(attrs, slog.String("subject", sub.Subject))
			}
			log.Warn("nats asynchronous error", attrs...)
		}),
	}, extra...)

	type result struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, opts...)
		ch <- result{nc, err}
	}()
	var nc *nats.Conn
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("nats: connect to %s: %w: %w", target, ports.ErrUnavailable, r.err)
		}
		nc = r.nc
	case <-ctx.Done():
		go func() { // the dial is bounded by ConnectTimeout: close what it yields
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("nats: connect to %s: %w", target, ctx.Err())
	}

	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		nc.Close()
		return nil, interpretError("jetstream", err)
	}
	actx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		nc.Close()
		return nil, interpretError("jetstream account info", err)
	}
	log.Info("nats connected", slog.String("server", redactURLs(nc.ConnectedUrl())),
		slog.String("server_version", nc.ConnectedServerVersion()))
	return &Conn{nc: nc, js: js, cfg: cfg, logger: logger, closed: make(chan struct{})}, nil
}

// Config returns the configuration in use, defaults filled.
func (c *Conn) Config() Config { return c.cfg }

// Ping checks that the server answers (readiness).
func (c *Conn) Ping(ctx context.Context) error {
	if c.nc.IsClosed() {
		return fmt.Errorf("nats: ping: %w: %w", ports.ErrUnavailable, nats.ErrConnectionClosed)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	return interpretError("ping", c.nc.FlushWithContext(ctx))
}

// Close closes the connection. Publications still waiting for their
// acknowledgement get an error wrapping ports.ErrUnavailable; call
// Publisher.Flush first to avoid that.
func (c *Conn) Close() {
	c.closeOnce.Do(func() {
		c.nc.Close()
		close(c.closed)
	})
}

// EnsureStream creates the stream, or updates it so that every setting of
// Config.Stream is applied; with retention "interest" it creates (or
// updates) the workers' durable consumer too. A change the server cannot
// apply (storage type, some retention changes) is an error naming the
// stream.
func (c *Conn) EnsureStream(ctx context.Context) error {
	s := c.cfg.Stream
	sc := jetstream.StreamConfig{
		Name:       s.Name,
		Subjects:   []string{s.SubjectPrefix + ".>"},
		Retention:  retentionPolicy(s.Retention),
		Storage:    storageType(s.Storage),
		MaxAge:     max(s.MaxAge, 0),
		MaxMsgs:    unlimited(s.MaxMsgs),
		MaxBytes:   unlimited(s.MaxBytes),
		Duplicates: s.DuplicateWindow,
		Replicas:   s.Replicas,
		// A full stream refuses new messages rather than dropping old ones
		// no worker may have taken yet: the bridge retries, holding its
		// checkpoint, and the change log keeps the backlog. (Only a
		// workqueue or interest stream can be bounded by count or bytes,
		// see Validate: consumed messages leave it.)
		Discard: jetstream.DiscardNew,
	}
	// A server-side failure (API code 5xx: the server could not create the
	// stream's store, say while it removes an account directory another
	// client just emptied) is retried a few times before it is an error.
	err := retryServerErrors(ctx, ensureStreamAttempts, 200*time.Millisecond, func() error {
		_, err := c.js.CreateOrUpdateStream(ctx, sc)
		return err
	})
	if err != nil {
		return interpretError("ensure stream "+s.Name, err)
	}
	if s.Retention == "interest" {
		// An interest stream stores a message only for the consumers that
		// exist then: a bridge that started before any worker would have
		// its events acknowledged and dropped. The workers' durable comes
		// with the stream.
		if _, err := c.ensureConsumer(ctx); err != nil {
			return err
		}
	}
	return nil
}

// retryServerErrors runs f up to attempts times while it fails with a
// JetStream API error of code 500 or above, pausing pause × the attempt
// number between tries; it returns f's last error (or ctx's end, with
// that error, during a pause).
func retryServerErrors(ctx context.Context, attempts int, pause time.Duration, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		var api *jetstream.APIError
		if attempt >= attempts || !errors.As(err, &api) || api.Code < 500 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * pause):
		}
	}
}

// ensureStreamAttempts bounds the attempts of EnsureStream on server-side
// failures.
const ensureStreamAttempts = 4

// StreamSettings reads the stream's settings back from the server, in the
// terms of StreamConfig (unlimited reads as 0). A missing stream wraps
// ports.ErrNotFound.
func (c *Conn) StreamSettings(ctx context.Context) (StreamConfig, error) {
	st, err := c.js.Stream(ctx, c.cfg.Stream.Name)
	if err != nil {
		return StreamConfig{}, interpretError("stream settings "+c.cfg.Stream.Name, err)
	}
	sc := st.CachedInfo().Config
	out := StreamConfig{
		Name:            sc.Name,
		Storage:         storageName(sc.Storage),
		Retention:       retentionName(sc.Retention),
		MaxAge:          sc.MaxAge,
		MaxMsgs:         max(sc.MaxMsgs, 0),
		MaxBytes:        max(sc.MaxBytes, 0),
		DuplicateWindow: sc.Duplicates,
		Replicas:        sc.Replicas,
	}
	if len(sc.Subjects) > 0 {
		out.SubjectPrefix = strings.TrimSuffix(sc.Subjects[0], ".>")
	}
	return out, nil
}

// DeleteStream removes the stream and every message in it (tests and the
// operator's reset). A missing stream wraps ports.ErrNotFound.
func (c *Conn) DeleteStream(ctx context.Context) error {
	return interpretError("delete stream "+c.cfg.Stream.Name, c.js.DeleteStream(ctx, c.cfg.Stream.Name))
}

func unlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

func storageType(s string) jetstream.StorageType {
	if s == "memory" {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

func storageName(t jetstream.StorageType) string {
	if t == jetstream.MemoryStorage {
		return "memory"
	}
	return "file"
}

func retentionPolicy(s string) jetstream.RetentionPolicy {
	switch s {
	case "workqueue":
		return jetstream.WorkQueuePolicy
	case "interest":
		return jetstream.InterestPolicy
	default:
		return jetstream.LimitsPolicy
	}
}

func retentionName(p jetstream.RetentionPolicy) string {
	switch p {
	case jetstream.WorkQueuePolicy:
		return "workqueue"
	case jetstream.InterestPolicy:
		return "interest"
	default:
		return "limits"
	}
}

// RedactURLs hides credentials (user, password or token) in a
// comma-separated NATS server list, for display.
func RedactURLs(s string) string { return redactURLs(s) }

// redactURLs hides credentials (user, password or token) in a
// comma-separated server list.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.Scheme != "" {
			if u.User != nil {
				u.User = url.User("xxxxx")
			}
			parts[i] = u.String()
		} else if at := strings.LastIndex(p, "@"); at >= 0 {
			parts[i] = "xxxxx" + p[at:]
		}
	}
	return strings.Join(parts, ",")
}
