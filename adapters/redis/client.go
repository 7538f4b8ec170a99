package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Config selects and tunes the Redis connection. Set URL for a single node,
// or Addrs with MasterName (Sentinel) or Cluster.
type Config struct {
	// URL is redis://, rediss:// or unix:// for a single node; it carries
	// its own credentials and database number.
	URL string
	// Addrs are the Sentinel or Cluster seed addresses (host:port); a
	// single address without MasterName or Cluster is a single node.
	Addrs []string
	// MasterName is the Sentinel master name.
	MasterName string
	// Cluster selects Redis Cluster over Addrs.
	Cluster bool
	// Username and Password authenticate in Addrs mode.
	Username, Password string
	// PoolSize is the connection pool size per node (default 10 *
	// GOMAXPROCS).
	PoolSize int
	// ConnectTimeout bounds dialing (default 2s).
	ConnectTimeout time.Duration
	// CommandTimeout bounds each read and write (default 500ms).
	CommandTimeout time.Duration
	// KeyPrefix is prepended to every key (default none).
	KeyPrefix string
}

func (c Config) withDefaults() Config {
	c.PoolSize = cmp.Or(c.PoolSize, 10*runtime.GOMAXPROCS(0))
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, 2*time.Second)
	c.CommandTimeout = cmp.Or(c.CommandTimeout, 500*time.Millisecond)
	return c
}

// Validate reports the first configuration problem.
func (c Config) Validate() error {
	switch {
	case c.URL == "" && len(c.Addrs) == 0:
		return errors.New("set url or addrs")
	case c.URL != "" && len(c.Addrs) > 0:
		return errors.New("set url or addrs, not both")
	case c.URL != "" && (c.MasterName != "" || c.Cluster):
		return errors.New("sentinel and cluster need addrs, not url")
	case c.URL != "" && (c.Username != "" || c.Password != ""):
		return errors.New("username and password apply to addrs; put credentials in the url")
	case c.MasterName != "" && c.Cluster:
		return errors.New("choose cluster or sentinel (master name), not both")
	case len(c.Addrs) > 1 && c.MasterName == "" && !c.Cluster:
		return errors.New("several addrs need a sentinel master name or cluster")
	case c.PoolSize < 0:
		return fmt.Errorf("pool size %d is negative", c.PoolSize)
	case c.ConnectTimeout < 0:
		return fmt.Errorf("connect timeout %v is negative", c.ConnectTimeout)
	case c.CommandTimeout < 0:
		return fmt.Errorf("command timeout %v is negative", c.CommandTimeout)
	}
	for i, a := range c.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("addrs[%d] %q is not host:port", i, a)
		}
	}
	return nil
}

// Retries stay few so an outage surfaces within about two command timeouts
// and callers fail open quickly instead of stalling every event: one retry
// of a command (the scripts are safe to repeat), one dial per attempt.
const (
	maxRetries   = 1
	dialAttempts = 1
)

// protocol is RESP2: the observer uses no RESP3 feature (push messages,
// client-side caching), and go-redis checks every RESP3 reply for pending
// push notifications.
const protocol = 2

// Client is a connection pool to Redis shared by the deduplicator, the
// result cache and the invalidator. Safe for concurrent use.
type Client struct {
	rdb     goredis.UniversalClient
	batch   *batcher               // pipelines the commands of concurrent callers
	cluster *goredis.ClusterClient // set in Cluster mode
	prefix  string
	target  string // redacted address, for messages
}

// Open connects to Redis and pings it once, bounded by ConnectTimeout and
// CommandTimeout, so a wrong address fails at startup instead of on the
// first event. An unreachable server is an error wrapping
// ports.ErrUnavailable; a bad configuration is an error naming the problem.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+cfg.CommandTimeout)
	defer cancel()
	if err := c.rdb.Ping(pingCtx).Err(); err != nil {
		_ = c.Close()
		// The ping's own deadline is an outage, not the caller's cancellation.
		return nil, c.wrap(ctx, "open: ping "+c.target, err)
	}
	return c, nil
}

// New builds the client without contacting Redis: connections are made on
// first use, so a service can start (and fail open) while Redis is down. A
// bad configuration is an error naming the problem.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redis: open: %w", err)
	}
	c := &Client{prefix: cfg.KeyPrefix}
	if cfg.URL != "" {
		opts, err := parseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: open: %w", err)
		}
		opts.PoolSize = cfg.PoolSize
		opts.DialTimeout = cfg.ConnectTimeout
		opts.ReadTimeout = cfg.CommandTimeout
		opts.WriteTimeout = cfg.CommandTimeout
		opts.ContextTimeoutEnabled = true
		opts.MaxRetries = maxRetries
		opts.DialerRetries = dialAttempts
		opts.Protocol = protocol
		// NewClient rather than NewUniversalClient: only Options carries the
		// network of a unix:// URL.
		c.rdb = goredis.NewClient(opts)
		c.target = redactURL(cfg.URL)
	} else {
		c.rdb = goredis.NewUniversalClient(&goredis.UniversalOptions{
			Addrs:                 cfg.Addrs,
			MasterName:            cfg.MasterName,
			IsClusterMode:         cfg.Cluster,
			Username:              cfg.Username,
			Password:              cfg.Password,
			PoolSize:              cfg.PoolSize,
			DialTimeout:           cfg.ConnectTimeout,
			ReadTimeout:           cfg.CommandTimeout,
			WriteTimeout:          cfg.CommandTimeout,
			ContextTimeoutEnabled: true,
			MaxRetries:            maxRetries,
			DialerRetries:         dialAttempts,
			Protocol:              protocol,
		})
		c.cluster, _ = c.rdb.(*goredis.ClusterClient)
		c.target = strings.Join(cfg.Addrs, ",")
	}
	c.batch = newBatcher(c.rdb, cfg.ConnectTimeout+cfg.CommandTimeout)
	return c, nil
}

// Ping checks that Redis answers.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return c.wrap(ctx, "ping "+c.target, err)
	}
	return nil
}

// Close closes the pool; later calls fail with ports.ErrUnavailable.
func (c *Client) Close() error {
	c.batch.close()
	if err := c.rdb.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// wrap names the operation and marks outages with ports.ErrUnavailable. An
// error caused by the caller's own cancellation is not an outage.
func (c *Client) wrap(ctx context.Context, op string, err error) error {
	if ctx.Err() == nil && isUnavailable(err) {
		return fmt.Errorf("redis: %s: %w: %w", op, ports.ErrUnavailable, err)
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// isUnavailable reports whether err means Redis could not be reached or
// cannot serve right now, as opposed to a refused request.
func isUnavailable(err error) bool {
	switch {
	case errors.Is(err, goredis.ErrClosed),
		errors.Is(err, goredis.ErrPoolTimeout),
		errors.Is(err, goredis.ErrPoolExhausted),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded),
		goredis.IsLoadingError(err),
		goredis.IsReadOnlyError(err),
		goredis.IsClusterDownError(err),
		goredis.IsTryAgainError(err),
		goredis.IsMasterDownError(err),
		goredis.IsMaxClientsError(err):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// parseURL parses a single-node URL without echoing it (it may hold a
// password) in the error.
func parseURL(raw string) (*goredis.Options, error) {
	if _, err := url.Parse(raw); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("url is not valid: %w", err)
	}
	opts, err := goredis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	return opts, nil
}

// redactURL hides the password of a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}
