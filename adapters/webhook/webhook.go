// Package webhook runs webhook actions: it sends the event (or a rendered
// body template) to an HTTP endpoint through the SSRF guard, signs the
// request per the Standard Webhooks specification and classifies the answer
// as success, transient or permanent failure.
package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observer/adapters/httpguard"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

const (
	// maxErrorBody is how much of a failed response's body an error quotes.
	maxErrorBody = 256
	// maxDrain bounds how much of a response body is read so the
	// connection can be reused; larger bodies cost a new connection.
	maxDrain = 64 << 10
	// maxRetryAfter caps the delay a receiver may ask for.
	maxRetryAfter = time.Hour
	// secretPrefix marks a base64 Standard Webhooks signing key.
	secretPrefix = "whsec_"
	// redacted replaces a credential in what is shown.
	redacted = "(redacted)"
	// minEchoed is the shortest credential (or start of one) removed from
	// an echoed response body: shorter runs match by coincidence.
	minEchoed = 4
)

// Config configures an Executor. Zero values take the noted defaults.
type Config struct {
	Policy              httpguard.Policy // outbound address policy
	UserAgent           string           // default "fraiseql-observer"
	Now                 func() time.Time // default time.Now; used for webhook-timestamp and Retry-After dates
	MaxIdleConnsPerHost int              // default 64
	// Propagate, when set, writes the trace context of a request's ctx
	// into its headers (traceparent, tracestate): the receiver's spans
	// join the action's trace.
	Propagate func(ctx context.Context, h http.Header)
}

// Executor runs webhook actions. Safe for concurrent use.
type Executor struct {
	client    *http.Client
	transport http.RoundTripper // client's: https requests go straight to it (no redirects are followed)
	h1        *h1Client         // http requests
	logger    *slog.Logger
	userAgent []string // the User-Agent header's value, shared by every request
	now       func() time.Time
	propagate func(ctx context.Context, h http.Header)
	targets   memo[string, parsedURL] // raw URL → parsed, per configured URL
	// missingNotes limits the missing-placeholder warnings (one a minute
	// per action).
	missingNotes ports.NoteLimiter
	ids          memo[idKey, string]     // observer/action → webhook-id suffix
	echoes       memo[echoKey, []string] // URL and action → the credentials an answer may echo
	keys         memo[string, *signer]   // signing secret → its signer
}

var _ ports.ActionExecutor = (*Executor)(nil)

// NewExecutor builds an Executor with its own guarded HTTP client.
func NewExecutor(cfg Config, logger *slog.Logger) (*Executor, error) {
	if logger == nil {
		return nil, errors.New("webhook: new executor: logger is nil")
	}
	if cfg.MaxIdleConnsPerHost < 0 {
		return nil, fmt.Errorf("webhook: new executor: max idle connections per host must not be negative, got %d", cfg.MaxIdleConnsPerHost)
	}
	cfg.UserAgent = cmp.Or(cfg.UserAgent, "fraiseql-observer")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	clientCfg := httpguard.ClientConfig{MaxIdleConnsPerHost: cmp.Or(cfg.MaxIdleConnsPerHost, 64)}
	client := httpguard.NewClient(cfg.Policy, clientCfg)
	return &Executor{
		client:    client,
		transport: client.Transport,
		h1: &h1Client{
			dial:         httpguard.NewDialer(cfg.Policy, clientCfg).DialContext,
			maxIdle:      httpguard.MaxIdleConnsPerHost(clientCfg),
			maxIdleTotal: httpguard.MaxIdleConns(clientCfg),
			idleTimeout:  httpguard.IdleConnTimeout(clientCfg),
		},
		logger:    logger,
		userAgent: []string{cfg.UserAgent},
		now:       cfg.Now,
		propagate: cfg.Propagate,
	}, nil
}

// Close releases idle connections.
func (e *Executor) Close() {
	e.client.CloseIdleConnections()
	e.h1.closeIdle()
}

// StatusError is the failure for a response outside 2xx.
type StatusError struct {
	Method     string
	Target     string // scheme://host[:port] only: a path or query may hold a token
	StatusCode int
	Body       string // at most 256 bytes of the response body
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook: %s %s: status %d", e.Method, e.Target, e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		msg += " " + text
	}
	if e.Body != "" {
		msg += fmt.Sprintf(": body %q", e.Body)
	}
	return msg
}

