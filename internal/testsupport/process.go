package testsupport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// exitTimeout bounds the wait for a signalled process to be gone: a
// correctness timeout for a loaded machine, not a speed target.
const exitTimeout = 30 * time.Second

// Process is a child process started by a test (a service under test, a
// private redis-server). The test's end kills it if it still runs.
type Process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error   // cmd.Wait's result, set before done is closed
	output *Buffer // the end of stdout and stderr, when cmd had neither set
}

// StartProcess starts cmd and waits for it in the background. When cmd
// has neither Stdout nor Stderr set, the end of its output is kept for the
// failure messages of WaitListening.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	var output *Buffer
	if cmd.Stdout == nil && cmd.Stderr == nil {
		output = &Buffer{Max: 4096}
		cmd.Stdout, cmd.Stderr = output, output
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), output: output}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, p.cmd.Path, err)
	}
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit error (nil for exit status 0); valid once Done
// is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Exited reports, without waiting, whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL (no chance to clean up) and waits until the process
// is gone. The test fails unless the process died of that signal.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", p.cmd.Path, err)
	}
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		t.Fatalf("%s did not die within %v of SIGKILL", p.cmd.Path, exitTimeout)
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("%s ended with %v, want killed by SIGKILL", p.cmd.Path, p.err)
	}
}

// Terminate sends SIGTERM, waits up to timeout for the process to exit and
// returns its exit status.
func (p *Process) Terminate(t testing.TB, timeout time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.cmd.Path, err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v of SIGTERM", p.cmd.Path, timeout)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("wait for %s: %v", p.cmd.Path, p.err)
		return -1
	}
}

// WaitListening waits until addr accepts TCP connections. The test fails
// when the process exits first or after timeout.
func (p *Process) WaitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			t.Fatalf("%s exited before listening on %s: %v; its output ends: %s", p.cmd.Path, addr, p.err, p.outputTail())
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within %v: %v", p.cmd.Path, addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Binary returns the path of the program name on PATH. Without it the test
// is skipped, except under CI=true where a missing program is a failure.
func Binary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: %v", name, err)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return path
}

// FreePort returns a loopback TCP port nothing listens on right now, for a
// server a test starts. It is picked below the kernel's ephemeral range
// (ip_local_port_range), where outgoing connections take their source
// ports: a port found free there can be taken by some client between this
// check and the server's bind, and the server then fails to start (seen
// with a nats-server of a cluster while many tests ran). A port is handed
// out once per test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := portRange()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		if err := ln.Close(); err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		portsGiven[port] = true
		return port
	}
	t.Fatalf("no free port in %d-%d after 1000 tries", lo, hi)
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// portRange is where FreePort looks: from 10000 up to the start of the
// ephemeral range (32768 by Linux's default), or 20000-30000 when that
// range cannot be read or starts too low.
func portRange() (lo, hi int) {
	lo, hi = 20000, 30000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return lo, hi
	}
	if start, err := strconv.Atoi(f[0]); err == nil && start > 12000 {
		return 10000, start
	}
	return lo, hi
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// PeakRSS is the process's peak resident set size (VmHWM of
// /proc/<pid>/status), in bytes; it fails the test where /proc is missing
// or the process has exited.
func (p *Process) PeakRSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		t.Fatalf("read peak RSS: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parse VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// outputTail is the end of the process's output for a failure message,
// "(none)" when it was not kept or is empty.
func (p *Process) outputTail() string {
	if p.output == nil {
		return "(none)"
	}
	if out := strings.TrimSpace(p.output.String()); out != "" {
		return out
	}
	return "(none)"
}
