// Package email runs email actions: it renders the message from the
// action's templates, checks every address with net/mail, and submits it
// over SMTP (tls none, starttls or implicit tls; AUTH when a username is
// set) through a small pool of connections. SMTP replies decide the
// outcome: 4xx and connection failures are transient, 5xx permanent.
//
// The SMTP client and the MIME writer are github.com/wneessen/go-mail
// (see README, "Email"); this package adds the pool, the deadlines and
// cancellation, and the classification.
package email

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// TLSMode is how the connection to the SMTP server is protected.
type TLSMode string

// The TLS modes.
const (
	// TLSNone sends in clear (a relay on the same host or network).
	TLSNone TLSMode = "none"
	// TLSStartTLS upgrades the connection with STARTTLS and refuses a
	// server that does not offer it (never falls back to clear text).
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit speaks TLS from the first byte (port 465, RFC 8314).
	TLSImplicit TLSMode = "tls"
)

// Defaults.
const (
	DefaultTLS          = TLSStartTLS
	DefaultTimeout      = 10 * time.Second
	DefaultMaxIdleConns = 2
	DefaultIdleTimeout  = 30 * time.Second
	// MaxRecipients bounds to + cc + bcc of one message (RFC 5321 asks
	// servers to accept at least 100).
	MaxRecipients = 100
)

// DefaultPort is the port for mode when Config.Port is zero: 25 for none,
// 587 (submission) for starttls, 465 for tls.
func DefaultPort(mode TLSMode) int {
	switch mode {
	case TLSNone:
		return 25
	case TLSImplicit:
		return 465
	default:
		return 587
	}
}

// ServerAddr is the SMTP server an Executor with these settings reaches,
// as host:port: the host as the executor uses it (trimmed), port 0 the
// mode's default port (DefaultPort). The composition root names email
// endpoints by it before any executor exists.
func ServerAddr(host string, port int, mode TLSMode) string {
	return net.JoinHostPort(strings.TrimSpace(host), strconv.Itoa(cmp.Or(port, DefaultPort(cmp.Or(mode, DefaultTLS)))))
}

// Config configures an Executor. Zero values take the noted defaults.
type Config struct {
	Host     string  // SMTP server host name or IP literal; required
	Port     int     // default DefaultPort(TLS)
	From     string  // sender, RFC 5322 ("Orders <orders@example.com>"); required
	TLS      TLSMode // default starttls
	Username string  // AUTH when set (the mechanism the server offers, never PLAIN or LOGIN in clear)
	Password string  // never logged nor quoted in errors
	// Timeout bounds the connection set-up (dial, greeting, EHLO,
	// STARTTLS, AUTH) and then each message's transaction; default 10s.
	Timeout time.Duration
	// HELOName is the name given in EHLO/HELO; default the host name.
	HELOName string
	// TLSConfig is the base for starttls and tls (RootCAs, MinVersion, ...);
	// it is cloned and ServerName defaults to Host. Nil: system roots.
	TLSConfig *tls.Config
	// MaxIdleConns is how many open connections are kept for the next
	// messages; default 2, negative: a new connection per message.
	MaxIdleConns int
	// IdleTimeout closes a kept connection unused this long, below the
	// servers' own idle limits (RFC 5321 suggests 5 minutes); default 30s.
	IdleTimeout time.Duration
	// Now is the clock for the Date header; default time.Now.
	Now func() time.Time
}

// Executor runs email actions. Safe for concurrent use.
type Executor struct {
	addr       string // host:port, the only way errors name the server
	from       *mail.Address
	fromDomain string
	opts       []gomail.Option
	host       string
	tlsMode    TLSMode
	tlsConfig  *tls.Config
	timeout    time.Duration
	logger     *slog.Logger
	now        func() time.Time
	// missingNotes limits the missing-placeholder warnings (one a minute
	// per action).
	missingNotes ports.NoteLimiter
	pool         *pool
}

var _ ports.ActionExecutor = (*Executor)(nil)

