package bootstrap

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/fraiseql/fraiseql-observer/application"
)

// listenHTTP opens the admin listener (http.listen; "" disables it).
func (a *App) listenHTTP() error {
	if a.cfg.HTTP.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
	if err != nil {
		return &ConfigError{Key: "http.listen", Msg: err.Error()}
	}
	a.httpLn = ln
	a.onClose(func() { _ = ln.Close() })
	a.httpSrv = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 5 * time.Second}
	return nil
}

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.handleReady)
	mux.Handle("GET /metrics", a.metrics.Handler())

	api := http.NewServeMux()
	api.HandleFunc("GET /api/observers/status", a.handleStatus)
	api.HandleFunc("POST /api/observers/reload", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Reload(); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"observers": a.Status().Observers})
	})
	if a.memSource != nil {
		api.HandleFunc("POST /api/observers/events", a.handlePostEvents)
	}
	mux.Handle("/api/observers/", a.requireToken(api))
	return mux
}

// requireToken guards the admin API with the bearer token read from the
// environment variable http.admin_token_env; without a token the API is
// closed.
func (a *App) requireToken(next http.Handler) http.Handler {
	token, _ := a.env(a.cfg.HTTP.AdminTokenEnv)
	if token == "" {
		a.logger.Warn("admin API disabled: set the environment variable named by http.admin_token_env",
			slog.String("http.admin_token_env", a.cfg.HTTP.AdminTokenEnv))
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "admin API disabled: no token configured"})
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Ready reports whether the dependencies answer; detail says what failed.
func (a *App) Ready(ctx context.Context) (bool, map[string]string) {
	detail := map[string]string{}
	ok := true
	if a.db != nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := a.db.Ping(pctx); err != nil {
			ok, detail["database"] = false, err.Error()
		} else {
			detail["database"] = "ok"
		}
		cancel()
	}
	if a.redis != nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := a.redis.Ping(pctx); err != nil {
			// Not fatal: dedup and caching fail open.
			detail["redis"] = "unreachable (failing open): " + err.Error()
		} else {
			detail["redis"] = "ok"
		}
		cancel()
	}
	if a.nats != nil {
		if err := a.nats.Ping(ctx); err != nil {
			ok, detail["nats"] = false, err.Error()
		} else {
			detail["nats"] = "ok"
		}
	}
	readerState := func(key string, r *application.Reader) {
		st := r.Status()
		switch {
		case st.Running && st.LastError != "":
			ok, detail[key] = false, st.LastError
		case st.Running:
			detail[key] = "reading"
		default:
			detail[key] = "standby (another replica holds the lease, or starting)"
		}
	}
	if a.reader != nil {
		readerState("reader", a.reader)
	}
	for _, b := range a.bridges {
		readerState("bridge:"+b.name, b.reader)
	}
	if a.worker != nil {
		detail["worker"] = "consuming"
	}
	return ok, detail
}

func (a *App) handleReady(w http.ResponseWriter, r *http.Request) {
	ok, detail := a.Ready(r.Context())
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, detail)
}

// Status is the service's progress as the status command and API show it.
type Status struct {
	Topology  string                              `json:"topology"`
	Role      string                              `json:"role"`
	Holder    string                              `json:"holder"`
	Readers   map[string]application.ReaderStatus `json:"readers"`
	Bridges   map[string]BridgeCounts             `json:"bridges,omitempty"`
	Observers int                                 `json:"observers"`
}

// BridgeCounts is what one bridge published.
type BridgeCounts struct {
	Published  int64 `json:"published"`
	Duplicates int64 `json:"duplicates"`
}

// Status returns the service's progress.
func (a *App) Status() Status {
	st := Status{Topology: a.cfg.Topology, Role: a.cfg.Role, Holder: a.holder, Readers: map[string]application.ReaderStatus{}}
	if a.reader != nil {
		st.Readers[a.cfg.Reader.Name] = a.reader.Status()
	}
	for _, b := range a.bridges {
		st.Readers["bridge:"+b.name] = b.reader.Status()
		if st.Bridges == nil {
			st.Bridges = map[string]BridgeCounts{}
		}
		p, d := b.bridge.Counts()
		st.Bridges[b.name] = BridgeCounts{Published: p, Duplicates: d}
	}
	if a.processor != nil {
		st.Observers = len(a.processor.Matcher().Observers())
	}
	return st
}

func (a *App) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Status())
}

// handlePostEvents appends JSON-lines events to the memory source.
func (a *App) handlePostEvents(w http.ResponseWriter, r *http.Request) {
	n, err := a.memSource.LoadJSONLines(r.Context(), io.LimitReader(r.Body, 16<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error(), "accepted": n})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"accepted": n})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
