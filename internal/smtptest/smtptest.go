// Package smtptest is an in-process SMTP server on 127.0.0.1 for tests
// (github.com/emersion/go-smtp): STARTTLS or implicit TLS with a
// self-signed certificate, AUTH PLAIN, scripted replies per command, and
// the messages it accepted. The protocol goes over TCP, as with a real
// server.
//
// Only tests import it. It is the one place besides go.mod that knows
// go-smtp, which the service itself never uses (it sends with go-mail).
package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message as the server accepted it.
type Message struct {
	From     string   // MAIL FROM
	Rcpts    []string // RCPT TO, in order
	Data     []byte   // the message as sent after DATA
	HELO     string   // the EHLO/HELO name
	TLS      bool     // the session was encrypted
	AuthUser string   // the user that authenticated, or ""
}

// Config shapes a server.
type Config struct {
	StartTLS bool   // offer STARTTLS with the test certificate
	Implicit bool   // speak TLS from the first byte
	Username string // when set, AUTH PLAIN (over TLS only) is required
	Password string
	// Reply, when set, may answer a command with an error (see Reply): cmd
	// is "MAIL" (arg the sender), "RCPT" (arg the recipient) or "DATA"
	// (arg "", asked once the message was read). Called concurrently by
	// different sessions.
	Reply func(cmd, arg string) error
	// ReadTimeout closes connections idle this long (server side);
	// default a minute.
	ReadTimeout time.Duration
	// Discard drops accepted messages instead of keeping them (benchmarks).
	Discard bool
}

// maxKept bounds the accepted messages a server keeps for Next; a session
// whose message does not fit waits until the test takes one.
const maxKept = 256

// Server is a running test server.
type Server struct {
	Host string         // "127.0.0.1"
	Port int            // the port it listens on
	Addr string         // host:port
	CA   *x509.CertPool // trusts the server's certificate

	msgs   chan Message
	mu     sync.Mutex
	all    []Message // every accepted message, for Messages
	conns  atomic.Int64
	closed atomic.Int64
	cfg    Config
}

// Start starts a server that stops when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := &Server{msgs: make(chan Message, maxKept), cfg: cfg}
	cert, pool := certificate(t)
	s.CA = pool
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = time.Minute
	if cfg.ReadTimeout > 0 {
		srv.ReadTimeout = cfg.ReadTimeout
	}
	srv.WriteTimeout = time.Minute
	srv.MaxRecipients = 200
	srv.ErrorLog = discardLogger{}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.StartTLS {
		srv.TLSConfig = tlsCfg
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = &countingListener{Listener: ln, accepted: &s.conns, closed: &s.closed}
	if cfg.Implicit {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.Addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(s.Addr)
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = ln.Close() // Close misses a listener Serve has not registered yet
		<-done
	})
	return s
}

// ClientTLS is a client TLS configuration that trusts the server.
func (s *Server) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: s.CA, MinVersion: tls.VersionTLS12}
}

// Next returns the next message the server accepted, failing the test
// when none comes within 10 seconds.
func (s *Server) Next(t testing.TB) Message {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("the server received no message")
		return Message{}
	}
}

// None fails the test when a message was accepted and not taken yet.
func (s *Server) None(t testing.TB) {
	t.Helper()
	select {
	case m := <-s.msgs:
		t.Errorf("the server accepted a message: from %s to %v", m.From, m.Rcpts)
	default:
	}
}

// Messages returns every message accepted so far, in order, whether or
// not Next took it.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.all...)
}

// Conns is the number of TCP connections accepted so far.
func (s *Server) Conns() int64 { return s.conns.Load() }

// Closed is the number of those connections closed so far.
func (s *Server) Closed() int64 { return s.closed.Load() }

// Reply is an SMTP error reply with code (e.g. 451, 550) for
// Config.Reply.
func Reply(code int, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: msg}
}

type session struct {
	srv   *Server
	conn  *smtp.Conn
	user  string
	from  string
	rcpts []string
}

var _ smtp.AuthSession = (*session)(nil)

func (s *session) AuthMechanisms() []string {
	if s.srv.cfg.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != s.srv.cfg.Username || password != s.srv.cfg.Password {
			return smtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) reply(cmd, arg string) error {
	if s.srv.cfg.Reply == nil {
		return nil
	}
	return s.srv.cfg.Reply(cmd, arg)
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.srv.cfg.Username != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	if err := s.reply("MAIL", from); err != nil {
		return err
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := s.reply("RCPT", to); err != nil {
		return err
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := s.reply("DATA", ""); err != nil {
		return err
	}
	if s.srv.cfg.Discard {
		return nil
	}
	_, isTLS := s.conn.TLSConnectionState()
	m := Message{From: s.from, Rcpts: s.rcpts, Data: data, HELO: s.conn.Hostname(), TLS: isTLS, AuthUser: s.user}
	s.srv.mu.Lock()
	s.srv.all = append(s.srv.all, m)
	s.srv.mu.Unlock()
	s.srv.msgs <- m
	return nil
}

func (s *session) Reset() { s.from, s.rcpts = "", nil }

func (s *session) Logout() error { return nil }

// countingListener counts the connections it accepts and their closing.
type countingListener struct {
	net.Listener
	accepted, closed *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &countedConn{Conn: c, closed: l.closed}, nil
}

type countedConn struct {
	net.Conn
	once   sync.Once
	closed *atomic.Int64
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.closed.Add(1) })
	return c.Conn.Close()
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

var (
	certOnce sync.Once
	certPair tls.Certificate
	certPool *x509.CertPool
	certErr  error
)

// certificate is a self-signed certificate for 127.0.0.1, ::1 and
// localhost, made once per test binary.
func certificate(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			certErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "fraiseql-observer test SMTP"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			DNSNames:              []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			certErr = err
			return
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			certErr = err
			return
		}
		certPair = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
		certPool = x509.NewCertPool()
		certPool.AddCert(leaf)
	})
	if certErr != nil {
		t.Fatal(errors.Join(errors.New("test certificate"), certErr))
	}
	return certPair, certPool
}
