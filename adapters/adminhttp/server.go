package adminhttp

import (
	"cmp"
	"net/http"
	"time"
)

// ServerConfig bounds the admin server's connections, so that slow or idle
// clients cannot hold them (and their goroutines) for ever.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading a request's headers (default 5s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included
	// (default 30s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing the answer, from the end of the request's
	// headers (default 60s). The dead-letter retry routes run actions for as
	// long as those take; their write deadline starts when they answer.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that has been idle this
	// long (default 60s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request headers (default 64 KiB).
	MaxHeaderBytes int
}

// Defaults of ServerConfig.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
)

// NewServer returns an http.Server for h with every timeout of cfg set
// (defaults for the zero fields).
func NewServer(h http.Handler, cfg ServerConfig) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cmp.Or(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       cmp.Or(cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    cmp.Or(cfg.MaxHeaderBytes, 1<<16),
	}
}

// longRunning lifts the write deadline of a route that runs actions (a
// dead-letter retry) while it works; answer sets it again before writing.
type longRunning struct {
	rc  *http.ResponseController
	now func() time.Time
}

func startLongRunning(w http.ResponseWriter, now func() time.Time) longRunning {
	l := longRunning{rc: http.NewResponseController(w), now: now}
	_ = l.rc.SetWriteDeadline(time.Time{}) // not supported by every writer (tests): then the server's deadline stays
	return l
}

// answer gives the answer the usual write timeout from now.
func (l longRunning) answer() {
	_ = l.rc.SetWriteDeadline(l.now().Add(DefaultWriteTimeout))
}
