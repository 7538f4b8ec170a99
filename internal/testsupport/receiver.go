package testsupport

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Request is one request a Receiver got.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
}

// Receiver is an HTTP server on 127.0.0.1 standing in for a webhook
// receiver. The first path segment chooses the answer:
//
//	/status/<code>/...  answers <code> (a 3xx with Location: /elsewhere)
//	/hang/...           answers nothing until the client gives up
//	anything else       answers 204
//
// Every request is recorded. Safe for concurrent use.
type Receiver struct {
	*httptest.Server

	mu       sync.Mutex
	reqs     []Request
	hung     chan struct{} // closed when the first /hang request arrives
	hungOnce sync.Once
}

// StartReceiver starts a receiver, closed when the test ends.
func StartReceiver(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{hung: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, Request{Method: req.Method, Path: req.URL.Path, RawQuery: req.URL.RawQuery, Header: req.Header.Clone(), Body: body})
	r.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/"), "/")
	switch parts[0] {
	case "hang":
		r.hungOnce.Do(func() { close(r.hung) })
		<-req.Context().Done()
	case "status":
		code := http.StatusInternalServerError
		if len(parts) > 1 {
			if c, err := strconv.Atoi(parts[1]); err == nil {
				code = c
			}
		}
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// Requests returns the requests received so far, oldest first.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Hung is closed once a /hang request has arrived.
func (r *Receiver) Hung() <-chan struct{} { return r.hung }
