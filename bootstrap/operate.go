package bootstrap

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// ErrNotFound is returned (wrapped) for an unknown dead-letter id or
// checkpoint name.
var ErrNotFound = ports.ErrNotFound

// ErrReaderRunning is returned (wrapped) when a checkpoint cannot be moved
// because a reader holds its lease.
var ErrReaderRunning = errors.New("reader is running")

// ErrNotRetryable is returned (wrapped) by RetryDeadLetter for an item
// that cannot be re-run.
var ErrNotRetryable = application.ErrNotRetryable

// Operator runs the operator commands (status, dlq, replay) against the
// databases a configuration names, without starting readers, workers or
// the admin server. Close it when done.
type Operator struct {
	app   *App // partial composition root: state database, then Redis and executors for retries
	state *stateDB

	retrier *application.DeadLetterRetrier // built on first retry
	sources map[string]*stateDB            // multi-database sources, opened on demand
}

// stateDB is one database holding observer state: checkpoints, leases,
// dead letters, and a change log.
type stateDB struct {
	name    string // "database", or "databases.<name>" for a multi-database source
	url     string
	db      *postgres.DB
	cps     *postgres.Checkpoints
	lease   *postgres.Lease
	dl      *postgres.DeadLetters
	log     *postgres.ChangeLogStats
	readers []readerRef
}

// readerRef names a reader's checkpoint and the lease it runs under.
type readerRef struct {
	checkpoint string
	lease      string
}

// leaseFor is the lease a reader with checkpoint name runs under:
// bridges use their checkpoint name, local readers "reader:<name>".
func leaseFor(checkpoint string) string {
	if strings.HasPrefix(checkpoint, "bridge:") {
		return checkpoint
	}
	return "reader:" + checkpoint
}

