package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The memory topology keeps its state in the running process: `status`
// and `replay` ask the service's admin API, and a replay makes the
// service deliver the events again.
func TestCLIStatusAndReplayOnMemoryTopology(t *testing.T) {
	t.Parallel()
	recv := newReceiver(t, nil)
	configText := func(listen string) string {
		return fmt.Sprintf(`
topology = "memory"
[http]
listen = %q
[reader]
checkpoint_interval = "50ms"
lease_ttl = "3s"
[logging]
format = "json"
[security]
allowed_networks = ["127.0.0.1/32"]
[[observers]]
name = "orders"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
type = "webhook"
url = %q
`, listen, recv.URL())
	}
	env := cliEnv("FRAISEQL_ADMIN_TOKEN=tok")
	// The service takes a port of the kernel's choosing and logs it (a
	// port picked here and bound later could be taken in between); the
	// commands find it, as an operator's would, in http.listen of their
	// config: the same configuration with that port.
	svc := startService(t, env, writeFile(t, "memory.toml", configText("127.0.0.1:0")))
	addr := svc.adminAddr(t)
	file := writeFile(t, "memory.toml", configText(addr))
	waitFor(t, "service reading", func() bool { return svc.stderr.count("reader started") >= 1 })

	lines := `{"event_type":"INSERT","entity_type":"Order","entity_id":"o1","timestamp":"2020-01-01T00:00:00Z"}
{"event_type":"INSERT","entity_type":"Order","entity_id":"o2","timestamp":"2020-01-01T00:00:01Z"}`
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/api/observers/events", strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("post events = %d", resp.StatusCode)
	}
	waitFor(t, "both events delivered", func() bool { return len(recv.delivered()) == 2 })

	var rep struct {
		Topology  string `json:"topology"`
		Databases []struct {
			Checkpoints []struct {
				Name     string `json:"name"`
				Position struct {
					Seq int64 `json:"seq"`
				} `json:"position"`
			} `json:"checkpoints"`
		} `json:"databases"`
	}
	waitFor(t, "status shows the saved checkpoint", func() bool {
		stdout, _, code := cli(t, env, "status", "--config", file, "--json")
		return code == 0 && json.Unmarshal([]byte(stdout), &rep) == nil && rep.Topology == "memory" &&
			len(rep.Databases) == 1 && len(rep.Databases[0].Checkpoints) == 1 && rep.Databases[0].Checkpoints[0].Position.Seq == 2
	})
	if stdout, stderr, code := cli(t, env, "status", "--config", file); code != 0 || !strings.Contains(stdout, "held by") {
		t.Errorf("status: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	since := time.Date(2019, 12, 31, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	stdout, stderr, code := cli(t, env, "replay", "--config", file, "--since", since)
	if code != 0 || !strings.Contains(stdout, "2 row(s) will be read again") {
		t.Fatalf("replay: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	waitFor(t, "the replayed events delivered again", func() bool { return len(recv.delivered()) == 4 })

	if _, stderr, code := cli(t, env, "dlq", "list", "--config", file); code != 2 || !strings.Contains(stderr, "memory topology") {
		t.Errorf("dlq on memory: exit %d, stderr %q; want 2 naming the memory topology", code, stderr)
	}
	if _, stderr, code := cli(t, cliEnv(), "status", "--config", file); code != 2 || !strings.Contains(stderr, "FRAISEQL_ADMIN_TOKEN") {
		t.Errorf("status without the token: exit %d, stderr %q; want 2 naming the variable", code, stderr)
	}

	// A posted line that is not an event is refused and reported (not
	// stored, not dead-lettered); the line after it goes on.
	code, body := httpPost(t, "http://"+addr+"/api/observers/events", "tok",
		`{"event_type":"INSERT","entity_type":"Order"`+"\n"+`{"event_type":"INSERT","entity_type":"Order","entity_id":"o3"}`)
	var posted struct {
		Accepted, Invalid int
		InvalidLines      []struct{ Line int } `json:"invalid_lines"`
	}
	if err := json.Unmarshal([]byte(body), &posted); err != nil || code != http.StatusAccepted || posted.Accepted != 1 ||
		posted.Invalid != 1 || len(posted.InvalidLines) != 1 || posted.InvalidLines[0].Line != 1 {
		t.Errorf("post with a bad first line = %d %s", code, body)
	}
	waitFor(t, "the event after the bad line delivered", func() bool { return len(recv.delivered()) == 5 })
	if code, body := httpGetAuth(t, "http://"+addr+"/api/observers/dlq", "tok"); code != http.StatusOK || !strings.Contains(body, `"items": []`) {
		t.Errorf("dead letters after a refused line = %d %s, want none", code, body)
	}
	if code := svc.terminate(t); code != 0 {
		t.Errorf("exit status after SIGTERM = %d", code)
	}
}
