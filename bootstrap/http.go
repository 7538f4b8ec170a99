package bootstrap

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// listenHTTP opens the admin listener (http.listen; "" disables it).
func (a *App) listenHTTP() error {
	if a.cfg.HTTP.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
	if err != nil {
		return &config.ConfigError{Key: "http.listen", Msg: err.Error()}
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
	a.adminRoutes(api)
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
	st := Status{Topology: string(a.cfg.Topology), Role: string(a.cfg.Role), Holder: a.holder, Readers: map[string]application.ReaderStatus{}}
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

// adminRoutes registers the dead-letter and checkpoint endpoints:
//
//	GET    /api/observers/dlq                  ?observer=&limit=&after=
//	GET    /api/observers/dlq/stats
//	GET    /api/observers/dlq/{id}
//	POST   /api/observers/dlq/{id}/retry
//	POST   /api/observers/dlq/retry-all        ?observer=
//	DELETE /api/observers/dlq/{id}
//	GET    /api/observers/checkpoints
//	PUT    /api/observers/checkpoints/{name}   {"txid": N, "seq": N}
//
// Errors are JSON {"error": "..."}: 400 bad input, 404 unknown id or
// name, 409 conflicts (an item that cannot be retried, a checkpoint whose
// reader is running), 503 when the store is unreachable.
func (a *App) adminRoutes(api *http.ServeMux) {
	if a.deadLetters != nil {
		d := deadLetterAdmin{store: a.deadLetters, retrier: a.liveRetrier}
		api.HandleFunc("GET /api/observers/dlq", func(w http.ResponseWriter, r *http.Request) {
			q, err := dlqQuery(r)
			if err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
			items, err := d.list(r.Context(), q)
			if err != nil {
				writeStoreError(w, err)
				return
			}
			for i := range items {
				items[i].Event, items[i].Raw, items[i].RawEncoding = nil, "", ""
			}
			resp := map[string]any{"items": items}
			if len(items) > 0 && len(items) == cmp.Or(q.Limit, 100) {
				resp["next_after"] = items[len(items)-1].ID
			}
			writeJSON(w, http.StatusOK, resp)
		})
		api.HandleFunc("GET /api/observers/dlq/stats", func(w http.ResponseWriter, r *http.Request) {
			st, err := d.stats(r.Context())
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
			v, err := d.get(r.Context(), id)
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
			if err := d.remove(r.Context(), id); err != nil {
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
			res, err := d.retry(r.Context(), id)
			if err != nil {
				writeStoreError(w, err)
				return
			}
			if res.Status == RetryNotRetryable {
				writeJSON(w, http.StatusConflict, map[string]any{"error": res.Error, "result": res})
				return
			}
			writeJSON(w, http.StatusOK, res)
		})
		api.HandleFunc("POST /api/observers/dlq/retry-all", func(w http.ResponseWriter, r *http.Request) {
			rep, err := d.retryAll(r.Context(), r.URL.Query().Get("observer"))
			if err != nil {
				writeStoreError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, rep)
		})
	}
	if a.checkpoints != nil {
		api.HandleFunc("GET /api/observers/checkpoints", a.handleCheckpoints)
		api.HandleFunc("PUT /api/observers/checkpoints/{name}", a.handlePutCheckpoint)
	}
}

// errNoActions: this process runs no actions, so it cannot retry.
var errNoActions = errors.New("this process runs no actions (bridge role): retry from a worker or with the dlq command")

// liveRetrier retries with the running observers (as last reloaded) and
// the executors of this process.
func (a *App) liveRetrier(context.Context) (*application.DeadLetterRetrier, error) {
	if a.dispatcher == nil || a.processor == nil {
		return nil, errNoActions
	}
	return &application.DeadLetterRetrier{
		Store: a.deadLetters, Executor: a.dispatcher, Matcher: a.processor.Matcher, Now: time.Now,
	}, nil
}

func dlqQuery(r *http.Request) (DeadLetterQuery, error) {
	v := r.URL.Query()
	q := DeadLetterQuery{Observer: v.Get("observer")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return q, fmt.Errorf("limit %q: want an integer from 1 to 1000", s)
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

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("dead-letter id %q: want a positive integer", s))
		return 0, false
	}
	return id, true
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// writeStoreError maps an error to its status: 404 unknown, 409 conflict,
// 503 store or process unable to serve, 500 otherwise.
func writeStoreError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ports.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrReaderRunning), errors.Is(err, errCheckpointElsewhere):
		code = http.StatusConflict
	case errors.Is(err, ports.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, errNoActions):
		code = http.StatusServiceUnavailable
	}
	writeError(w, code, err)
}

// CheckpointView is a checkpoint as the admin API shows it.
type CheckpointView struct {
	Name      string          `json:"name"`
	Stored    bool            `json:"stored"` // false: the reader starts from the beginning
	Position  *ports.Position `json:"position,omitempty"`
	UpdatedAt *time.Time      `json:"updated_at,omitempty"`
	// Reading is true when a reader of this process is active under this
	// name; ReadAt and Saved are its live positions.
	Reading bool            `json:"reading"`
	ReadAt  *ports.Position `json:"read_at,omitempty"`
	Saved   *ports.Position `json:"saved,omitempty"`
	// Store says where the checkpoint is kept when it is not this
	// process's state store (multi-database bridges: the source database).
	Store string `json:"store,omitempty"`
}

