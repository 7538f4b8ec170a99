package email_test

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

// received is one message as the test server saw it.
type received struct {
	From     string
	Rcpts    []string
	Data     []byte
	HELO     string
	TLS      bool
	AuthUser string
}

// serverConfig shapes a test SMTP server.
type serverConfig struct {
	StartTLS bool   // offer STARTTLS with the test certificate
	Implicit bool   // speak TLS from the first byte
	Username string // when set, AUTH PLAIN (over TLS only) is required
	Password string
	// Reply, when set, may answer a command with an error: cmd is "MAIL",
	// "RCPT" (arg the recipient) or "DATA".
	Reply func(cmd, arg string) error
	// ReadTimeout closes connections idle this long (server side).
	ReadTimeout time.Duration
	// Discard drops accepted messages instead of queueing them (benchmarks).
	Discard bool
}

// testServer is an in-process SMTP server (emersion/go-smtp) on 127.0.0.1.
type testServer struct {
	Host string
	Port int
	Addr string
	CA   *x509.CertPool // trusts the server's certificate

	msgs   chan received
	conns  atomic.Int64 // TCP connections accepted
	closed atomic.Int64 // TCP connections the server closed
	cfg    serverConfig
}

// startServer starts a server that stops when the test ends.
func startServer(t testing.TB, cfg serverConfig) *testServer {
	t.Helper()
	ts := &testServer{msgs: make(chan received, 256), cfg: cfg}
	cert, pool := testCertificate(t)
	ts.CA = pool
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{ts: ts, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = cmpDuration(cfg.ReadTimeout, time.Minute)
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
	ln = &countingListener{Listener: ln, accepted: &ts.conns, closed: &ts.closed}
	if cfg.Implicit {
		ln = tls.NewListener(ln, tlsCfg)
	}
	ts.Addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(ts.Addr)
	ts.Host = host
	ts.Port, _ = strconv.Atoi(port)
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
	return ts
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// next returns the next message the server accepted.
func (ts *testServer) next(t testing.TB) received {
	t.Helper()
	select {
	case m := <-ts.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("the server received no message")
		return received{}
	}
}

// none checks that no message was accepted.
func (ts *testServer) none(t testing.TB) {
	t.Helper()
	select {
	case m := <-ts.msgs:
		t.Errorf("the server accepted a message: from %s to %v", m.From, m.Rcpts)
	default:
	}
}

type session struct {
	ts    *testServer
	conn  *smtp.Conn
	user  string
	from  string
	rcpts []string
}

var _ smtp.AuthSession = (*session)(nil)

func (s *session) AuthMechanisms() []string {
	if s.ts.cfg.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != s.ts.cfg.Username || password != s.ts.cfg.Password {
			return smtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) reply(cmd, arg string) error {
	if s.ts.cfg.Reply == nil {
		return nil
	}
	return s.ts.cfg.Reply(cmd, arg)
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.ts.cfg.Username != "" && s.user == "" {
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
	if s.ts.cfg.Discard {
		return nil
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.ts.msgs <- received{From: s.from, Rcpts: s.rcpts, Data: data, HELO: s.conn.Hostname(), TLS: isTLS, AuthUser: s.user}
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

// smtpError is an SMTP reply for Reply.
func smtpError(code int, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: msg}
}

var (
	certOnce sync.Once
	certPair tls.Certificate
	certPool *x509.CertPool
	certErr  error
)

// testCertificate is a self-signed certificate for 127.0.0.1 and
// localhost, made once per test binary.
func testCertificate(t testing.TB) (tls.Certificate, *x509.CertPool) {
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
