package adminhttp_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestClient(t *testing.T) {
	t.Parallel()
	b := setup(t, "tok")
	ctx := t.Context()
	for _, age := range []time.Duration{time.Hour, time.Minute} {
		if _, err := b.src.Append(ctx, domain.Event{EventType: domain.EventInsert, EntityType: "Order", EntityID: "o", Timestamp: time.Now().Add(-age)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.cps.Save(ctx, "default", ports.Position{Seq: 2}); err != nil {
		t.Fatal(err)
	}
	c := adminhttp.NewClient(b.srv.URL, "tok", 5*time.Second)

	rep, err := c.Status(ctx)
	if err != nil || rep.Topology != "memory" || len(rep.Databases) != 1 || rep.Databases[0].Checkpoints[0].Position.Seq != 2 {
		t.Fatalf("Status = %+v, %v", rep, err)
	}

	if held, err := b.lease.Acquire(ctx, "reader:default", "replica-7", time.Minute); err != nil || !held {
		t.Fatal(held, err)
	}
	if _, err := c.Replay(ctx, "", time.Now().Add(-2*time.Hour)); !errors.Is(err, admin.ErrReaderRunning) || !strings.Contains(err.Error(), "POST /api/observers/replay: ") {
		t.Errorf("Replay under a held lease = %v, want ErrReaderRunning", err)
	}
	var re *admin.RequestError
	if _, err := c.Replay(ctx, "nope", time.Now()); !errors.As(err, &re) {
		t.Errorf("Replay of an unknown reader = %v, want a RequestError", err)
	}
	if err := b.lease.Release(ctx, "reader:default", "replica-7"); err != nil {
		t.Fatal(err)
	}
	res, err := c.Replay(ctx, "", time.Now().Add(-2*time.Hour))
	if err != nil || !res.Moved || res.New != (ports.Position{}) || res.Reread != 2 {
		t.Errorf("Replay = %+v, %v; want moved to the start", res, err)
	}

	if _, err := adminhttp.NewClient(b.srv.URL, "wrong", time.Second).Status(ctx); err == nil {
		t.Error("Status with a wrong token succeeded")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := adminhttp.NewClient("http://"+addr, "tok", time.Second).Status(ctx); !errors.Is(err, ports.ErrUnavailable) {
		t.Errorf("Status of a service that is not running = %v, want ErrUnavailable", err)
	}
}

// TestClientWaitsForLongCalls: replay and resend are answered when their
// work is done, which may take longer than the client's timeout for the
// other calls; they are bounded by the caller's context and by
// LongCallFactor times that timeout (a service that stalls them held the
// command for ever).
func TestClientWaitsForLongCalls(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := adminhttp.NewClient(srv.URL, "tok", 100*time.Millisecond)
	ctx := t.Context()
	if _, err := c.Status(ctx); !errors.Is(err, ports.ErrUnavailable) {
		t.Errorf("Status slower than the timeout = %v, want ErrUnavailable", err)
	}
	if _, err := c.Replay(ctx, "", time.Now()); err != nil {
		t.Errorf("Replay slower than the timeout: %v, want it waited for", err)
	}
	if _, err := c.Resend(ctx, admin.ResendRequest{EventID: "e"}); err != nil {
		t.Errorf("Resend slower than the timeout: %v, want it waited for", err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c.Replay(short, "", time.Now()); err == nil {
		t.Error("Replay past its context's deadline succeeded")
	}

	stalled := make(chan struct{})
	stalling := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-stalled }))
	defer stalling.Close()
	defer close(stalled)
	const timeout = 50 * time.Millisecond
	sc := adminhttp.NewClient(stalling.URL, "tok", timeout)
	for name, call := range map[string]func() error{
		"Replay": func() error { _, err := sc.Replay(ctx, "", time.Now()); return err },
		"Resend": func() error { _, err := sc.Resend(ctx, admin.ResendRequest{EventID: "e"}); return err },
	} {
		start := time.Now()
		err := call()
		if took := time.Since(start); !errors.Is(err, ports.ErrUnavailable) || took < adminhttp.LongCallFactor*timeout || took > time.Minute {
			t.Errorf("%s of a service that stalls: %v after %v, want ErrUnavailable after %v", name, err, took, adminhttp.LongCallFactor*timeout)
		}
	}
}

// The admin client never goes through a proxy from the environment: its
// bearer token would travel in clear to it. (Go skips proxies for loopback
// hosts anyway, so a test server cannot show it; the transport says it.)
func TestClientUsesNoProxy(t *testing.T) {
	t.Parallel()
	c := adminhttp.NewClient("http://10.0.0.1:8079", "token", 0)
	for name, hc := range map[string]*http.Client{"short": adminhttp.HTTPClientOf(c), "long": adminhttp.LongHTTPClientOf(c)} {
		tr, ok := hc.Transport.(*http.Transport)
		if !ok || tr.Proxy != nil {
			t.Errorf("%s calls: transport %T with a proxy function, want none", name, hc.Transport)
		}
	}
}