// NewExecutor checks cfg and builds an Executor. No connection is made
// until the first message.
func NewExecutor(cfg Config, logger *slog.Logger) (*Executor, error) {
	if logger == nil {
		return nil, errors.New("email: new executor: logger is nil")
	}
	if err := fillAndCheck(&cfg); err != nil {
		return nil, fmt.Errorf("email: new executor: %w", err)
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("email: new executor: from %q is not an address: %w", cfg.From, err)
	}
	e := &Executor{
		addr:       ServerAddr(cfg.Host, cfg.Port, cfg.TLS),
		from:       from,
		fromDomain: messageIDDomain(from.Address),
		host:       cfg.Host,
		tlsMode:    cfg.TLS,
		timeout:    cfg.Timeout,
		logger:     logger,
		now:        cfg.Now,
		pool:       newPool(max(cfg.MaxIdleConns, 0), cfg.IdleTimeout),
	}
	if cfg.TLS != TLSNone {
		e.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLSConfig != nil {
			e.tlsConfig = cfg.TLSConfig.Clone()
		}
		e.tlsConfig.ServerName = cmp.Or(e.tlsConfig.ServerName, cfg.Host)
	}
	e.opts = []gomail.Option{
		gomail.WithPort(cfg.Port),
		gomail.WithTimeout(cfg.Timeout),
		gomail.WithTLSPolicy(tlsPolicy(cfg.TLS)),
	}
	if e.tlsConfig != nil {
		e.opts = append(e.opts, gomail.WithTLSConfig(e.tlsConfig))
	}
	if cfg.HELOName != "" {
		e.opts = append(e.opts, gomail.WithHELO(cfg.HELOName))
	}
	if cfg.Username != "" {
		e.opts = append(e.opts,
			gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(cfg.Username),
			gomail.WithPassword(cfg.Password))
	}
	// Apply the options once so a mistake shows now, not at the first send.
	if _, err := gomail.NewClient(cfg.Host, e.opts...); err != nil {
		return nil, fmt.Errorf("email: new executor: %w", err)
	}
	return e, nil
}

func fillAndCheck(cfg *Config) error {
	cfg.TLS = cmp.Or(cfg.TLS, DefaultTLS)
	switch cfg.TLS {
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return fmt.Errorf("tls %q is not one of none, starttls, tls", cfg.TLS)
	}
	cfg.Host = strings.TrimSpace(cfg.Host)
	if cfg.Host == "" || strings.ContainsAny(cfg.Host, " \t\r\n/") {
		return fmt.Errorf("host %q is not a host name or IP address", cfg.Host)
	}
	cfg.Port = cmp.Or(cfg.Port, DefaultPort(cfg.TLS))
	if cfg.Port < 1 || cfg.Port > 65535 {
		return fmt.Errorf("port %d is not between 1 and 65535", cfg.Port)
	}
	if cfg.From == "" {
		return errors.New("from is required")
	}
	switch {
	case cfg.Username == "" && cfg.Password != "":
		return errors.New("password is set without username")
	case cfg.Username != "" && cfg.Password == "":
		return errors.New("username is set without password")
	case cfg.Username != "" && cfg.TLS == TLSNone:
		return errors.New("username needs tls = starttls or tls: the password would cross the network in clear")
	}
	if strings.ContainsAny(cfg.HELOName, " \t\r\n") {
		return fmt.Errorf("helo_name %q contains white space", cfg.HELOName)
	}
	if cfg.Timeout < 0 {
		return fmt.Errorf("timeout %s is negative", cfg.Timeout)
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	if cfg.IdleTimeout < 0 {
		return fmt.Errorf("idle timeout %s is negative", cfg.IdleTimeout)
	}
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.MaxIdleConns = cmp.Or(cfg.MaxIdleConns, DefaultMaxIdleConns)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}

// tlsPolicy maps a mode to go-mail's STARTTLS policy. For implicit TLS the
// dialer hands go-mail a *tls.Conn; the opportunistic policy then only
// reads its state (so AUTH knows the connection is encrypted): servers do
// not offer STARTTLS inside TLS.
func tlsPolicy(mode TLSMode) gomail.TLSPolicy {
	switch mode {
	case TLSNone:
		return gomail.NoTLS
	case TLSImplicit:
		return gomail.TLSOpportunistic
	default:
		return gomail.TLSMandatory
	}
}

// Server is the SMTP server as host:port, the endpoint the action reaches.
func (e *Executor) Server() string { return e.addr }

// Close ends the kept connections (QUIT). Messages sent afterwards open
// and close their own connection.
func (e *Executor) Close() { e.pool.close(e.timeout) }

// Execute renders the message for ev and submits it. It returns nil when
// the server accepted the message; domain.Permanent for a 5xx answer, an
// address that is not one (naming its field: to, to_template, cc, bcc,
// reply_to) and configuration that cannot work; a transient error for
// 4xx answers, connection failures, timeouts and ctx ending.
func (e *Executor) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	if act == nil || act.Email == nil {
		return domain.Permanent(errors.New("email: action has no email config"))
	}
	if ev == nil {
		return domain.Permanent(errors.New("email: no event"))
	}
	r, missing, err := render(ev, act.Email)
	if len(missing) > 0 {
		e.missingNotes.MissingPlaceholders(ctx, e.logger, "email templates have missing placeholders", ev, obs, act, missing)
	}
	if err != nil {
		return domain.Permanent(fmt.Errorf("email: action %q: %w", act.Name, err))
	}
	msg := e.message(r, ev, obs, act)
	return e.send(ctx, msg)
}
