package redis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// privateCluster starts a three-master Redis Cluster from redis-server and
// redis-cli and returns its seed addresses. Without them the test is
// skipped, except under CI=true. Each node's cluster bus listens on a port
// of its own from testsupport.FreePort (--cluster-port, Redis 7): the
// default, client port + 10000, is reserved by no one and may lie in the
// kernel's ephemeral range or be handed to another server of this binary.
func privateCluster(t *testing.T) []string {
	t.Helper()
	cli := testsupport.Binary(t, "redis-cli")
	server := testsupport.Binary(t, "redis-server")
	requireRedis7(t, server)
	var addrs []string
	procs := map[string]*testsupport.Process{}
	for i := range 3 {
		port, busPort := testsupport.FreePort(t), testsupport.FreePort(t)
		dir := filepath.Join(t.TempDir(), strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		procs[addr] = testsupport.StartProcess(t, exec.Command(server, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(busPort),
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--save", "", "--appendonly", "no", "--dir", dir))
		addrs = append(addrs, addr)
	}
	for _, a := range addrs {
		procs[a].WaitListening(t, a, listenTimeout)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	out, err := exec.CommandContext(ctx, cli, append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	host, port, _ := net.SplitHostPort(addrs[0])
	deadline := time.Now().Add(30 * time.Second) // correctness timeout for the cluster to agree
	for {
		info, _ := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "cluster", "info").Output()
		if strings.Contains(string(info), "cluster_state:ok") {
			return addrs
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not reach state ok:\n%s", info)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// requireRedis7 checks that redis-server at path is version 7 or later
// (--cluster-port). An older one skips the test, except under CI=true
// where it is a failure.
func requireRedis7(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", path, err)
	}
	// "Redis server v=7.0.15 sha=..."
	_, v, _ := strings.Cut(string(out), " v=")
	major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	switch {
	case err != nil:
		t.Fatalf("no version in %s --version: %q", path, out)
	case major >= 7:
		return
	case os.Getenv("CI") == "true":
		t.Fatalf("redis-server %d: a private cluster needs 7 or later (--cluster-port)", major)
	default:
		t.Skipf("redis-server %d: a private cluster needs 7 or later (--cluster-port)", major)
	}
}

// TestCluster runs the suites and a multi-slot invalidation against a
// three-master cluster: scripts route by their key, and SCAN+UNLINK covers
// every master without cross-slot commands.
func TestCluster(t *testing.T) {
	t.Parallel()
	addrs := privateCluster(t)
	open := func(t *testing.T, prefix string) *Client {
		t.Helper()
		c, err := Open(t.Context(), Config{Addrs: addrs, Cluster: true, KeyPrefix: prefix})
		if err != nil {
			t.Fatalf("Open cluster: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	t.Run("Deduplicator", func(t *testing.T) {
		t.Parallel()
		porttest.RunDeduplicator(t, redisFeatures, dedupHarness(open))
	})
	t.Run("ResultCache", func(t *testing.T) {
		t.Parallel()
		porttest.RunResultCache(t, redisFeatures, cacheHarness(open))
	})
	t.Run("ClaimLookUp", func(t *testing.T) {
		t.Parallel()
		porttest.RunClaimLookUp(t, claimLookUpHarness(open))
	})
	t.Run("InvalidateAcrossMasters", func(t *testing.T) {
		t.Parallel()
		c := open(t, newPrefix())
		var keep []string
		for i := range 1000 {
			keep = append(keep, fmt.Sprintf("order:%d", i))
			for _, k := range []string{fmt.Sprintf("product:%d:detail", i), keep[i]} {
				if err := c.rdb.Set(t.Context(), c.prefix+k, "v", time.Minute).Err(); err != nil {
					t.Fatalf("SET %s: %v", k, err)
				}
			}
		}
		inv := NewInvalidator(c, nil)
		ev := &domain.Event{ID: "ev-1", Data: map[string]any{"id": "7"}}
		if err := inv.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, cacheAction(c.prefix, "product:*:detail")); err != nil {
			t.Fatalf("Execute glob: %v", err)
		}
		if err := inv.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, cacheAction(c.prefix, "order:{{ id }}")); err != nil {
			t.Fatalf("Execute exact: %v", err)
		}
		keep = slices.DeleteFunc(keep, func(k string) bool { return k == "order:7" })
		slices.Sort(keep)
		var (
			left   []string
			leftMu sync.Mutex // ForEachMaster calls in parallel
		)
		err := c.cluster.ForEachMaster(t.Context(), func(ctx context.Context, node *goredis.Client) error {
			keys, err := node.Keys(ctx, domain.GlobEscape(c.prefix)+"*").Result()
			for _, k := range keys {
				leftMu.Lock()
				left = append(left, strings.TrimPrefix(k, c.prefix))
				leftMu.Unlock()
			}
			return err
		})
		if err != nil {
			t.Fatalf("list keys: %v", err)
		}
		slices.Sort(left)
		if !slices.Equal(left, keep) {
			t.Fatalf("%d keys left, want the %d order keys other than order:7", len(left), len(keep))
		}
		if err := inv.Execute(t.Context(), ev, &domain.Observer{Name: "o"}, cacheAction(c.prefix, "order:*")); err != nil {
			t.Fatalf("Execute cleanup: %v", err)
		}
	})
}
