package adminhttp_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application/admin"
)

// pprof is absent unless turned on, and then only behind the token.
func TestPProfIsOptInAndBehindTheToken(t *testing.T) {
	t.Parallel()
	serve := func(t *testing.T, token string, on bool) *httptest.Server {
		t.Helper()
		logger := slog.New(slog.DiscardHandler)
		store := &admin.Store{Name: "memory", Checkpoints: memory.NewCheckpoints(), Leases: memory.NewLease(nil)}
		h, err := adminhttp.NewHandler(adminhttp.Config{
			Token: token, Runtime: &runtime{ready: true}, Logger: logger, PProf: on,
			State:   &admin.State{Topology: "memory", Stores: admin.Stores{Primary: store}, Holder: "me", LeaseTTL: time.Minute, Logger: logger},
			Metrics: http.NotFoundHandler(),
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv
	}
	get := func(t *testing.T, srv *httptest.Server, path, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	cases := []struct {
		name     string
		on       bool
		token    string // configured
		send     string // sent
		path     string
		wantCode int
		wantBody string
	}{
		{"off by default", false, "tok", "tok", "/debug/pprof/", http.StatusNotFound, ""},
		{"on, no token sent", true, "tok", "", "/debug/pprof/", http.StatusUnauthorized, ""},
		{"on, wrong token", true, "tok", "nope", "/debug/pprof/goroutine?debug=1", http.StatusUnauthorized, ""},
		{"on, no token configured", true, "", "", "/debug/pprof/", http.StatusForbidden, ""},
		{"on, token", true, "tok", "tok", "/debug/pprof/", http.StatusOK, "goroutine"},
		{"on, token, a profile", true, "tok", "tok", "/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine profile"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := serve(t, c.token, c.on)
			code, body := get(t, srv, c.path, c.send)
			if code != c.wantCode || !strings.Contains(body, c.wantBody) {
				t.Errorf("GET %s: %d %.200q, want %d with %q", c.path, code, body, c.wantCode, c.wantBody)
			}
		})
	}
}