// errCheckpointElsewhere: a multi-database bridge keeps its checkpoint in
// its source database.
var errCheckpointElsewhere = errors.New("checkpoint is kept in a source database")

// localReaders maps the checkpoint names of this process's readers to
// them, and names the bridges whose checkpoints live in source databases.
func (a *App) localReaders() (readers map[string]*application.Reader, elsewhere map[string]string) {
	readers, elsewhere = map[string]*application.Reader{}, map[string]string{}
	if a.reader != nil {
		readers[a.cfg.Reader.Name] = a.reader
	}
	for _, b := range a.bridges {
		readers["bridge:"+b.name] = b.reader
		if a.cfg.Topology == config.TopologyMultiDatabase {
			elsewhere["bridge:"+b.name] = "source database " + b.name
		}
	}
	return readers, elsewhere
}

func (a *App) handleCheckpoints(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	readers, elsewhere := a.localReaders()
	views := map[string]*CheckpointView{}
	if pc, ok := a.checkpoints.(*postgres.Checkpoints); ok {
		recs, err := pc.List(ctx)
		if err != nil {
			writeStoreError(w, err)
			return
		}
		for _, rec := range recs {
			pos, at := rec.Position, rec.UpdatedAt
			views[rec.Name] = &CheckpointView{Name: rec.Name, Stored: true, Position: &pos, UpdatedAt: &at}
		}
	}
	for name, rd := range readers {
		v := views[name]
		if v == nil {
			v = &CheckpointView{Name: name}
			views[name] = v
			if store := elsewhere[name]; store != "" {
				v.Store = store
			} else if pos, ok, err := a.checkpoints.Load(ctx, name); err != nil {
				writeStoreError(w, err)
				return
			} else if ok {
				v.Stored, v.Position = true, &pos
			}
		}
		if st := rd.Status(); st.Running {
			readAt, saved := st.ReadAt, st.Saved
			v.Reading, v.ReadAt, v.Saved = true, &readAt, &saved
		}
	}
	out := make([]*CheckpointView, 0, len(views))
	for _, name := range slices.Sorted(maps.Keys(views)) {
		out = append(out, views[name])
	}
	writeJSON(w, http.StatusOK, map[string]any{"checkpoints": out})
}

// handlePutCheckpoint moves a checkpoint. It takes the reader's lease for
// the move, so it refuses with 409 while any reader holds that lease,
// this process's own included: a running reader keeps its position in
// memory and its next save would overwrite the moved checkpoint. Stop the
// readers of that name first (or use `fraiseql-observer replay`).
func (a *App) handlePutCheckpoint(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	var body struct {
		TxID *uint64 `json:"txid"`
		Seq  *int64  `json:"seq"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: want {\"txid\": N, \"seq\": N}: %w", err))
		return
	}
	if body.TxID == nil || body.Seq == nil || *body.Seq < 0 {
		writeError(w, http.StatusBadRequest, errors.New("body: txid and seq are required, seq not negative"))
		return
	}
	pos := ports.Position{TxID: *body.TxID, Seq: *body.Seq}
	readers, elsewhere := a.localReaders()
	if store := elsewhere[name]; store != "" {
		writeStoreError(w, fmt.Errorf("%w: %q is kept in the %s; stop its bridge and use `fraiseql-observer replay --reader %s`", errCheckpointElsewhere, name, store, name))
		return
	}
	old, stored, err := a.checkpoints.Load(ctx, name)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	if _, known := readers[name]; !known && !stored {
		writeStoreError(w, fmt.Errorf("checkpoint %q: %w (neither stored nor read by this process)", name, ports.ErrNotFound))
		return
	}
	lease := leaseFor(name)
	holder := a.holder + "/admin-api"
	held, err := a.lease.Acquire(ctx, lease, holder, a.cfg.Reader.LeaseTTL)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	if !held {
		msg := fmt.Errorf("%w: lease %q is held", ErrReaderRunning, lease)
		if pl, ok := a.lease.(*postgres.Lease); ok {
			if st, err := pl.State(ctx, lease); err == nil && st.Holder != "" {
				msg = fmt.Errorf("%w: %s holds lease %q until %s", ErrReaderRunning, st.Holder, lease, st.ExpiresAt.UTC().Format(time.RFC3339))
			}
		}
		writeStoreError(w, fmt.Errorf("%w; stop that reader first (its next save would overwrite the moved checkpoint)", msg))
		return
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = a.lease.Release(rctx, lease, holder)
	}()
	if err := a.checkpoints.Save(ctx, name, pos); err != nil {
		writeStoreError(w, err)
		return
	}
	a.logger.Info("checkpoint moved through the admin API", slog.String("checkpoint", name), slog.String("from", old.String()), slog.String("to", pos.String()))
	resp := map[string]any{"name": name, "position": pos}
	if stored {
		resp["previous"] = old
	}
	writeJSON(w, http.StatusOK, resp)
}
