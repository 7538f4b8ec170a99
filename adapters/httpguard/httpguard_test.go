package httpguard_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/httpguard"
)

func TestPolicyCheck(t *testing.T) {
	t.Parallel()

	strict := httpguard.Policy{}
	permissive := httpguard.Policy{AllowPrivate: true}
	loopbackAllowed := mustPolicy(t, false, "127.0.0.1/32", "::1")
	metadataAllowed := mustPolicy(t, true, "169.254.169.254")
	coveringPrefixes := mustPolicy(t, true, "fd00::/8", "100.64.0.0/10", "169.254.0.0/16", "192.0.0.0/24", "168.63.0.0/16", "64:ff9b::/96")
	listedMetadata := mustPolicy(t, true, "fd00:ec2::254", "100.100.100.200", "::ffff:192.0.0.192")

	tests := []struct {
		name   string
		policy httpguard.Policy
		ip     string
		ok     bool
	}{
		{"public v4", strict, "93.184.216.34", true},
		{"public v6", strict, "2606:2800:220:1:248:1893:25c8:1946", true},
		{"loopback v4", strict, "127.0.0.1", false},
		{"loopback v4 other", strict, "127.10.0.1", false},
		{"loopback v6", strict, "::1", false},
		{"mapped loopback", strict, "::ffff:127.0.0.1", false},
		{"rfc1918 10", strict, "10.0.0.1", false},
		{"rfc1918 172", strict, "172.16.5.4", false},
		{"rfc1918 192", strict, "192.168.1.1", false},
		{"just outside 172.16/12", strict, "172.32.0.1", true},
		{"unique local", strict, "fd00::1", false},
		{"cgnat", strict, "100.64.0.1", false},
		{"unspecified v4", strict, "0.0.0.0", false},
		{"unspecified v6", strict, "::", false},
		{"broadcast", strict, "255.255.255.255", false},
		{"metadata", strict, "169.254.169.254", false},
		{"link-local v6", strict, "fe80::1", false},
		{"link-local v6 with zone", strict, "fe80::1%eth0", false},
		{"multicast v4", strict, "224.0.0.1", false},
		{"multicast v6", strict, "ff02::1", false},
		{"nat64 of private", strict, "64:ff9b::a00:1", false},
		{"nat64 of public", strict, "64:ff9b::5db8:d822", true},
		{"6to4 of loopback", strict, "2002:7f00:1::1", false},
		{"private allowed", permissive, "10.0.0.1", true},
		{"loopback allowed", permissive, "127.0.0.1", true},
		{"cgnat allowed", permissive, "100.64.0.1", true},
		{"metadata refused though private allowed", permissive, "169.254.169.254", false},
		{"link-local v6 refused though private allowed", permissive, "fe80::1", false},
		{"multicast refused though private allowed", permissive, "239.1.1.1", false},
		{"allowed prefix v4", loopbackAllowed, "127.0.0.1", true},
		{"allowed prefix v6", loopbackAllowed, "::1", true},
		{"allowed prefix mapped", loopbackAllowed, "::ffff:127.0.0.1", true},
		{"outside allowed prefix", loopbackAllowed, "127.0.0.2", false},
		{"other private outside allowed", loopbackAllowed, "10.0.0.1", false},
		{"allowed metadata", metadataAllowed, "169.254.169.254", true},
		{"other link-local not allowed", metadataAllowed, "169.254.1.1", false},

		// Cloud metadata endpoints stay refused with private networks
		// allowed and under covering prefixes; only listing opens them.
		{"aws imds v6 though private allowed", permissive, "fd00:ec2::254", false},
		{"aws eks pod identity v6 though private allowed", permissive, "fd00:ec2::23", false},
		{"aws ecs task metadata though private allowed", permissive, "169.254.170.2", false},
		{"aws eks pod identity though private allowed", permissive, "169.254.170.23", false},
		{"gcp metadata v6 though private allowed", permissive, "fd20:ce::254", false},
		{"alibaba metadata though private allowed", permissive, "100.100.100.200", false},
		{"oracle metadata though private allowed", permissive, "192.0.0.192", false},
		{"azure wireserver though public", strict, "168.63.129.16", false},
		{"azure wireserver neighbour is public", strict, "168.63.129.17", true},
		{"other unique local allowed", permissive, "fd00:ec2::1", true},
		{"other cgnat allowed", permissive, "100.100.100.201", true},
		{"aws imds v6 under a covering prefix", coveringPrefixes, "fd00:ec2::254", false},
		{"alibaba under a covering prefix", coveringPrefixes, "100.100.100.200", false},
		{"aws imds under a covering prefix", coveringPrefixes, "169.254.169.254", false},
		{"oracle under a covering prefix", coveringPrefixes, "192.0.0.192", false},
		{"azure wireserver under a covering prefix", coveringPrefixes, "168.63.129.16", false},
		{"covering prefix opens the rest", coveringPrefixes, "169.254.1.1", true},
		{"listed aws imds v6", listedMetadata, "fd00:ec2::254", true},
		{"listed alibaba", listedMetadata, "100.100.100.200", true},
		{"listed oracle as mapped", listedMetadata, "192.0.0.192", true},
		{"unlisted metadata beside listed ones", listedMetadata, "169.254.169.254", false},

		// IPv6 forms that carry an IPv4 address are judged by it.
		{"mapped metadata though private allowed", permissive, "::ffff:169.254.169.254", false},
		{"mapped alibaba though private allowed", permissive, "::ffff:100.100.100.200", false},
		{"nat64 of metadata", permissive, "64:ff9b::a9fe:a9fe", false},
		{"nat64 of alibaba", permissive, "64:ff9b::6464:64c8", false},
		{"nat64 of metadata under an allowed nat64 prefix", coveringPrefixes, "64:ff9b::a9fe:a9fe", false},
		{"nat64 of private under an allowed nat64 prefix", coveringPrefixes, "64:ff9b::a00:1", true},
		{"nat64 of private with private allowed", permissive, "64:ff9b::a00:1", true},
		{"local-use nat64 is private", strict, "64:ff9b:1::5db8:d822", false},
		{"local-use nat64 of public with private allowed", permissive, "64:ff9b:1::5db8:d822", true},
		{"local-use nat64 /96 of metadata", permissive, "64:ff9b:1::a9fe:a9fe", false},
		{"local-use nat64 /64 of metadata", permissive, "64:ff9b:1:0:a9:fea9:fe00:0", false},
		{"local-use nat64 /48 of metadata", permissive, "64:ff9b:1:a9fe:a9:fe00::", false},
		{"local-use nat64 /56 of link-local", permissive, "64:ff9b:1:a9:fe:101::", false},
		{"teredo client metadata", permissive, "2001:0:4136:e378:8000:63bf:5601:5601", false},
		{"teredo client private", strict, "2001:0:4136:e378:8000:63bf:f5ff:fffe", false},
		{"teredo client private with private allowed", permissive, "2001:0:4136:e378:8000:63bf:f5ff:fffe", true},
		{"teredo client public", strict, "2001:0:4136:e378:8000:63bf:a247:27dd", true},
		{"teredo server loopback", strict, "2001:0:7f00:1:8000:63bf:a247:27dd", false},
		{"6to4 of metadata", permissive, "2002:a9fe:a9fe::1", false},
		{"6to4 of private", strict, "2002:a00:1::1", false},
		{"6to4 of private with private allowed", permissive, "2002:a00:1::1", true},
		{"6to4 of public", strict, "2002:5db8:d822::1", true},
		{"ipv4-compatible metadata", permissive, "::a9fe:a9fe", false},
		{"ipv4-compatible private", strict, "::a00:1", false},
		{"ipv4-compatible private with private allowed", permissive, "::a00:1", true},
		{"ipv4-compatible public", strict, "::5db8:d822", true},
		{"ipv4-translated metadata", permissive, "::ffff:0:a9fe:a9fe", false},
		{"ipv4-translated loopback", strict, "::ffff:0:7f00:1", false},
		{"ipv4-translated public", strict, "::ffff:0:5db8:d822", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ip := netip.MustParseAddr(tt.ip)
			err := tt.policy.Check(ip)
			if tt.ok {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want nil", tt.ip, err)
				}
				return
			}
			if !errors.Is(err, httpguard.ErrForbiddenAddress) {
				t.Fatalf("Check(%s) = %v, want ErrForbiddenAddress", tt.ip, err)
			}
			if !strings.Contains(err.Error(), ip.WithZone("").Unmap().String()) {
				t.Errorf("error %q does not name the address", err)
			}
		})
	}

	t.Run("invalid address", func(t *testing.T) {
		t.Parallel()
		if err := permissive.Check(netip.Addr{}); !errors.Is(err, httpguard.ErrForbiddenAddress) {
			t.Fatalf("Check(zero) = %v, want ErrForbiddenAddress", err)
		}
	})
}

