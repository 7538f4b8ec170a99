package adminhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// Client calls a running service's admin API: the command line uses it
// for status and replay in the memory topology, whose state only the
// running process holds.
type Client struct {
	base  string // e.g. http://127.0.0.1:8079
	token string
	http  *http.Client
	// long makes the calls whose work grows with the installation
	// (replay, resend), which the server answers when they are done:
	// bounded by LongCallFactor times the timeout of the others.
	long *http.Client
}

// LongCallFactor: replay and resend may take this many times the client's
// timeout (10 minutes with the default 30s), beyond the server's own
// bounds (its database look-ups and scans end within 5 minutes, each
// action at its own timeout), so that a service that accepts the call and
// then stalls does not hold the command for ever.
const LongCallFactor = 20

// NewClient calls the API at base with the bearer token; every call but
// replay and resend is bounded by timeout (default 30s), those two by
// LongCallFactor times it. It goes straight
// to base, never through HTTP_PROXY or HTTPS_PROXY: the token would go in
// clear to the proxy (the admin API has no TLS of its own).
func NewClient(base, token string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	return &Client{base: base, token: token,
		http: &http.Client{Timeout: timeout, Transport: transport}, long: &http.Client{Timeout: LongCallFactor * timeout, Transport: transport}}
}

// Status returns the running service's persisted-state report
// (GET /api/observers/state).
func (c *Client) Status(ctx context.Context) (admin.StatusReport, error) {
	var rep admin.StatusReport
	err := c.call(ctx, http.MethodGet, "/api/observers/state", nil, &rep)
	return rep, err
}

// Replay asks the running service to replay reader since a time
// (POST /api/observers/replay).
func (c *Client) Replay(ctx context.Context, reader string, since time.Time) (admin.ReplayResult, error) {
	var res admin.ReplayResult
	body := replayRequest{Since: since.UTC().Format(time.RFC3339Nano), Reader: reader}
	err := c.callWith(ctx, c.long, http.MethodPost, "/api/observers/replay", body, &res)
	return res, err
}

// Ready asks the service whether it is ready (GET /readyz, which needs no
// token): ok is true for 200, false for 503; detail is the service's word
// per dependency. A service that cannot be reached, or another answer, is
// an error wrapping ports.ErrUnavailable.
func (c *Client) Ready(ctx context.Context) (ok bool, detail map[string]string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
	if err != nil {
		return false, nil, fmt.Errorf("admin api: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, nil, fmt.Errorf("admin api at %s: %w: %w", c.base, ports.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return false, nil, fmt.Errorf("admin api at %s: /readyz answered %s: %w", c.base, resp.Status, ports.ErrUnavailable)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxSmallBody)).Decode(&detail); err != nil {
		return false, nil, fmt.Errorf("admin api at %s: decode /readyz: %w", c.base, err)
	}
	return resp.StatusCode == http.StatusOK, detail, nil
}

// call sends one request and decodes the answer into out. An error answer
// becomes an error wrapping what its status means: 400 *admin.RequestError,
// 404 ports.ErrNotFound, 409 admin.ErrReaderRunning, 503
// ports.ErrUnavailable; a service that cannot be reached wraps
// ports.ErrUnavailable too.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	return c.callWith(ctx, c.http, method, path, in, out)
}

// callWith is call through hc.
func (c *Client) callWith(ctx context.Context, hc *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("admin api: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("admin api: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin api at %s: %w: %w", c.base, ports.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxEventsBody))
	if err != nil {
		return fmt.Errorf("admin api at %s: read answer: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return statusError(resp.StatusCode, e.Error, "admin api at "+c.base+": "+method+" "+path)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("admin api at %s: decode answer: %w", c.base, err)
	}
	return nil
}

// statusError is the error of an answer with status code and message
// msg to the call named by where (the service and the request): a 400 is
// the caller's mistake and says msg alone, as a local check would.
func statusError(code int, msg, where string) error {
	switch code {
	case http.StatusBadRequest:
		return &admin.RequestError{Msg: msg}
	case http.StatusNotFound:
		return &remoteError{msg: where + ": " + msg, is: ports.ErrNotFound}
	case http.StatusConflict:
		return &remoteError{msg: where + ": " + msg, is: admin.ErrReaderRunning}
	case http.StatusServiceUnavailable:
		return &remoteError{msg: where + ": " + msg, is: ports.ErrUnavailable}
	}
	return errors.New(where + ": " + http.StatusText(code) + ": " + msg)
}

// remoteError is the service's error message, matching the sentinel its
// status stands for.
type remoteError struct {
	msg string
	is  error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.is }