// Execute sends the webhook for ev. It returns nil for a 2xx answer;
// domain.Transient for 408, 429, 5xx, timeouts and network errors
// (honouring Retry-After); domain.Permanent for other statuses, a refused
// address and configuration that cannot work.
func (e *Executor) Execute(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) error {
	if act == nil || act.Webhook == nil {
		return domain.Permanent(errors.New("webhook: action has no webhook config"))
	}
	if ev == nil {
		return domain.Permanent(errors.New("webhook: no event"))
	}
	if act.Webhook.Batch != nil { // a batched action always sends the batch document: here a batch of one
		body, err := e.BatchBody(ctx, ev, obs, act)
		if err != nil {
			return err
		}
		return e.ExecuteBatch(ctx, ports.ActionBatch{
			ID: domain.BatchID(domain.ObserverName(obs), act.Name, []string{ev.ID}), Observer: obs, Action: act,
			Events: []ports.BatchEvent{{Event: ev, Body: body}},
		})
	}
	method, target, err := e.requestTarget(act)
	if err != nil {
		return err
	}
	body, err := e.body(ctx, ev, obs, act)
	if err != nil {
		return domain.Permanent(fmt.Errorf("webhook: %s %s: %w", method, target, err))
	}
	return e.deliver(ctx, act, method, target, ev.ID+"."+e.idSuffix(domain.ObserverName(obs), act.Name), body)
}

// requestTarget returns act's method and what messages may show of its URL.
func (e *Executor) requestTarget(act *domain.Action) (method, target string, err error) {
	method = cmp.Or(strings.ToUpper(act.Webhook.Method), http.MethodPost)
	p, err := e.parse(method, act.Webhook.URL, act.Name)
	return method, p.target, err
}

// deliver sends body with act's headers, signed with webhook-id id.
func (e *Executor) deliver(ctx context.Context, act *domain.Action, method, target, id string, body []byte) error {
	wh := act.Webhook
	return e.send(ctx, method, wh.URL, target, body, wh.Timeout, len(wh.Headers)+len(wh.SecretHeaders), wh, func(req *http.Request) error {
		for _, headers := range []map[string]string{wh.Headers, wh.SecretHeaders} {
			for k, v := range headers {
				if strings.EqualFold(k, "Host") {
					req.Host = v
					continue
				}
				req.Header.Set(k, v)
			}
		}
		if err := e.sign(req.Header, id, act, body); err != nil {
			return domain.Permanent(fmt.Errorf("webhook: %s %s: %w", method, target, err))
		}
		return nil
	})
}

// Post sends body as JSON to rawURL through the guarded client and
// classifies the answer as Execute does. Actions that speak HTTP without
// being webhooks (slack) use it.
func (e *Executor) Post(ctx context.Context, rawURL string, body []byte, timeout time.Duration) error {
	p, err := e.parse(http.MethodPost, rawURL, "")
	if err != nil {
		return err
	}
	return e.send(ctx, http.MethodPost, rawURL, p.target, body, timeout, 0, nil, nil)
}