// OpenOperator connects to the configuration's state database (bounded
// wait). It does not migrate. The memory topology keeps no state in a
// database and is refused.
func OpenOperator(ctx context.Context, cfg config.Config, opts Options) (_ *Operator, err error) {
	if opts.Logger == nil {
		return nil, errors.New("bootstrap: logger is required")
	}
	if cfg.Topology == config.TopologyMemory {
		return nil, &config.ConfigError{File: cfg.File, Key: "topology", Msg: "the memory topology keeps its state in the running process: use the admin API (/api/observers/...) instead"}
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	a := &App{cfg: cfg, logger: opts.Logger, env: opts.LookupEnv, holder: holderName()}
	o := &Operator{app: a, sources: map[string]*stateDB{}}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	var readers []readerRef
	switch cfg.Topology {
	case config.TopologyPostgresOnly, config.TopologyPostgresRedis:
		readers = []readerRef{{cfg.Reader.Name, leaseFor(cfg.Reader.Name)}}
	case config.TopologyNATSDistributed:
		readers = []readerRef{{"bridge:default", "bridge:default"}}
	}
	if o.state, err = o.openStateDB(ctx, "database", cfg.Database.URL, readers); err != nil {
		return nil, err
	}
	a.db = o.state.db // database actions re-run there, as in the service
	a.deadLetters = o.state.dl
	a.checkpoints = o.state.cps
	a.lease = o.state.lease
	return o, nil
}

// Close releases what the operator opened.
func (o *Operator) Close() { o.app.Close() }

func (o *Operator) openStateDB(ctx context.Context, name, url string, readers []readerRef) (*stateDB, error) {
	dbCfg := o.app.cfg.Database
	dbCfg.URL = url
	cctx, cancel := context.WithTimeout(ctx, max(3*dbCfg.ConnectTimeout, 15*time.Second))
	defer cancel()
	d, err := Connect(cctx, dbCfg, o.app.logger)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	o.app.onClose(d.Close)
	s := &stateDB{name: name, url: postgres.Redact(url), readers: readers, db: d}
	schema := dbCfg.ObserverSchema
	if s.cps, err = postgres.NewCheckpoints(d.Pool, schema); err != nil {
		return nil, err
	}
	if s.lease, err = postgres.NewLease(d.Pool, schema); err != nil {
		return nil, err
	}
	if s.dl, err = postgres.NewDeadLetters(d.Pool, schema); err != nil {
		return nil, err
	}
	if s.log, err = postgres.NewChangeLogStats(d.Pool, dbCfg.ChangeLogTable); err != nil {
		return nil, &config.ConfigError{File: o.app.cfg.File, Key: "database.change_log_table", Msg: err.Error()}
	}
	return s, nil
}

// databases returns the state database followed by the multi-database
// sources (opened on first use).
func (o *Operator) databases(ctx context.Context) ([]*stateDB, error) {
	out := []*stateDB{o.state}
	if o.app.cfg.Topology != config.TopologyMultiDatabase {
		return out, nil
	}
	for i, d := range o.app.cfg.Databases {
		name := "databases." + d.Name
		if s, ok := o.sources[d.Name]; ok {
			out = append(out, s)
			continue
		}
		url := d.URL
		if d.URLEnv != "" {
			v, ok := o.app.env(d.URLEnv)
			if !ok || v == "" {
				return nil, &config.ConfigError{File: o.app.cfg.File, Key: fmt.Sprintf("databases[%d].url_env", i), Msg: "environment variable " + d.URLEnv + " is not set"}
			}
			url = v
		}
		cp := "bridge:" + d.Name
		s, err := o.openStateDB(ctx, name, url, []readerRef{{cp, cp}})
		if err != nil {
			return nil, err
		}
		o.sources[d.Name] = s
		out = append(out, s)
	}
	return out, nil
}

// migrateHint adds "run migrate" to errors caused by missing tables.
func migrateHint(err error) error {
	if err != nil && postgres.IsMissingRelation(err) {
		return fmt.Errorf("%w (has `fraiseql-observer migrate` been run on this database?)", err)
	}
	return err
}

// ---- status ----

// StatusReport is the persisted progress of a configuration, read from
// its databases: no running service is needed.
type StatusReport struct {
	Topology  string           `json:"topology"`
	Databases []DatabaseStatus `json:"databases"`
}

// DatabaseStatus is the state kept in one database.
type DatabaseStatus struct {
	Name        string             `json:"name"`
	URL         string             `json:"url"` // password redacted
	Now         time.Time          `json:"now"` // the database clock
	Checkpoints []CheckpointStatus `json:"checkpoints"`
	// DeadLetters counts items per observer ("" for inputs that never
	// became events).
	DeadLetters      map[string]int `json:"dead_letters"`
	DeadLetterTotal  int            `json:"dead_letters_total"`
	OldestTxnSeconds float64        `json:"oldest_open_transaction_seconds"`
}

// CheckpointStatus is one reader's or bridge's saved position.
type CheckpointStatus struct {
	Name string `json:"name"`
	// Configured is true for the readers this configuration runs; other
	// stored checkpoints are listed too.
	Configured bool           `json:"configured"`
	Stored     bool           `json:"stored"` // false: the reader starts from the beginning
	Position   ports.Position `json:"position"`
	UpdatedAt  *time.Time     `json:"updated_at,omitempty"`
	Backlog    int64          `json:"backlog"` // committed change-log rows after Position
	Lease      LeaseStatus    `json:"lease"`
}

// LeaseStatus says which process holds a reader's lease.
type LeaseStatus struct {
	Name      string     `json:"name"`
	Holder    string     `json:"holder,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Active    bool       `json:"active"` // held and not expired
}

// Status reads checkpoints, backlogs, leases, dead-letter counts and the
// oldest open transaction of every database of the configuration.
func (o *Operator) Status(ctx context.Context) (StatusReport, error) {
	rep := StatusReport{Topology: string(o.app.cfg.Topology)}
	dbs, err := o.databases(ctx)
	if err != nil {
		return rep, err
	}
	for _, s := range dbs {
		ds, err := s.status(ctx)
		if err != nil {
			return rep, fmt.Errorf("status of %s: %w", s.name, migrateHint(err))
		}
		rep.Databases = append(rep.Databases, ds)
	}
	return rep, nil
}

func (s *stateDB) status(ctx context.Context) (DatabaseStatus, error) {
	ds := DatabaseStatus{Name: s.name, URL: s.url}
	stored, err := s.cps.List(ctx)
	if err != nil {
		return ds, err
	}
	byName := map[string]ports.CheckpointRecord{}
	for _, r := range stored {
		byName[r.Name] = r
	}
	names := make([]string, 0, len(s.readers)+len(stored))
	configured := map[string]bool{}
	for _, r := range s.readers {
		names = append(names, r.checkpoint)
		configured[r.checkpoint] = true
	}
	for _, r := range stored {
		if !configured[r.Name] {
			names = append(names, r.Name)
		}
	}
	for _, name := range names {
		cs := CheckpointStatus{Name: name, Configured: configured[name]}
		if r, ok := byName[name]; ok {
			cs.Stored, cs.Position = true, r.Position
			cs.UpdatedAt = &r.UpdatedAt
		}
		if cs.Backlog, err = s.log.Backlog(ctx, cs.Position); err != nil {
			return ds, err
		}
		ls, err := s.lease.State(ctx, leaseFor(name))
		if err != nil {
			return ds, err
		}
		cs.Lease = LeaseStatus{Name: ls.Name, Holder: ls.Holder, Active: ls.Active}
		if ls.Holder != "" {
			cs.Lease.ExpiresAt = &ls.ExpiresAt
		}
		ds.Now = ls.Now
		cs.Lease.Name = ls.Name
		ds.Checkpoints = append(ds.Checkpoints, cs)
	}
	if ds.DeadLetters, err = s.dl.Stats(ctx); err != nil {
		return ds, err
	}
	for _, n := range ds.DeadLetters {
		ds.DeadLetterTotal += n
	}
	age, err := s.log.OldestTransactionAge(ctx)
	if err != nil {
		return ds, err
	}
	ds.OldestTxnSeconds = age.Seconds()
	if ds.Now.IsZero() {
		ls, err := s.lease.State(ctx, "")
		if err != nil {
			return ds, err
		}
		ds.Now = ls.Now
	}
	return ds, nil
}

// WriteStatus prints rep as text, or as JSON when asJSON.
func WriteStatus(w io.Writer, rep StatusReport, asJSON bool) error {
	if asJSON {
		return writeJSONTo(w, rep)
	}
	fmt.Fprintf(w, "topology: %s\n", rep.Topology)
	for _, d := range rep.Databases {
		fmt.Fprintf(w, "\n%s (%s), database time %s\n", d.Name, d.URL, d.Now.UTC().Format(time.RFC3339))
		if len(d.Checkpoints) == 0 {
			fmt.Fprintln(w, "  checkpoints: none (no reader runs against this database)")
		} else {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  CHECKPOINT\tPOSITION\tUPDATED\tBACKLOG\tLEASE")
			for _, c := range d.Checkpoints {
				name := c.Name
				if !c.Configured {
					name += " (not in this configuration)"
				}
				pos, updated := "none (reads from the start)", "-"
				if c.Stored {
					pos = c.Position.String()
					updated = c.UpdatedAt.UTC().Format(time.RFC3339) + " (" + ago(d.Now.Sub(*c.UpdatedAt)) + ")"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", name, pos, updated, c.Backlog, leaseText(c.Lease, d.Now))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "  dead letters: %d", d.DeadLetterTotal)
		if d.DeadLetterTotal > 0 {
			parts := make([]string, 0, len(d.DeadLetters))
			for _, obs := range slices.Sorted(maps.Keys(d.DeadLetters)) {
				label := obs
				if label == "" {
					label = "(inputs that were not events)"
				}
				parts = append(parts, fmt.Sprintf("%s: %d", label, d.DeadLetters[obs]))
			}
			fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
		}
		fmt.Fprintln(w)
		if d.OldestTxnSeconds > 0 {
			fmt.Fprintf(w, "  oldest open transaction: %s (readers cannot pass rows of younger transactions until it ends)\n",
				time.Duration(d.OldestTxnSeconds*float64(time.Second)).Round(time.Millisecond))
		} else {
			fmt.Fprintln(w, "  oldest open transaction: none")
		}
	}
	return nil
}

func leaseText(l LeaseStatus, now time.Time) string {
	switch {
	case l.Holder == "":
		return "free"
	case !l.Active:
		return fmt.Sprintf("free (expired %s ago, last held by %s)", now.Sub(*l.ExpiresAt).Round(time.Second), l.Holder)
	default:
		return fmt.Sprintf("held by %s until %s (in %s)", l.Holder, l.ExpiresAt.UTC().Format(time.RFC3339), l.ExpiresAt.Sub(now).Round(time.Second))
	}
}

func ago(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ---- dead letters ----

// DeadLetterQuery filters a dead-letter listing; zero values mean no
// filter, Limit 0 means 100.
type DeadLetterQuery struct {
	Observer string
	Limit    int
	AfterID  int64
}

// DeadLetterView is a dead letter as the CLI and the admin API show it.
// Raw input bytes are given as text when they are valid UTF-8, else as
// base64 (RawEncoding says which).
type DeadLetterView struct {
	ID          int64         `json:"id"`
	EventID     string        `json:"event_id"`
	Observer    string        `json:"observer"`
	Action      string        `json:"action"`
	ActionType  string        `json:"action_type"`
	Error       string        `json:"error"`
	Attempts    int           `json:"attempts"`
	CreatedAt   time.Time     `json:"created_at"`
	LastRetryAt *time.Time    `json:"last_retry_at,omitempty"`
	Event       *domain.Event `json:"event,omitempty"`
	Raw         string        `json:"raw,omitempty"`
	RawEncoding string        `json:"raw_encoding,omitempty"` // "text" or "base64"
}

func viewDeadLetter(d ports.DeadLetter) DeadLetterView {
	v := DeadLetterView{
		ID: d.ID, EventID: d.Event.ID, Observer: d.Observer, Action: d.Action, ActionType: string(d.ActionType),
		Error: d.Error, Attempts: d.Attempts, CreatedAt: d.CreatedAt,
	}
	if !d.LastRetryAt.IsZero() {
		t := d.LastRetryAt
		v.LastRetryAt = &t
	}
	ev := d.Event
	v.Event = &ev
	if len(d.Raw) > 0 {
		if utf8.Valid(d.Raw) {
			v.Raw, v.RawEncoding = string(d.Raw), "text"
		} else {
			v.Raw, v.RawEncoding = base64.StdEncoding.EncodeToString(d.Raw), "base64"
		}
	}
	return v
}

// DeadLetterStats counts dead letters.
type DeadLetterStats struct {
	Total      int            `json:"total"`
	ByObserver map[string]int `json:"by_observer"` // "" for inputs that were not events
}

// RetryStatus is how a dead-letter retry ended.
type RetryStatus string

// The retry statuses.
const (
	RetrySucceeded    RetryStatus = "succeeded"     // the action ran and the item was removed
	RetryFailed       RetryStatus = "failed"        // the action failed again; the item stays with one more attempt
	RetryNotRetryable RetryStatus = "not_retryable" // an input that was not an event, or its observer or action is gone
)

// RetryResult is the real outcome of re-running one dead letter.
type RetryResult struct {
	ID       int64       `json:"id"`
	EventID  string      `json:"event_id"`
	Observer string      `json:"observer"`
	Action   string      `json:"action"`
	Status   RetryStatus `json:"status"`
	Error    string      `json:"error,omitempty"`
}

// RetryReport is the outcome of a retry-all.
type RetryReport struct {
	Results      []RetryResult `json:"results"`
	Succeeded    int           `json:"succeeded"`
	Failed       int           `json:"failed"`
	NotRetryable int           `json:"not_retryable"`
}

// OK reports whether every item succeeded.
func (r RetryReport) OK() bool { return r.Failed == 0 && r.NotRetryable == 0 }

// deadLetterAdmin is the dead-letter administration shared by the CLI and
// the admin API.
type deadLetterAdmin struct {
	store   ports.DeadLetterStore
	retrier func(context.Context) (*application.DeadLetterRetrier, error)
}

func (d deadLetterAdmin) list(ctx context.Context, q DeadLetterQuery) ([]DeadLetterView, error) {
	if q.Limit < 0 || q.AfterID < 0 {
		return nil, fmt.Errorf("list dead letters: limit and after must not be negative")
	}
	items, err := d.store.List(ctx, ports.DeadLetterFilter{Observer: q.Observer, Limit: q.Limit, AfterID: q.AfterID})
	if err != nil {
		return nil, migrateHint(err)
	}
	out := make([]DeadLetterView, 0, len(items))
	for _, it := range items {
		out = append(out, viewDeadLetter(it))
	}
	return out, nil
}

func (d deadLetterAdmin) get(ctx context.Context, id int64) (DeadLetterView, error) {
	it, err := d.store.Get(ctx, id)
	if err != nil {
		if errors.Is(err, ports.ErrNotFound) {
			return DeadLetterView{}, fmt.Errorf("dead letter %d: %w", id, ports.ErrNotFound)
		}
		return DeadLetterView{}, migrateHint(err)
	}
	return viewDeadLetter(it), nil
}

func (d deadLetterAdmin) remove(ctx context.Context, id int64) error {
	if err := d.store.Remove(ctx, id); err != nil {
		if errors.Is(err, ports.ErrNotFound) {
			return fmt.Errorf("dead letter %d: %w", id, ports.ErrNotFound)
		}
		return migrateHint(err)
	}
	return nil
}

func (d deadLetterAdmin) stats(ctx context.Context) (DeadLetterStats, error) {
	m, err := d.store.Stats(ctx)
	if err != nil {
		return DeadLetterStats{}, migrateHint(err)
	}
	st := DeadLetterStats{ByObserver: m}
	for _, n := range m {
		st.Total += n
	}
	return st, nil
}

// retry re-runs one item. An unknown id is an error wrapping ErrNotFound;
// an item that cannot be retried is reported with RetryNotRetryable and
// no error.
func (d deadLetterAdmin) retry(ctx context.Context, id int64) (RetryResult, error) {
	r, err := d.retrier(ctx)
	if err != nil {
		return RetryResult{ID: id}, err
	}
	return retryOne(ctx, r, id)
}

func retryOne(ctx context.Context, r *application.DeadLetterRetrier, id int64) (RetryResult, error) {
	out, err := r.Retry(ctx, id)
	res := RetryResult{ID: out.ID, EventID: out.EventID, Observer: out.Observer, Action: out.Action, Error: out.Error}
	switch {
	case errors.Is(err, application.ErrNotRetryable):
		res.Status, res.Error = RetryNotRetryable, err.Error()
		return res, nil
	case errors.Is(err, ports.ErrNotFound) && out.EventID == "":
		return res, fmt.Errorf("dead letter %d: %w", id, ports.ErrNotFound)
	case err != nil:
		return res, migrateHint(err)
	case out.Succeeded:
		res.Status = RetrySucceeded
	default:
		res.Status = RetryFailed
	}
	return res, nil
}

// retryAll re-runs every item of observer ("" for all), in id order, and
// reports each outcome; items removed meanwhile are skipped.
func (d deadLetterAdmin) retryAll(ctx context.Context, observer string) (RetryReport, error) {
	rep := RetryReport{Results: []RetryResult{}}
	r, err := d.retrier(ctx)
	if err != nil {
		return rep, err
	}
	f := ports.DeadLetterFilter{Observer: observer, Limit: 100}
	for {
		page, err := d.store.List(ctx, f)
		if err != nil {
			return rep, migrateHint(err)
		}
		if len(page) == 0 {
			return rep, nil
		}
		for _, it := range page {
			f.AfterID = it.ID
			res, err := retryOne(ctx, r, it.ID)
			if errors.Is(err, ports.ErrNotFound) {
				continue // removed since it was listed
			}
			if err != nil {
				return rep, err
			}
			rep.add(res)
		}
	}
}

func (r *RetryReport) add(res RetryResult) {
	r.Results = append(r.Results, res)
	switch res.Status {
	case RetrySucceeded:
		r.Succeeded++
	case RetryFailed:
		r.Failed++
	case RetryNotRetryable:
		r.NotRetryable++
	}
}

// dlq is the operator's dead-letter administration on the state database.
func (o *Operator) dlq() deadLetterAdmin {
	return deadLetterAdmin{store: o.state.dl, retrier: o.buildRetrier}
}

// buildRetrier builds the observers and action executors the way run does
// (Redis when configured, the SSRF policy, every executor), without
// readers, workers or the admin server.
func (o *Operator) buildRetrier(ctx context.Context) (*application.DeadLetterRetrier, error) {
	if o.retrier != nil {
		return o.retrier, nil
	}
	a := o.app
	observers, err := config.LoadObservers(a.cfg, a.env)
	if err != nil {
		return nil, err
	}
	if a.cfg.Redis.Configured() {
		if err := a.openRedis(ctx); err != nil {
			return nil, err
		}
	}
	if usesAction(observers, domain.ActionNATS) {
		// checkAvailable (in config.LoadObservers) made sure this is a NATS topology.
		c, err := natsadapter.Connect(ctx, a.natsConfig(), a.logger)
		if err != nil {
			return nil, err
		}
		a.nats = c
		a.onClose(c.Close)
	}
	if a.dispatcher, err = a.executors(); err != nil {
		return nil, err
	}
	if err := a.checkSupported(observers); err != nil {
		return nil, err
	}
	m := domain.NewMatcher(observers)
	o.retrier = &application.DeadLetterRetrier{
		Store: o.state.dl, Executor: a.dispatcher, Matcher: func() *domain.Matcher { return m }, Now: time.Now,
	}
	return o.retrier, nil
}

// ListDeadLetters lists the state database's dead letters in id order.
func (o *Operator) ListDeadLetters(ctx context.Context, q DeadLetterQuery) ([]DeadLetterView, error) {
	return o.dlq().list(ctx, q)
}

// DeadLetter returns one dead letter; an unknown id wraps ErrNotFound.
func (o *Operator) DeadLetter(ctx context.Context, id int64) (DeadLetterView, error) {
	return o.dlq().get(ctx, id)
}

// RemoveDeadLetter deletes one dead letter; an unknown id wraps ErrNotFound.
func (o *Operator) RemoveDeadLetter(ctx context.Context, id int64) error {
	return o.dlq().remove(ctx, id)
}

// DeadLetterStats counts the dead letters per observer.
func (o *Operator) DeadLetterStats(ctx context.Context) (DeadLetterStats, error) {
	return o.dlq().stats(ctx)
}

// RetryDeadLetter re-runs the failed action of one dead letter with the
// configured observers and executors and reports the real outcome: a
// success removes the item, a failure keeps it with one more attempt and
// the new error. An unknown id wraps ErrNotFound.
func (o *Operator) RetryDeadLetter(ctx context.Context, id int64) (RetryResult, error) {
	return o.dlq().retry(ctx, id)
}

// RetryAllDeadLetters re-runs every dead letter of observer ("" for all).
func (o *Operator) RetryAllDeadLetters(ctx context.Context, observer string) (RetryReport, error) {
	return o.dlq().retryAll(ctx, observer)
}

// WriteDeadLetters prints a listing as a table, or JSON.
func WriteDeadLetters(w io.Writer, items []DeadLetterView, limit int, asJSON bool) error {
	if asJSON {
		brief := make([]DeadLetterView, len(items))
		for i, d := range items {
			d.Event, d.Raw, d.RawEncoding = nil, "", ""
			brief[i] = d
		}
		return writeJSONTo(w, map[string]any{"items": brief})
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tOBSERVER\tACTION\tEVENT\tATTEMPTS\tERROR")
	for _, d := range items {
		obs, act := d.Observer, d.Action
		if obs == "" {
			obs, act = "(input)", "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.CreatedAt.UTC().Format(time.RFC3339), obs, act,
			cmp.Or(d.EventID, "-"), d.Attempts, shorten(d.Error, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if limit := cmp.Or(limit, 100); len(items) == limit {
		fmt.Fprintf(w, "(%d shown; more may follow: --after %d)\n", len(items), items[len(items)-1].ID)
	}
	return nil
}

// WriteDeadLetter prints one dead letter in full, or JSON.
func WriteDeadLetter(w io.Writer, d DeadLetterView, asJSON bool) error {
	if asJSON {
		return writeJSONTo(w, d)
	}
	fmt.Fprintf(w, "dead letter %d\n", d.ID)
	if d.Observer == "" {
		fmt.Fprintln(w, "  kind:        input that could not become an event (not retryable)")
	} else {
		fmt.Fprintf(w, "  observer:    %s\n  action:      %s (%s)\n", d.Observer, d.Action, d.ActionType)
	}
	fmt.Fprintf(w, "  event id:    %s\n  attempts:    %d\n  created:     %s\n", cmp.Or(d.EventID, "-"), d.Attempts, d.CreatedAt.UTC().Format(time.RFC3339Nano))
	if d.LastRetryAt != nil {
		fmt.Fprintf(w, "  last retry:  %s\n", d.LastRetryAt.UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(w, "  error:       %s\n", d.Error)
	if d.Event != nil {
		b, err := json.MarshalIndent(d.Event, "  ", "  ")
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		fmt.Fprintf(w, "  event:\n  %s\n", b)
	}
	if d.Raw != "" {
		fmt.Fprintf(w, "  raw (%s):\n  %s\n", d.RawEncoding, d.Raw)
	}
	return nil
}

// WriteDeadLetterStats prints counts per observer, or JSON.
func WriteDeadLetterStats(w io.Writer, st DeadLetterStats, asJSON bool) error {
	if asJSON {
		return writeJSONTo(w, st)
	}
	fmt.Fprintf(w, "dead letters: %d\n", st.Total)
	for _, obs := range slices.Sorted(maps.Keys(st.ByObserver)) {
		label := obs
		if label == "" {
			label = "(inputs that were not events)"
		}
		fmt.Fprintf(w, "  %s: %d\n", label, st.ByObserver[obs])
	}
	return nil
}

// WriteRetryResult prints one retry outcome, or JSON.
func WriteRetryResult(w io.Writer, r RetryResult, asJSON bool) error {
	if asJSON {
		return writeJSONTo(w, r)
	}
	_, err := fmt.Fprintln(w, retryLine(r))
	return err
}

func retryLine(r RetryResult) string {
	switch r.Status {
	case RetrySucceeded:
		return fmt.Sprintf("dead letter %d (%s/%s, event %s): succeeded, removed", r.ID, r.Observer, r.Action, r.EventID)
	case RetryFailed:
		return fmt.Sprintf("dead letter %d (%s/%s, event %s): failed again, kept: %s", r.ID, r.Observer, r.Action, r.EventID, r.Error)
	default:
		return fmt.Sprintf("dead letter %d: not retryable: %s", r.ID, r.Error)
	}
}

// WriteRetryReport prints each outcome and the summary line "N succeeded,
// M failed, K not retryable", or JSON.
func WriteRetryReport(w io.Writer, rep RetryReport, asJSON bool) error {
	if asJSON {
		return writeJSONTo(w, rep)
	}
	for _, r := range rep.Results {
		fmt.Fprintln(w, retryLine(r))
	}
	_, err := fmt.Fprintf(w, "%d succeeded, %d failed, %d not retryable\n", rep.Succeeded, rep.Failed, rep.NotRetryable)
	return err
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// ---- replay ----

// ReplayResult is what Replay did.
type ReplayResult struct {
	Reader   string    `json:"reader"`
	Database string    `json:"database"`
	Since    time.Time `json:"since"`
	// Old is the checkpoint before the replay (OldStored false: there was
	// none).
	Old       ports.Position `json:"old"`
	OldStored bool           `json:"old_stored"`
	New       ports.Position `json:"new"`
	Moved     bool           `json:"moved"`
	// Reread counts the rows between New and Old, which are read again.
	Reread int64 `json:"reread"`
	// Backlog counts every row after New (Reread plus rows not read yet).
	Backlog int64 `json:"backlog"`
	// Reason says why the checkpoint did not move.
	Reason string `json:"reason,omitempty"`
	// Dedup explains, when dedup is enabled, that re-read events still in
	// the dedup window are skipped, and how to avoid it.
	Dedup string `json:"dedup,omitempty"`
}

// ParseSince reads a --since value: an RFC 3339 time, or a duration such
// as "2h" meaning that long before now.
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a positive duration (2h, 30m)", s)
	}
	return now.Add(-d), nil
}

// Replay moves reader's checkpoint back so that change-log rows created
// at or after since are processed again. reader "" picks the
// configuration's reader (or its only bridge). While the replay runs it
// holds the reader's lease itself, so it refuses (ErrReaderRunning) while
// another process holds that lease, and no reader can start meanwhile.
// The checkpoint only moves backwards: rows after it were not processed
// yet.
func (o *Operator) Replay(ctx context.Context, reader string, since time.Time) (ReplayResult, error) {
	res := ReplayResult{Since: since}
	s, ref, err := o.findReader(ctx, reader)
	if err != nil {
		return res, err
	}
	res.Reader, res.Database = ref.checkpoint, s.name
	holder := "replay/" + o.app.holder
	held, err := s.lease.Acquire(ctx, ref.lease, holder, o.app.cfg.Reader.LeaseTTL)
	if err != nil {
		return res, migrateHint(err)
	}
	if !held {
		ls, err := s.lease.State(ctx, ref.lease)
		if err != nil {
			return res, err
		}
		return res, fmt.Errorf("%w: %s holds lease %q until %s; stop it before replaying (a moved checkpoint would be overwritten by its next save)",
			ErrReaderRunning, ls.Holder, ref.lease, ls.ExpiresAt.UTC().Format(time.RFC3339))
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.lease.Release(rctx, ref.lease, holder); err != nil {
			o.app.logger.Warn("cannot release the reader lease; it expires by itself", slog.String("lease", ref.lease), slog.String("error", err.Error()))
		}
	}()

	old, ok, err := s.cps.Load(ctx, ref.checkpoint)
	if err != nil {
		return res, err
	}
	res.Old, res.OldStored, res.New = old, ok, old
	if !ok {
		res.Reason = "the reader has no checkpoint yet: it reads the change log from the start, so nothing needs replaying"
		return res, nil
	}
	first, found, err := s.log.FirstSince(ctx, since)
	if err != nil {
		return res, err
	}
	if !found {
		res.Reason = "no change-log row was created at or after " + since.UTC().Format(time.RFC3339)
		return res, nil
	}
	target := ports.Position{TxID: first.TxID, Seq: first.Seq - 1}
	if !target.Less(old) {
		res.Reason = fmt.Sprintf("the first row created since then (%s) lies after the checkpoint: it has not been processed yet", first)
		if res.Backlog, err = s.log.Backlog(ctx, old); err != nil {
			return res, err
		}
		return res, nil
	}
	if res.Reread, err = s.log.CountBetween(ctx, target, old); err != nil {
		return res, err
	}
	if err := s.cps.Save(ctx, ref.checkpoint, target); err != nil {
		return res, err
	}
	res.New, res.Moved = target, true
	if res.Backlog, err = s.log.Backlog(ctx, target); err != nil {
		return res, err
	}
	res.Dedup = o.dedupNote()
	return res, nil
}

// findReader resolves a --reader value (a checkpoint name, or a bridge's
// database name) to its database and lease; "" is the only reader.
func (o *Operator) findReader(ctx context.Context, name string) (*stateDB, readerRef, error) {
	dbs, err := o.databases(ctx)
	if err != nil {
		return nil, readerRef{}, err
	}
	type found struct {
		s *stateDB
		r readerRef
	}
	var all []found
	var names []string
	for _, s := range dbs {
		for _, r := range s.readers {
			all = append(all, found{s, r})
			names = append(names, r.checkpoint)
		}
	}
	if name == "" {
		switch len(all) {
		case 1:
			return all[0].s, all[0].r, nil
		case 0:
			return nil, readerRef{}, &config.ConfigError{Key: "--reader", Msg: "this configuration runs no reader (role " + string(o.app.cfg.Role) + ")"}
		default:
			return nil, readerRef{}, &config.ConfigError{Key: "--reader", Msg: "this configuration has several readers, name one of: " + strings.Join(names, ", ")}
		}
	}
	for _, f := range all {
		if f.r.checkpoint == name || f.r.checkpoint == "bridge:"+name {
			return f.s, f.r, nil
		}
	}
	return nil, readerRef{}, &config.ConfigError{Key: "--reader", Msg: fmt.Sprintf("%q is not a reader of this configuration (readers: %s)", name, strings.Join(names, ", "))}
}

// dedupNote tells, when dedup is on, which replayed events are skipped
// and how to avoid it, as the dedup store actually behaves.
func (o *Operator) dedupNote() string {
	c := o.app.cfg
	if !c.Performance.EnableDedup {
		return ""
	}
	note := fmt.Sprintf("dedup is enabled (performance.enable_dedup): events that completed less than redis.dedup_window (%s) ago are skipped as duplicates when they are read again.", c.Redis.DedupWindow)
	if c.Redis.Configured() {
		note += fmt.Sprintf(" Their marks are the Redis keys %sdedup:v1:event:<event id>; to process them again, delete those keys before the service reads them (e.g. redis-cli --scan --pattern '%sdedup:v1:event:*' | xargs -r redis-cli unlink, which clears the marks of every event), or replay once the window has passed.",
			c.Redis.KeyPrefix, domain.GlobEscape(c.Redis.KeyPrefix))
	} else {
		note += " The marks are kept in the running process only: restarting the service clears them."
	}
	if c.Performance.EnableCaching {
		note += fmt.Sprintf(" With performance.enable_caching, actions that succeeded less than redis.cache_ttl (%s) ago are not repeated either (keys %scache:v1:result:*).", c.Redis.CacheTTL, c.Redis.KeyPrefix)
	}
	return note
}

// WriteReplay prints what Replay did, or JSON.
func WriteReplay(w io.Writer, r ReplayResult, asJSON bool) error {
	if asJSON {
		return writeJSONTo(w, r)
	}
	if !r.Moved {
		pos := "none"
		if r.OldStored {
			pos = r.Old.String()
		}
		_, err := fmt.Fprintf(w, "reader %s (%s): checkpoint unchanged at %s: %s\n", r.Reader, r.Database, pos, r.Reason)
		return err
	}
	fmt.Fprintf(w, "reader %s (%s): checkpoint moved from %s to %s (first row created at or after %s)\n",
		r.Reader, r.Database, r.Old, r.New, r.Since.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "%d row(s) will be read again; %d row(s) lie after the new checkpoint in total\n", r.Reread, r.Backlog)
	if r.Dedup != "" {
		fmt.Fprintln(w, "note: "+r.Dedup)
	}
	return nil
}

// usesAction reports whether any observer has an action of type t.
func usesAction(obs []domain.Observer, t domain.ActionType) bool {
	for _, o := range obs {
		for _, a := range o.Actions {
			if a.Type == t {
				return true
			}
		}
	}
	return false
}
