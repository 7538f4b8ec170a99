package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures an in-process JetStream server.
type EmbeddedConfig struct {
	// StoreDir holds JetStream's files (required).
	StoreDir string
	// Port: -1 = no TCP listener, in-process connections only; 0 = a
	// random port; otherwise that port. The listener binds 127.0.0.1.
	Port int
	// ReadyTimeout bounds the wait for the server to accept connections
	// (default 10s).
	ReadyTimeout time.Duration
}

// Embedded is a JetStream server running inside this process (nats.embedded
// = true), for local use.
type Embedded struct {
	srv     *server.Server
	listens bool
}

// StartEmbedded starts a nats-server with JetStream storing in
// cfg.StoreDir and waits until it accepts connections. Its log goes to
// logger.
func StartEmbedded(cfg EmbeddedConfig, logger *slog.Logger) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("nats: embedded server: store dir is required")
	}
	if logger == nil {
		return nil, errors.New("nats: embedded server: logger is required")
	}
	if cfg.Port < -1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("nats: embedded server: port %d out of range", cfg.Port)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	opts := &server.Options{
		ServerName: "fraiseql-observer-embedded",
		Host:       "127.0.0.1",
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
	}
	switch cfg.Port {
	case -1:
		opts.DontListen = true
	case 0:
		opts.Port = server.RANDOM_PORT
	default:
		opts.Port = cfg.Port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{logger.With(slog.String("component", "nats-server"))}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("nats: embedded server: not ready after %s", cfg.ReadyTimeout)
	}
	return &Embedded{srv: srv, listens: !opts.DontListen}, nil
}

// ClientURL is the nats:// address of the TCP listener, or "" when the
// server only accepts in-process connections (Port -1).
func (e *Embedded) ClientURL() string {
	if !e.listens {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server and waits until it is down. Safe to call more
// than once.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger routes nats-server's log to slog.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
