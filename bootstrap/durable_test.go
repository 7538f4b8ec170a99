package bootstrap_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// switchReceiver answers 503 while down, else 204, and records the event
// ids it accepted in order.
type switchReceiver struct {
	down atomic.Bool
	mu   sync.Mutex
	ok   []string
}

func (r *switchReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(req.Body).Decode(&ev)
	if r.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.mu.Lock()
	r.ok = append(r.ok, ev.ID)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *switchReceiver) accepted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ok...)
}

// TestMemoryTopologyDurableDelivery runs durable delivery in the memory
// topology: actions park in the in-process retry store while the receiver
// is down (an entity's later events behind its first), the admin API
// shows them (state, endpoints, deliveries), they are delivered in order
// once the receiver is back, and resend delivers an event again.
func TestMemoryTopologyDurableDelivery(t *testing.T) {
	t.Parallel()
	recv := &switchReceiver{}
	recv.down.Store(true)
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	b := setupMemory(t, `
[[observers]]
name = "hooks"
entity = "Order"
events = ["INSERT"]
[observers.retry]
in_memory_attempts = 1
initial_delay = "100ms"
max_delay = "300ms"
[[observers.actions]]
type = "webhook"
url = "`+srv.URL+`/hook"
`)
	base := "http://" + b.app.HTTPAddr()
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	var lines bytes.Buffer
	for _, e := range []struct{ id, entity string }{{"e1", "a"}, {"e2", "a"}, {"e3", "b"}} {
		lines.WriteString(`{"id":"` + e.id + `","event_type":"INSERT","entity_type":"Order","entity_id":"` + e.entity + `","data":{}}` + "\n")
	}
	if code, body := call(http.MethodPost, "/api/observers/events", lines.String()); code != http.StatusAccepted {
		t.Fatalf("post events = %d %s", code, body)
	}
	var state struct {
		Databases []struct {
			Parked *struct {
				Due     int `json:"due"`
				Waiting int `json:"waiting"`
			} `json:"parked_retries"`
		} `json:"databases"`
	}
	waitFor(t, "three events parked (e2 behind e1)", func() bool {
		_, body := call(http.MethodGet, "/api/observers/state", "")
		if err := json.Unmarshal([]byte(body), &state); err != nil {
			t.Fatalf("state: %v: %s", err, body)
		}
		p := state.Databases[0].Parked
		return p != nil && p.Due == 2 && p.Waiting == 1
	})
	if code, body := call(http.MethodGet, "/api/observers/endpoints", ""); code != http.StatusOK || !strings.Contains(body, `"parked": 3`) {
		t.Errorf("endpoints = %d %s, want the receiver's endpoint with 3 parked", code, body)
	}
	recv.down.Store(false)
	waitFor(t, "the parked events delivered", func() bool { return len(recv.accepted()) == 3 })
	got := recv.accepted()
	if i1, i2 := indexOf(got, "e1"), indexOf(got, "e2"); i1 > i2 {
		t.Errorf("delivered %v: e2 before e1 of the same entity", got)
	}
	var failures string
	waitFor(t, "the first attempts' failures in the delivery log", func() bool {
		_, failures = call(http.MethodGet, "/api/observers/deliveries?status=503", "")
		return strings.Contains(failures, `"event_id": "e1"`) && strings.Contains(failures, `"event_id": "e3"`)
	})
	if strings.Contains(failures, `"event_id": "e2"`) {
		t.Errorf("e2 was attempted while e1 of its entity was parked:\n%s", failures)
	}
	if code, body := call(http.MethodPost, "/api/observers/events/e3/resend", ""); code != http.StatusOK || !strings.Contains(body, `"succeeded": 1`) {
		t.Fatalf("resend = %d %s", code, body)
	}
	if got := recv.accepted(); len(got) != 4 || got[3] != "e3" {
		t.Errorf("accepted %v after resend, want e3 again", got)
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
