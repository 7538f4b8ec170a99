package testsupport

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NATSServer is a private nats-server process with JetStream (file store
// in its own temp directory) on free loopback ports: the client port, a
// monitoring port (readiness through /healthz) and, in a cluster, a route
// port. A test may SIGKILL it and start it again on the same ports and
// store. The machine's own server is never touched. The test's end kills
// it and removes its store.
type NATSServer struct {
	name       string
	bin        string
	dir        string
	port       int
	httpPort   int
	routePort  int
	routes     []int // the other nodes' route ports
	clusterTag string
	proc       *Process
	t          testing.TB
}

// StartNATS starts one JetStream server. Without nats-server on PATH the
// test is skipped, except under CI=true.
func StartNATS(t testing.TB) *NATSServer {
	t.Helper()
	s := newNATSServer(t, "n1")
	s.Start(t)
	s.WaitHealthy(t, 30*time.Second)
	return s
}

// StartNATSCluster starts n JetStream servers joined by routes into one
// cluster and waits until each reports JetStream healthy (a meta leader
// elected).
func StartNATSCluster(t testing.TB, n int) []*NATSServer {
	t.Helper()
	nodes := make([]*NATSServer, n)
	for i := range nodes {
		nodes[i] = newNATSServer(t, fmt.Sprintf("n%d", i+1))
		nodes[i].routePort = FreePort(t)
		nodes[i].clusterTag = "fraiseql-test"
	}
	for i, s := range nodes {
		for j, o := range nodes {
			if i != j {
				s.routes = append(s.routes, o.routePort)
			}
		}
	}
	for _, s := range nodes {
		s.Start(t)
	}
	for _, s := range nodes {
		s.WaitHealthy(t, time.Minute)
	}
	return nodes
}

func newNATSServer(t testing.TB, name string) *NATSServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "fraiseql-test-nats-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return &NATSServer{name: name, bin: Binary(t, "nats-server"), dir: dir, port: FreePort(t), httpPort: FreePort(t), t: t}
}

// Name is the server's name (server_name: n1, n2, ...), as JetStream
// reports a stream's leader.
func (s *NATSServer) Name() string { return s.name }

// URL is the client address.
func (s *NATSServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// URLs joins the client addresses of servers with commas (a client's
// server list).
func URLs(servers []*NATSServer) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// Start starts the server (again, after Kill) with its ports and store.
func (s *NATSServer) Start(t testing.TB) {
	t.Helper()
	conf := fmt.Sprintf("server_name: %s\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n}\n",
		s.name, s.port, s.httpPort, filepath.Join(s.dir, "store"))
	if s.clusterTag != "" {
		routes := make([]string, len(s.routes))
		for i, p := range s.routes {
			routes[i] = fmt.Sprintf("\"nats-route://127.0.0.1:%d\"", p)
		}
		conf += fmt.Sprintf("cluster {\n  name: %s\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n", s.clusterTag, s.routePort, strings.Join(routes, ", "))
	}
	path := filepath.Join(s.dir, "server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatalf("write nats config: %v", err)
	}
	cmd := exec.Command(s.bin, "-c", path)
	s.proc = StartProcess(t, cmd)
	s.proc.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", s.port), 30*time.Second)
}

// Kill sends SIGKILL and waits until the server is gone.
func (s *NATSServer) Kill(t testing.TB) {
	t.Helper()
	s.proc.Kill(t)
}

// WaitHealthy waits until the monitoring endpoint reports the server and
// its JetStream healthy (in a cluster: a meta leader elected, its streams
// current).
func (s *NATSServer) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", s.httpPort)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		ok := err == nil && resp.StatusCode == http.StatusOK
		if err == nil {
			_ = resp.Body.Close()
		}
		cancel()
		if ok {
			return
		}
		if s.proc.Exited() {
			t.Fatalf("nats-server %s exited: %v", s.name, s.proc.Err())
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s not healthy within %v (last: %v)", s.name, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