// send makes the request (prepare adds headers) and classifies the answer:
// nil for 2xx; transient for 408, 425, 429, 5xx, timeouts and network errors
// (with Retry-After); permanent for other statuses and refused addresses.
// extraHeaders is how many headers prepare adds (a size hint); the
// credentials of rawURL and wh (nil: none; echoSecrets) are removed from
// the answer's body before it is recorded or quoted.
func (e *Executor) send(ctx context.Context, method, rawURL, target string, body []byte, timeout time.Duration, extraHeaders int,
	wh *domain.WebhookAction, prepare func(*http.Request) error) error {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	req, err := e.newRequest(method, rawURL, extraHeaders)
	if err != nil {
		return err
	}
	if e.propagate != nil {
		e.propagate(ctx, req.Header)
	}
	if prepare != nil {
		if err := prepare(req); err != nil {
			return err
		}
	}

	wants := ports.WantsResponse(ctx)
	var ans h1Answer
	if req.URL.Scheme == "http" {
		ans, err = e.h1.do(ctx, deadline, req, body, wants)
	} else {
		ans, err = e.roundTrip(ctx, deadline, req, body, wants)
	}
	if err != nil {
		err = unwrapURLError(err)
		switch {
		case errors.Is(err, httpguard.ErrForbiddenAddress), errors.Is(err, errInvalidRequest):
			return domain.Permanent(fmt.Errorf("webhook: %s %s: %w", method, target, err))
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return domain.Transient(fmt.Errorf("webhook: %s %s: no answer within %s: %w", method, target, timeout, err), 0)
		default:
			return domain.Transient(fmt.Errorf("webhook: %s %s: %w", method, target, err), 0)
		}
	}

	ok := ans.status >= 200 && ans.status < 300
	if ok && !wants {
		return nil
	}
	var secrets []string
	if len(ans.snippet) > 0 {
		secrets = e.echoed(rawURL, wh)
	}
	snippet := ans.snippet
	if len(secrets) > 0 {
		snippet = []byte(redactText(string(snippet), secrets, len(snippet) >= ports.MaxResponseSnippet))
	}
	ports.NoteResponse(ctx, ans.status, snippet) // for the delivery log
	if ok {
		return nil
	}
	serr := &StatusError{
		Method:     method,
		Target:     target,
		StatusCode: ans.status,
		Body: redactText(strings.ToValidUTF8(trimPartialRune(ans.snippet[:min(len(ans.snippet), maxErrorBody)]), ""), secrets,
			len(ans.snippet) > maxErrorBody || len(ans.snippet) >= ports.MaxResponseSnippet),
	}
	switch {
	case ans.status == http.StatusRequestTimeout,
		ans.status == http.StatusTooEarly,
		ans.status == http.StatusTooManyRequests,
		ans.status >= 500:
		return domain.Transient(serr, retryAfter(ans.retryAfter, e.now()))
	default:
		return domain.Permanent(serr)
	}
}

