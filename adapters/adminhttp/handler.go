// Package adminhttp is the admin HTTP API, an inbound adapter: routes,
// bearer-token auth, JSON errors and request limits over the operator use
// cases of application/admin and a small Runtime that the running service
// satisfies. Client calls the same API from the command line. It imports
// the standard library, domain, ports, application and application/admin
// only; the /metrics handler is handed in.
//
//	GET    /api/openapi.json                    this API's OpenAPI 3.1 document
//	GET    /healthz                             liveness
//	GET    /readyz                              dependencies reachable, readers alive (503 otherwise)
//	GET    /metrics                             Prometheus (with http.metrics_token_env, behind that token)
//	GET    /api/observers/status                the running process's progress
//	GET    /api/observers/state                 persisted state (as `status --json`)
//	POST   /api/observers/replay                {"since": "2h", "reader": ""} (as `replay --json`)
//	POST   /api/observers/reload                re-read the observers
//	POST   /api/observers/events                JSON lines (memory topology)
//	GET    /api/observers/dlq                   ?observer=&limit=&after=
//	GET    /api/observers/dlq/stats
//	GET    /api/observers/dlq/{id}
//	POST   /api/observers/dlq/{id}/retry
//	POST   /api/observers/dlq/retry-all         ?observer=
//	DELETE /api/observers/dlq/{id}
//	GET    /api/observers/checkpoints
//	PUT    /api/observers/checkpoints/{name}    {"txid": N, "seq": N}
//	GET    /api/observers/endpoints             endpoint health: circuits, limits, parked retries
//	GET    /api/observers/deliveries            ?event=&observer=&endpoint=&status=&since=&until=&limit=&before=
//	POST   /api/observers/events/{id}/resend    {"observer": "", "action": ""} (both optional)
//	GET    /debug/pprof/...                     profiles, with http.pprof = true only
//
// Everything under /api/observers and /debug/pprof needs "Authorization: Bearer <token>";
// without a configured token it answers 403. Errors are JSON
// {"error": "..."}: 400 bad input, 401 no or wrong token, 404 unknown id or
// name, 409 conflicts (an item that cannot be retried, a checkpoint whose
// reader is running), 503 when a store is unreachable.
//
// openapi.json is the contract: every route registered here is in it, and
// every answer of the handler tests validates against its schema (see
// contract_test.go). JSON keys are snake_case.
package adminhttp

