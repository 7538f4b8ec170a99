package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"slices"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// conn is one SMTP session that went through greeting, EHLO, STARTTLS and
// AUTH, ready for messages.
type conn struct {
	client *gomail.Client // holds the options the session was set up with
	smtp   *smtp.Client
	raw    net.Conn    // the TCP connection, closed to interrupt any read or write
	stop   func() bool // ends the current watch of a ctx
	idle   time.Time   // when it went back to the pool
}

// watch closes the connection when ctx ends, so a server that stops
// answering cannot hold a send past its caller's deadline or cancellation.
func (c *conn) watch(ctx context.Context) {
	c.stop = context.AfterFunc(ctx, func() { _ = c.raw.Close() })
}

// unwatch ends the watch; false means ctx ended and the connection is closed.
func (c *conn) unwatch() bool {
	if c.stop == nil {
		return true
	}
	ok := c.stop()
	c.stop = nil
	return ok
}

// quit says QUIT, waiting at most timeout for the answer, then closes.
func (c *conn) quit(timeout time.Duration) {
	if err := c.smtp.UpdateDeadline(timeout); err == nil {
		_ = c.client.CloseWithSMTPClient(c.smtp)
	}
	_ = c.raw.Close()
}

// dial opens a session: TCP (and TLS for the tls mode) under ctx, then
// greeting, EHLO, STARTTLS and AUTH within the timeout. The connection is
// watched by ctx until the caller unwatches it.
func (e *Executor) dial(ctx context.Context) (*conn, error) {
	c := &conn{}
	dialer := func(dctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		raw, err := d.DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.raw = raw
		c.watch(ctx)
		if e.tlsMode != TLSImplicit {
			return raw, nil
		}
		tc := tls.Client(raw, e.tlsConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, err
		}
		return tc, nil
	}
	client, err := gomail.NewClient(e.host, append(slices.Clip(e.opts), gomail.WithDialContextFunc(dialer))...)
	if err != nil {
		return nil, err
	}
	sc, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		if c.raw != nil {
			c.unwatch()
			_ = c.raw.Close()
		}
		return nil, err
	}
	c.client, c.smtp = client, sc
	return c, nil
}

// send submits msg on a kept session or a new one. A kept session that
// does not answer NOOP (the server dropped it while idle) is closed with
// the other kept ones and the message goes on a new session.
func (e *Executor) send(ctx context.Context, msg *gomail.Msg) error {
	from, err := msg.GetSender(false)
	if err != nil {
		return domain.Permanent(fmt.Errorf("email: sender: %w", err))
	}
	rcpts, err := msg.GetRecipients()
	if err != nil {
		return domain.Permanent(fmt.Errorf("email: recipients: %w", err))
	}
	c := e.pool.get()
	if c != nil {
		c.watch(ctx)
		if err := e.command(c, func() error { return c.smtp.Noop() }); err != nil {
			c.unwatch()
			_ = c.raw.Close()
			e.pool.drop()
			c = nil
		}
	}
	if c == nil {
		if c, err = e.dial(ctx); err != nil {
			return e.failure(ctx, "connect", err)
		}
	}
	err = e.transact(c, from, rcpts, msg)
	alive := c.unwatch()
	if err != nil {
		_ = c.raw.Close()
		return e.failure(ctx, "send", err)
	}
	if alive {
		e.pool.put(c, e.timeout)
	} else {
		_ = c.raw.Close()
	}
	return nil
}

// transact runs one mail transaction: MAIL, RCPT for every recipient
// (stopping at the first refusal, so a message goes to all or none), DATA,
// the message, and the final dot; all of it within the timeout (a server
// that answers each of 100 RCPTs slowly cannot hold the action for 100
// timeouts).
func (e *Executor) transact(c *conn, from string, rcpts []string, msg *gomail.Msg) error {
	deadline := time.Now().Add(e.timeout)
	command := func(f func() error) error {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("the exchange took longer than %s: %w", e.timeout, os.ErrDeadlineExceeded)
		}
		if err := c.smtp.UpdateDeadline(left); err != nil {
			return err
		}
		return f()
	}
	if err := command(func() error { return c.smtp.Mail(from) }); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, rcpt := range rcpts {
		if err := command(func() error { return c.smtp.Rcpt(rcpt) }); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", rcpt, err) // rcpt is "<address>"
		}
	}
	var w io.WriteCloser
	if err := command(func() (err error) { w, err = c.smtp.Data(); return err }); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := command(func() error { _, err := msg.WriteTo(w); return err }); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	if err := command(w.Close); err != nil {
		return fmt.Errorf("end of message: %w", err)
	}
	return nil
}

// command runs one SMTP exchange with a fresh deadline.
func (e *Executor) command(c *conn, f func() error) error {
	if err := c.smtp.UpdateDeadline(e.timeout); err != nil {
		return err
	}
	return f()
}

// failure wraps err with the server's host:port and classifies it: 5xx
// answers and impossible configurations permanent, everything else (4xx,
// network errors, timeouts, ctx ending) transient.
func (e *Executor) failure(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return domain.Transient(fmt.Errorf("email: smtp %s: %s: %w (%w)", e.addr, op, ctxErr, err), 0)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return domain.Transient(fmt.Errorf("email: smtp %s: %s: no answer within %s: %w", e.addr, op, e.timeout, err), 0)
	}
	wrapped := fmt.Errorf("email: smtp %s: %s: %w", e.addr, op, err)
	if permanent(err) {
		return domain.Permanent(wrapped)
	}
	return domain.Transient(wrapped, 0)
}

// permanent reports whether err cannot succeed on a retry: a 5xx reply or
// no AUTH mechanism usable on this connection.
func permanent(err error) bool {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code >= 500 && te.Code < 600
	}
	return errors.Is(err, gomail.ErrNoSupportedAuthDiscovered) || errors.Is(err, smtp.ErrUnencrypted)
}

// pool keeps up to max idle sessions, most recently used first; a session
// idle longer than idleTimeout is closed instead of reused.
type pool struct {
	mu          sync.Mutex
	idle        []*conn
	max         int
	idleTimeout time.Duration
	closed      bool
}

func newPool(maxIdle int, idleTimeout time.Duration) *pool {
	return &pool{max: maxIdle, idleTimeout: idleTimeout}
}

// get returns a kept session or nil.
func (p *pool) get() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.idle) < p.idleTimeout {
			return c
		}
		_ = c.raw.Close() // the server may have dropped it already: no QUIT
	}
	return nil
}

// put keeps c, or says QUIT when the pool is full or closed.
func (p *pool) put(c *conn, timeout time.Duration) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		c.quit(timeout)
		return
	}
	c.idle = time.Now()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// drop closes every kept session (one was found dead: the others likely are).
func (p *pool) drop() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.raw.Close()
	}
}

// close says QUIT on every kept session and keeps none from now on.
func (p *pool) close(timeout time.Duration) {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.quit(timeout)
	}
}
