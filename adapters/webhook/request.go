package webhook

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/fraiseql/fraiseql-observer/domain"
)

// parsedURL is a checked request URL and what messages may show of it.
type parsedURL struct {
	url    *url.URL // shared: read, never modified (the https path copies it)
	target string
}

// parse checks rawURL (once per URL: the result is kept) and returns it
// parsed with what messages may show of it.
func (e *Executor) parse(method, rawURL, action string) (parsedURL, error) {
	p, ok := e.targets.get(rawURL)
	if !ok {
		u, target, err := targetOf(method, rawURL, action)
		if err != nil {
			return parsedURL{}, err
		}
		u.Host = strings.TrimSuffix(u.Host, ":") // as http.NewRequest: an empty port dropped
		p = parsedURL{url: u, target: target}
		e.targets.put(rawURL, p)
	}
	return p, nil
}

// targetOf checks rawURL and returns it parsed with what messages may show
// of it: scheme, host and port. Its path (a Slack webhook's credential),
// query, user information and fragment may hold secrets and stay out of
// every error.
func targetOf(method, rawURL, action string) (*url.URL, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse errors quote the whole URL, which may hold a token.
		return nil, "", domain.Permanent(fmt.Errorf("webhook: action %q: invalid url", action))
	}
	target := u.Scheme + "://" + u.Host
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, "", domain.Permanent(fmt.Errorf("webhook: %s %s: url must be absolute http or https", method, target))
	}
	return u, target, nil
}

// contentTypeJSON is the Content-Type header's value, shared by every
// request (nothing writes into a request's header values).
var contentTypeJSON = []string{"application/json"}

// newRequest builds the request without parsing rawURL again and without
// a body or context (the client of its scheme adds them): its URL is the
// shared parsed one, not to be modified; its header map sized for the
// headers a webhook sets.
func (e *Executor) newRequest(method, rawURL string, extraHeaders int) (*http.Request, error) {
	p, ok := e.targets.get(rawURL)
	if !ok { // not through parse (a caller that checked nothing): parse now
		var err error
		if p, err = e.parse(method, rawURL, ""); err != nil {
			return nil, err
		}
	}
	if !domain.IsHTTPToken(method) {
		return nil, domain.Permanent(fmt.Errorf("webhook: %s %s: build request: invalid method %q", method, p.target, method))
	}
	h := make(http.Header, 8+extraHeaders)
	h["User-Agent"] = e.userAgent
	h["Content-Type"] = contentTypeJSON
	req := &http.Request{
		Method:     method,
		URL:        p.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       p.url.Host,
	}
	if u := p.url.User; u != nil { // as http.Client does; a configured Authorization header replaces it
		password, _ := u.Password()
		req.SetBasicAuth(u.Username(), password)
	}
	return req, nil
}

// idKey names an observer's action.
type idKey struct{ observer, action string }

// idSuffix is domain.DeliveryIDSuffix, computed once per observer and action.
func (e *Executor) idSuffix(observer, action string) string {
	k := idKey{observer, action}
	s, ok := e.ids.get(k)
	if !ok {
		s = domain.DeliveryIDSuffix(observer, action)
		e.ids.put(k, s)
	}
	return s
}

// memoLimit bounds each of an Executor's memos: the values come from
// configuration (URLs, secrets, observer and action names), which a reload
// may change; past the limit a value is computed each time.
const memoLimit = 1024

// memo is a bounded map of values computed from configuration. Safe for
// concurrent use; the zero memo is empty.
type memo[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]V
}

func (c *memo[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *memo[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= memoLimit {
		return
	}
	if c.m == nil {
		c.m = make(map[K]V)
	}
	c.m[k] = v
}