import (
	"context"
	"crypto/subtle"
	_ "embed" // the OpenAPI document
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// Request body limits.
const (
	maxEventsBody = 16 << 20 // POST /events: JSON lines
	maxSmallBody  = 1 << 16  // every other body
)

// ErrNoEventInput is what Runtime.PostEvents returns in a topology that
// takes no posted events (all but memory).
var ErrNoEventInput = errors.New("this topology takes no posted events")

// Runtime is what only the running process knows.
type Runtime interface {
	// Ready reports whether the dependencies answer; detail says what
	// failed.
	Ready(ctx context.Context) (ok bool, detail map[string]string)
	// Status is the process's live progress.
	Status() admin.LiveStatus
	// Reload re-reads the observers; on error the running ones stay.
	Reload() error
	// PostEvents appends JSON-lines events to the process's source and
	// says what it did (a line that is not an event is refused and
	// reported; the others go on), or ErrNoEventInput. With an error, the
	// result says what was appended before it.
	PostEvents(ctx context.Context, body io.Reader) (PostedEvents, error)
}

// PostedEvents is what POST /api/observers/events did.
type PostedEvents struct {
	Accepted int `json:"accepted"` // events appended
	// Invalid counts the lines that were not events: refused, not
	// stored.
	Invalid      int           `json:"invalid"`
	InvalidLines []InvalidLine `json:"invalid_lines,omitempty"` // the first 20
}

// InvalidLine is a posted line that was not an event: its number (from
// 1) and why.
type InvalidLine struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// Config is what the API serves.
type Config struct {
	// Token is the bearer token; "" closes /api/observers (403).
	Token string
	// TokenEnv names where the token comes from, for the warning logged
	// when it is missing.
	TokenEnv string
	Runtime  Runtime
	State    *admin.State
	// DeadLetters is nil in a process that keeps no dead letters (a
	// multi-database bridge): the dlq routes then do not exist.
	DeadLetters *admin.DeadLetters
	Metrics     http.Handler
	// MetricsToken, when set, is the bearer token /metrics requires
	// (http.metrics_token_env: 401 without it); "" leaves /metrics open.
	MetricsToken string
	Logger       *slog.Logger
	// PProf serves net/http/pprof under /debug/pprof/, behind the token
	// (http.pprof; off by default).
	PProf bool
	// Endpoints reports endpoint health (nil: the route does not exist).
	Endpoints *admin.Endpoints
	// Deliveries lists the delivery log (nil: the route does not exist).
	Deliveries *admin.Deliveries
	// Resend re-runs an event's actions (nil: the route does not exist).
	Resend *admin.Resend
	// Now is the clock for relative replay times (default time.Now).
	Now func() time.Time
}

// OpenAPI is the API's OpenAPI 3.1 document, served at /api/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

type server struct{ Config }

// Handler serves the admin API.
type Handler struct {
	mux    *http.ServeMux
	routes *[]string
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Routes lists the patterns registered, in registration order ("GET
// /readyz"; a pattern without a method mounts a handler of its own).
func (h *Handler) Routes() []string { return append([]string(nil), *h.routes...) }

// router is a ServeMux that remembers every pattern registered on it, so
// that the contract test enumerates the routes from the registrations.
// With strict (the API's), a route not in queryRoutes refuses any query
// parameter (400, naming it) rather than ignore it: a resend with
// ?observer= would otherwise resend every observer's actions.
type router struct {
	*http.ServeMux
	routes *[]string
	strict bool
}

// queryRoutes are the API routes that take query parameters; each checks
// its own (onlyParams).
var queryRoutes = []string{"GET /api/observers/dlq", "POST /api/observers/dlq/retry-all", "GET /api/observers/deliveries"}

func (r router) Handle(pattern string, h http.Handler) {
	*r.routes = append(*r.routes, pattern)
	r.ServeMux.Handle(pattern, h)
}

func (r router) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	*r.routes = append(*r.routes, pattern)
	if r.strict && !slices.Contains(queryRoutes, pattern) {
		next := h
		h = func(w http.ResponseWriter, req *http.Request) {
			if err := onlyParams(req); err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
			next(w, req)
		}
	}
	r.ServeMux.HandleFunc(pattern, h)
}

// NewHandler returns the API's handler.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Runtime == nil || cfg.State == nil || cfg.Metrics == nil || cfg.Logger == nil {
		return nil, errors.New("adminhttp: runtime, state, metrics and logger are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &server{cfg}
	routes := new([]string)
	mux := router{http.NewServeMux(), routes, false}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.ready)
	metrics := cfg.Metrics
	if cfg.MetricsToken != "" {
		metrics = bearer(cfg.MetricsToken, metrics)
	}
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /api/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(OpenAPI)
	})

	api := router{http.NewServeMux(), routes, true}
	api.HandleFunc("GET /api/observers/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Runtime.Status())
	})
	api.HandleFunc("POST /api/observers/reload", s.reload)
	api.HandleFunc("POST /api/observers/events", s.postEvents)
	api.HandleFunc("GET /api/observers/state", s.state)
	api.HandleFunc("POST /api/observers/replay", s.replay)
	if cfg.DeadLetters != nil {
		s.deadLetterRoutes(api)
	}
	if cfg.State.Stores.Primary != nil {
		api.HandleFunc("GET /api/observers/checkpoints", s.checkpoints)
		api.HandleFunc("PUT /api/observers/checkpoints/{name}", s.putCheckpoint)
	}
	s.durableRoutes(api)
	mux.Handle("/api/observers/", s.requireToken(api))
	if cfg.PProf {
		// Go's own profiles: registered on the bare mux, outside the
		// recorded routes, because they are not part of the API contract
		// (openapi.json) but net/http/pprof's.
		mux.ServeMux.Handle("/debug/pprof/", s.requireToken(pprofHandler()))
	}
	if s.Token == "" {
		s.Logger.Warn("admin API disabled: set the environment variable named by http.admin_token_env",
			slog.String("http.admin_token_env", s.TokenEnv))
	}
	return &Handler{mux: mux.ServeMux, routes: routes}, nil
}

