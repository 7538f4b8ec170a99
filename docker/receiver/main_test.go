package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Each delivery is printed with its path, webhook-id and body, and
// answered 204.
func TestReceiverPrintsDeliveries(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	srv := httptest.NewServer(handler(&out))
	t.Cleanup(srv.Close)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/hooks/orders", strings.NewReader(`{"order": "o-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("webhook-id", "msg_1")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d, want 204", resp.StatusCode)
	}
	if got := out.String(); !strings.Contains(got, `POST /hooks/orders webhook-id=msg_1 {"order": "o-1"}`) {
		t.Errorf("printed %q", got)
	}
}
