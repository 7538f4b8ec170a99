package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout bounds a child's graceful stop before it is killed.
const stopTimeout = 30 * time.Second

// child is one fraiseql-observer process.
type child struct {
	name    string
	cmd     *exec.Cmd
	mu      sync.Mutex
	port    int // the admin API's, once read from the log (adminPort)
	logPath string
	done    chan struct{}
	err     error
}

// service is the processes of one topology.
type service struct {
	children []*child
	token    string
}

// childEnv is this process's environment without FRAISEQL_* variables
// (the children read their whole configuration from the file), plus the
// admin token.
func childEnv(token string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRAISEQL_") {
			env = append(env, kv)
		}
	}
	return append(env, adminTokenEnv+"="+token)
}

// runCommand runs a one-shot command of the binary (migrate,
// validate-config) with cfgPath and returns its combined output.
func runCommand(ctx context.Context, bin, token, cfgPath string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--config", cfgPath)...)
	cmd.Env = childEnv(token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// startChild starts `bin run --config cfgPath`, its output into dir.
func startChild(bin, dir, name, cfgPath, token string) (*child, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log %s: %w", logPath, err)
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Env = childEnv(token)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		_ = f.Close()
		close(c.done)
	}()
	return c, nil
}

// adminPort is the port of the child's admin API: it listens on
// 127.0.0.1:0 (a port picked beforehand could be taken by an outgoing
// connection before the child binds it) and logs the address it got,
// which adminPort reads from its log once (an error until it is there).
func (c *child) adminPort() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.port != 0 {
		return c.port, nil
	}
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return 0, fmt.Errorf("%s: read log: %w", c.name, err)
	}
	port, ok := loggedAdminPort(b)
	if !ok {
		return 0, fmt.Errorf("%s: admin API not listening yet (no %q in its log)", c.name, adminListeningMsg)
	}
	c.port = port
	return port, nil
}

// adminListeningMsg is the service's log message with the admin API's
// address (attribute addr).
const adminListeningMsg = "admin http listening"

// loggedAdminPort finds the port in the JSON log line of
// adminListeningMsg.
func loggedAdminPort(log []byte) (int, bool) {
	for line := range bytes.Lines(log) {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Msg != adminListeningMsg {
			continue
		}
		_, p, err := net.SplitHostPort(rec.Addr)
		if err != nil {
			return 0, false
		}
		port, err := strconv.Atoi(p)
		return port, err == nil && port > 0
	}
	return 0, false
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// logTail is the end of the child's output, for error messages.
func (c *child) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// stop sends SIGTERM to every child, waits, and kills what is left.
func (s *service) stop() error {
	var errs []error
	for _, c := range s.children {
		if !c.exited() {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, c := range s.children {
		select {
		case <-c.done:
		case <-time.After(stopTimeout):
			_ = c.cmd.Process.Kill()
			<-c.done
			errs = append(errs, fmt.Errorf("%s did not stop within %v after SIGTERM", c.name, stopTimeout))
		}
	}
	return errors.Join(errs...)
}

// alive returns an error naming a child that has exited.
func (s *service) alive() error {
	for _, c := range s.children {
		if c.exited() {
			return fmt.Errorf("%s exited: %v\n%s", c.name, c.err, c.logTail())
		}
	}
	return nil
}

// cpuTicks is the CPU time of every child so far, in clock ticks.
func (s *service) cpuTicks() (int64, error) {
	var sum int64
	for _, c := range s.children {
		n, err := procCPUTicks(c.cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

const (
	// settleQuiet: the service counts as settled after a drain once its
	// processes used at most one clock tick of CPU within this.
	settleQuiet = 250 * time.Millisecond
	// settleMax bounds the wait for it; a service still busy then is
	// measured as it is.
	settleMax = 20 * time.Second
)

// settle waits until the service's processes are idle: at most one tick
// of CPU within quiet, or limit passed. A steady phase that started
// while the service was still busy after a drain (writing the drain's
// delivery records, returning memory) would measure that work's delays
// too; on the development machine the service was idle within one
// interval after each drain so far. It returns how long it waited.
func (s *service) settle(ctx context.Context, quiet, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	prev, err := s.cpuTicks()
	if err != nil {
		return 0, err
	}
	for time.Since(start) < limit {
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(quiet):
		}
		now, err := s.cpuTicks()
		if err != nil {
			return 0, err
		}
		if now-prev <= 1 {
			break
		}
		prev = now
	}
	return time.Since(start), nil
}

// peakRSS is the sum of the children's peak resident sets, in kB.
func (s *service) peakRSS() (int64, error) {
	var sum int64
	for _, c := range s.children {
		n, err := procPeakRSS(c.cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// get asks a child's admin API for path with the admin token.
func (s *service) get(ctx context.Context, c *child, path string, timeout time.Duration) (*http.Response, error) {
	port, err := c.adminPort()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("request %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("GET %s of %s: %w", path, c.name, err)
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error { err := c.ReadCloser.Close(); c.cancel(); return err }

// waitPath waits until every child answers 200 on path (/healthz: the
// admin API is up; /readyz: ready), up to limit.
func (s *service) waitPath(ctx context.Context, path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, c := range s.children {
		for {
			if err := s.alive(); err != nil {
				return err
			}
			resp, err := s.get(ctx, c, path, time.Second)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not answering 200 on %s within %v (last: %v)", c.name, path, limit, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for %s: %w", path, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// profile fetches a CPU profile and an allocation profile (what was
// allocated during the same d) of every child and writes them to dir as
// <label>-<child>.pprof and <label>-<child>.allocs.pprof.
func (s *service) profile(ctx context.Context, dir, label string, d time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, 2*len(s.children))
	for i, c := range s.children {
		base := filepath.Join(dir, label+"-"+c.name)
		wg.Go(func() { errs[2*i] = s.profileOne(ctx, c, "profile", base+".pprof", d) })
		wg.Go(func() { errs[2*i+1] = s.profileOne(ctx, c, "allocs", base+".allocs.pprof", d) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// profileOne fetches /debug/pprof/<kind>?seconds=d from c into path.
func (s *service) profileOne(ctx context.Context, c *child, kind, path string, d time.Duration) error {
	resp, err := s.get(ctx, c, fmt.Sprintf("/debug/pprof/%s?seconds=%d", kind, int(d/time.Second)), d+30*time.Second)
	if err != nil {
		return fmt.Errorf("%s profile: %w", kind, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s profile of %s: %s: %s", kind, c.name, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("%s profile: %w", kind, err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("%s profile of %s: %w", kind, c.name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s profile: %w", kind, err)
	}
	return nil
}