// pprofHandler serves net/http/pprof's profiles under /debug/pprof/.
func pprofHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /debug/pprof/", pprof.Index)
	m.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	m.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return m
}

// requireToken guards a handler with the bearer token; without a token
// it is closed (403).
func (s *server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Token == "" {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "admin API disabled: no token configured"})
			return
		}
		bearer(s.Token, next).ServeHTTP(w, r)
	})
}

// bearer guards next with token (not empty): a request without
// "Authorization: Bearer <token>" gets 401.
func bearer(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *server) ready(w http.ResponseWriter, r *http.Request) {
	ok, detail := s.Runtime.Ready(r.Context())
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, detail)
}

func (s *server) reload(w http.ResponseWriter, _ *http.Request) {
	if err := s.Runtime.Reload(); err != nil {
		code := http.StatusUnprocessableEntity
		if errors.Is(err, admin.ErrNothingToReload) {
			code = http.StatusConflict
		}
		writeError(w, code, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"observers": s.Runtime.Status().Observers})
}

func (s *server) postEvents(w http.ResponseWriter, r *http.Request) {
	res, err := s.Runtime.PostEvents(r.Context(), http.MaxBytesReader(w, r.Body, maxEventsBody))
	failed := func(code int, msg string) {
		body := map[string]any{"error": msg, "accepted": res.Accepted, "invalid": res.Invalid}
		if len(res.InvalidLines) > 0 {
			body["invalid_lines"] = res.InvalidLines
		}
		writeJSON(w, code, body)
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		failed(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body over %d MiB: the lines before the one it cut were taken (accepted, invalid); send the rest in another request", maxEventsBody>>20))
	case errors.Is(err, ErrNoEventInput):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, ports.ErrUnavailable): // the log is full
		failed(http.StatusServiceUnavailable, err.Error())
	case err != nil:
		failed(http.StatusBadRequest, err.Error())
	case res.Accepted == 0 && res.Invalid > 0: // not JSON lines at all (a wrong file, pretty-printed JSON)
		failed(http.StatusBadRequest, fmt.Sprintf("no line is an event (%d refused)", res.Invalid))
	default:
		writeJSON(w, http.StatusAccepted, res)
	}
}

