package main

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// This file finds the local PostgreSQL, Redis and NATS servers the
// harness measures against, so that the drain's machine CPU can be told
// apart per server ("of which nats-server ..."): a server on a loopback
// address of this machine is the process listening on its port, and its
// CPU is that process's with its children's (PostgreSQL's backends).

// server is one local server process whose CPU the harness reads.
type server struct {
	name string // PostgreSQL, Redis, NATS
	pid  int
}

// localServer finds the process listening on rawURL's port (defaultPort
// when the URL names none) when its host is a loopback address; ok false
// when it is remote, or cannot be found (another user's process whose
// descriptors this one may not read).
func localServer(name, rawURL string, defaultPort int) (server, bool) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return server{}, false
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return server{}, false
	}
	port := defaultPort
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return server{}, false
		}
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, ino := range listeningInodes(string(b), port) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return server{}, false
	}
	pid, ok := socketOwner(inodes)
	return server{name: name, pid: pid}, ok
}

// listeningInodes returns the socket inodes of the LISTEN entries (state
// 0A) on port in the text of /proc/net/tcp or tcp6.
func listeningInodes(table string, port int) []string {
	var out []string
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(strings.NewReader(table))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		if len(f) < 10 || f[3] != "0A" || !strings.HasSuffix(f[1], want) {
			continue
		}
		out = append(out, f[9])
	}
	return out
}

// socketOwner is the process holding one of the sockets inodes.
func socketOwner(inodes map[string]bool) (int, bool) {
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, d := range dirs {
		fds, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(d, fd.Name()))
			if err != nil {
				continue
			}
			if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
				pid, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
				return pid, err == nil
			}
		}
	}
	return 0, false
}

// cpuTicks is the server's CPU so far, in clock ticks: the process's own,
// its ended children's (waited for: PostgreSQL's backends that ended) and
// its running children's.
func (s server) cpuTicks() (int64, error) {
	total, err := readStatTicks(s.pid, parseStatCPUWithChildren)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", s.name, err)
	}
	for _, child := range childPIDs(s.pid) {
		if n, err := procCPUTicks(child); err == nil { // a child may end meanwhile
			total += n
		}
	}
	return total, nil
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	var out []int
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	for f := range strings.FieldsSeq(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}
