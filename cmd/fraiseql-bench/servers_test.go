package main

import (
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
)

// A listener of this process on a loopback port is found as this
// process; a remote host, or a port nobody listens on, is not looked for.
func TestLocalServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	srv, ok := localServer("Test", "redis://127.0.0.1:"+strconv.Itoa(port)+"/0", 6379)
	if !ok || srv.pid != os.Getpid() || srv.name != "Test" {
		t.Fatalf("localServer = %+v, %v; want this process (%d)", srv, ok, os.Getpid())
	}
	if n, err := srv.cpuTicks(); err != nil || n < 0 {
		t.Errorf("cpuTicks = %d, %v", n, err)
	}
	if _, ok := localServer("Test", "postgres://db.example:"+strconv.Itoa(port)+"/x", 5432); ok {
		t.Error("a remote host was looked for")
	}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	if _, ok := localServer("Test", "nats://127.0.0.1:"+strconv.Itoa(freePort), 4222); ok {
		t.Error("a port nobody listens on was found")
	}
}

func TestListeningInodes(t *testing.T) {
	t.Parallel()
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 21234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21999 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1538 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000   106        0 30001 1 0000000000000000 20 4 30 10 -1
`
	if got := listeningInodes(table, 5432); !slices.Equal(got, []string{"21234"}) {
		t.Errorf("port 5432: %v, want the LISTEN entry's inode only", got)
	}
	if got := listeningInodes(table, 6379); !slices.Equal(got, []string{"21999"}) {
		t.Errorf("port 6379: %v", got)
	}
	if got := listeningInodes(table, 4222); got != nil {
		t.Errorf("port 4222: %v, want none", got)
	}
}

func TestParseStatCPUWithChildren(t *testing.T) {
	t.Parallel()
	stat := "2258 (postgres) S 1 2258 2258 0 -1 4194560 4000 9000 0 0 120 30 500 70 20 0 1 0 1000 0 0"
	if got, err := parseStatCPUWithChildren(stat); err != nil || got != 120+30+500+70 {
		t.Errorf("got %d, %v; want utime+stime+cutime+cstime = 720", got, err)
	}
	if _, err := parseStatCPUWithChildren("1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12"); err == nil {
		t.Error("a short line passed")
	}
}