func (s *server) state(w http.ResponseWriter, r *http.Request) {
	rep, err := s.State.Status(r.Context())
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// replayRequest is the body of POST /replay.
type replayRequest struct {
	Since  string `json:"since"`
	Reader string `json:"reader"`
}

func (s *server) replay(w http.ResponseWriter, r *http.Request) {
	var body replayRequest
	if err := decodeBody(w, r, &body); err != nil {
		writeBodyError(w, err, `{"since": "2h", "reader": ""}`)
		return
	}
	since, err := admin.ParseSince(body.Since, s.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("since %w", err))
		return
	}
	lr := startLongRunning(w, s.Now)
	res, err := s.State.Replay(r.Context(), body.Reader, since)
	lr.answer()
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *server) deadLetterRoutes(api router) {
	d := s.DeadLetters
	api.HandleFunc("GET /api/observers/dlq", func(w http.ResponseWriter, r *http.Request) {
		q, err := dlqQuery(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		items, err := d.List(r.Context(), q)
		if err != nil {
			writeStoreError(w, err)
			return
		}
		for i := range items {
			items[i] = items[i].Brief()
		}
		resp := map[string]any{"items": items}
		if next, ok := admin.NextAfter(items, q.Limit); ok {
			resp["next_after"] = next
		}
		writeJSON(w, http.StatusOK, resp)
	})
	api.HandleFunc("GET /api/observers/dlq/stats", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Stats(r.Context())
		if err != nil {
			writeStoreError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	api.HandleFunc("GET /api/observers/dlq/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		v, err := d.Get(r.Context(), id)
		if err != nil {
			writeStoreError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	api.HandleFunc("DELETE /api/observers/dlq/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		if err := d.Remove(r.Context(), id); err != nil {
			writeStoreError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int64{"removed": id})
	})
	api.HandleFunc("POST /api/observers/dlq/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		lr := startLongRunning(w, s.Now)
		res, err := d.Retry(r.Context(), id)
		lr.answer()
		if err != nil {
			writeStoreError(w, err)
			return
		}
		if res.Status == admin.RetryNotRetryable {
			writeJSON(w, http.StatusConflict, map[string]any{"error": res.Error, "result": res})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	api.HandleFunc("POST /api/observers/dlq/retry-all", func(w http.ResponseWriter, r *http.Request) {
		if err := onlyParams(r, "observer"); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		lr := startLongRunning(w, s.Now)
		rep, err := d.RetryAll(r.Context(), r.URL.Query().Get("observer"))
		lr.answer()
		if err != nil {
			// What was retried before the stop is done (retried items
			// that succeeded are gone): the answer says what.
			writeJSON(w, storeErrorCode(err), map[string]any{"error": err.Error(), "report": rep})
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
}

func dlqQuery(r *http.Request) (admin.DeadLetterQuery, error) {
	v := r.URL.Query()
	q := admin.DeadLetterQuery{Observer: v.Get("observer")}
	if err := onlyParams(r, "observer", "limit", "after"); err != nil {
		return q, err
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > admin.MaxListLimit {
			return q, fmt.Errorf("limit %q: want an integer from 1 to %d", s, admin.MaxListLimit)
		}
		q.Limit = n
	}
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, fmt.Errorf("after %q: want a dead-letter id", s)
		}
		q.AfterID = n
	}
	return q, nil
}

func (s *server) checkpoints(w http.ResponseWriter, r *http.Request) {
	views, err := s.State.Checkpoints(r.Context(), s.Runtime.Status().Readers)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"checkpoints": views})
}

// putCheckpoint moves a checkpoint with admin.State.SetCheckpoint: it
// takes the reader's lease for the move, so it refuses with 409 while any
// reader holds that lease, this process's own included (a running reader
// keeps its position in memory and its next save would overwrite the
// moved checkpoint). Stop the readers of that name first, or use replay.
func (s *server) putCheckpoint(w http.ResponseWriter, r *http.Request) {
	var body struct {
		TxID *uint64 `json:"txid"`
		Seq  *int64  `json:"seq"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		writeBodyError(w, err, `{"txid": N, "seq": N}`)
		return
	}
	if body.TxID == nil || body.Seq == nil || *body.Seq < 0 {
		writeError(w, http.StatusBadRequest, errors.New("body: txid and seq are required, seq not negative"))
		return
	}
	if *body.TxID > math.MaxInt64 { // PostgreSQL's xid8 is a signed 64-bit value
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: txid %d is over %d", *body.TxID, int64(math.MaxInt64)))
		return
	}
	name := r.PathValue("name")
	pos := ports.Position{TxID: *body.TxID, Seq: *body.Seq}
	res, err := s.State.SetCheckpoint(r.Context(), name, pos)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	resp := map[string]any{"name": name, "position": pos}
	if res.OldStored {
		resp["previous"] = res.Old
	}
	writeJSON(w, http.StatusOK, resp)
}