// roundTrip sends req through net/http's transport (https endpoints),
// with body, and reads the answer as h1Client.do does. Straight to the
// transport: the client would only add redirects (not followed), cookies
// (none) and copies of the request.
func (e *Executor) roundTrip(ctx context.Context, deadline time.Time, req *http.Request, body []byte, wants bool) (h1Answer, error) {
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	u := *req.URL // the shared parsed URL: the transport gets its own
	req.URL = &u
	if len(body) > 0 {
		req.ContentLength = int64(len(body))
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	resp, err := e.transport.RoundTrip(req.WithContext(ctx)) //nolint:bodyclose // drainAndClose below closes it
	if err != nil {
		return h1Answer{}, err
	}
	defer drainAndClose(resp.Body)
	ans := h1Answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if n := snippetSize(resp.StatusCode, wants); n > 0 && resp.ContentLength != 0 { // 0: known empty (a 204, or Content-Length: 0)
		ans.snippet, _ = io.ReadAll(io.LimitReader(resp.Body, int64(n)))
	}
	return ans, nil
}

// snippetSize is how much of an answer's body is read: none of a
// success's unless the delivery log wants it (wants), enough of a
// failure's for its error and the delivery log.
func snippetSize(status int, wants bool) int {
	if status >= 200 && status < 300 && !wants {
		return 0
	}
	return max(maxErrorBody, ports.MaxResponseSnippet)
}

// body renders the request body: the body template JSON-escaped when set,
// else the event envelope.
func (e *Executor) body(ctx context.Context, ev *domain.Event, obs *domain.Observer, act *domain.Action) ([]byte, error) {
	if act.Webhook.BodyTemplate == nil {
		b, err := ev.Envelope()
		if err != nil {
			return nil, fmt.Errorf("encode event envelope: %w", err)
		}
		return b, nil
	}
	out, missing := act.Webhook.BodyTemplate.Render(ev, domain.EscapeJSON)
	if len(missing) > 0 {
		e.missingNotes.MissingPlaceholders(ctx, e.logger, "webhook body template has missing placeholders", ev, obs, act, missing)
	}
	return []byte(out), nil
}

// sign sets webhook-id (id) and webhook-timestamp, and webhook-signature when
// the action has signing secrets: one Standard Webhooks v1 signature
// (HMAC-SHA256) per secret, space-separated, in the order configured, so a
// receiver rotating its secret verifies with either.
func (e *Executor) sign(h http.Header, id string, act *domain.Action, body []byte) error {
	ts := strconv.FormatInt(e.now().Unix(), 10)
	// Canonical keys written directly: what Header.Set does, without
	// canonicalising the names again for every request.
	h["Webhook-Id"] = []string{id}
	h["Webhook-Timestamp"] = []string{ts}
	if len(act.Webhook.SigningSecrets) == 0 {
		delete(h, "Webhook-Signature")
		return nil
	}
	var sig []byte
	for i, secret := range act.Webhook.SigningSecrets {
		sg, ok := e.keys.get(secret)
		if !ok {
			key, err := ParseSigningSecret(secret)
			if err != nil {
				return fmt.Errorf("signing secret %d of %d: %w", i+1, len(act.Webhook.SigningSecrets), err)
			}
			sg = newSigner(key)
			e.keys.put(secret, sg)
		}
		if i > 0 {
			sig = append(sig, ' ')
		}
		sig = sg.appendSignature(sig, id, ts, body)
	}
	h["Webhook-Signature"] = []string{string(sig)}
	return nil
}

// signer makes the v1 signatures of one key. hmac.New hashes the key's
// pads (two SHA-256 blocks) each time: the keyed hashes are reused.
type signer struct{ macs sync.Pool }

func newSigner(key []byte) *signer {
	s := &signer{}
	s.macs.New = func() any { return hmac.New(sha256.New, key) }
	return s
}

// appendSignature appends "v1,<base64 HMAC-SHA256 of id.ts.body>" to dst.
func (s *signer) appendSignature(dst []byte, id, ts string, body []byte) []byte {
	mac, _ := s.macs.Get().(hash.Hash)
	mac.Reset()
	_, _ = io.WriteString(mac, id)
	_, _ = mac.Write([]byte{'.'})
	_, _ = io.WriteString(mac, ts)
	_, _ = mac.Write([]byte{'.'})
	_, _ = mac.Write(body)
	var sum [sha256.Size]byte
	dst = append(dst, "v1,"...)
	dst = base64.StdEncoding.AppendEncode(dst, mac.Sum(sum[:0]))
	s.macs.Put(mac)
	return dst
}

// ErrInvalidSigningSecret is wrapped by ParseSigningSecret's errors.
var ErrInvalidSigningSecret = errors.New("invalid signing secret")

// The Standard Webhooks specification asks for symmetric keys of 24 to 64
// random bytes.
const (
	minSecretBytes = 24
	maxSecretBytes = 64
)

// ParseSigningSecret decodes a Standard Webhooks signing secret, "whsec_"
// followed by the standard (padded) base64 encoding of 24 to 64 bytes, as
// the specification's reference libraries read it, and returns the HMAC
// key. Config load calls it so a bad secret is refused at start. Errors
// wrap ErrInvalidSigningSecret and never contain the secret or part of it.
func ParseSigningSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, fmt.Errorf(`%w: it must be "whsec_" followed by base64 (the Standard Webhooks format)`, ErrInvalidSigningSecret)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf(`%w: the part after "whsec_" is not standard base64`, ErrInvalidSigningSecret)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, fmt.Errorf("%w: it decodes to %d bytes, the Standard Webhooks specification asks for %d to %d",
			ErrInvalidSigningSecret, len(key), minSecretBytes, maxSecretBytes)
	}
	return key, nil
}

// retryAfter parses a Retry-After value (delta seconds or HTTP date,
// relative to now), capped at maxRetryAfter; garbage yields 0.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		if secs >= uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if isDigits(v) { // too large for uint64
		return maxRetryAfter
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	switch {
	case d <= 0:
		return 0
	case d > maxRetryAfter:
		return maxRetryAfter
	default:
		return d
	}
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// unwrapURLError drops *url.Error, whose text repeats the full URL with its
// query string.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// drainAndClose reads what is left of a body, up to maxDrain, so the
// connection goes back to the pool, then closes it.
func drainAndClose(body io.ReadCloser) {
	if body == http.NoBody { // a 204 or Content-Length: 0, the common answer
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	_ = body.Close()
}

// trimPartialRune drops an incomplete UTF-8 sequence cut at the end.
func trimPartialRune(b []byte) string {
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		r, size := utf8.DecodeLastRune(b)
		if r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return string(b)
}