func TestParsePolicy(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		allowed []string
		want    []netip.Prefix
		wantErr string // substring naming the bad entry
	}{
		{name: "none"},
		{
			name:    "addresses and prefixes",
			allowed: []string{"127.0.0.1", " ::1 ", "10.1.2.3/16", "::ffff:192.168.0.0/112"},
			want: []netip.Prefix{
				netip.MustParsePrefix("127.0.0.1/32"),
				netip.MustParsePrefix("::1/128"),
				netip.MustParsePrefix("10.1.0.0/16"),
				netip.MustParsePrefix("192.168.0.0/16"),
			},
		},
		{name: "bad address", allowed: []string{"127.0.0.1", "localhost"}, wantErr: `allowed[1] "localhost"`},
		{name: "bad prefix", allowed: []string{"10.0.0.0/33"}, wantErr: `allowed[0] "10.0.0.0/33"`},
		{name: "zoned", allowed: []string{"fe80::1%eth0"}, wantErr: `allowed[0] "fe80::1%eth0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := httpguard.ParsePolicy(true, tt.allowed)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePolicy error = %v, want one containing %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePolicy: %v", err)
			}
			if !p.AllowPrivate {
				t.Error("AllowPrivate lost")
			}
			if len(p.Allowed) != len(tt.want) {
				t.Fatalf("Allowed = %v, want %v", p.Allowed, tt.want)
			}
			for i := range tt.want {
				if p.Allowed[i] != tt.want[i] {
					t.Errorf("Allowed[%d] = %v, want %v", i, p.Allowed[i], tt.want[i])
				}
			}
		})
	}
}

func TestClient(t *testing.T) {
	t.Parallel()

	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://10.0.0.1/elsewhere", http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "hello")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	allowLoopback := mustPolicy(t, false, "127.0.0.1/32", "::1/128")

	tests := []struct {
		name       string
		policy     httpguard.Policy
		url        string
		wantStatus int  // 0: expect ErrForbiddenAddress
		newConn    bool // whether the server must see a connection
	}{
		{name: "loopback refused", policy: httpguard.Policy{}, url: "http://127.0.0.1:" + port + "/"},
		{name: "localhost refused", policy: httpguard.Policy{}, url: "http://localhost:" + port + "/"},
		{name: "loopback allowed", policy: allowLoopback, url: "http://127.0.0.1:" + port + "/", wantStatus: http.StatusOK, newConn: true},
		{name: "private allowed", policy: httpguard.Policy{AllowPrivate: true}, url: "http://127.0.0.1:" + port + "/", wantStatus: http.StatusOK, newConn: true},
		{name: "redirect not followed", policy: allowLoopback, url: "http://127.0.0.1:" + port + "/redirect", wantStatus: http.StatusFound, newConn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the connection counter is shared.
			before := conns.Load()
			client := httpguard.NewClient(tt.policy, httpguard.ClientConfig{})
			t.Cleanup(client.CloseIdleConnections)
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if tt.wantStatus == 0 {
				if !errors.Is(err, httpguard.ErrForbiddenAddress) {
					t.Fatalf("Do = %v, want ErrForbiddenAddress", err)
				}
			} else {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
				}
			}
			if got := conns.Load() > before; got != tt.newConn {
				t.Errorf("server saw a new connection = %v, want %v", got, tt.newConn)
			}
		})
	}
}

func mustPolicy(t *testing.T, allowPrivate bool, allowed ...string) httpguard.Policy {
	t.Helper()
	p, err := httpguard.ParsePolicy(allowPrivate, allowed)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
