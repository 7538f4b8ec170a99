// Package httpguard is the outbound network policy of fraiseql-observer: an
// SSRF guard that refuses connections to loopback, private, link-local and
// other non-public addresses unless configuration allows them.
//
// The check runs at dial time on the resolved IP address, so host names
// (including "localhost"), DNS rebinding and redirects cannot get around it.
package httpguard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrForbiddenAddress is returned (wrapped with the address) when the
// policy refuses a destination. Match with errors.Is.
var ErrForbiddenAddress = errors.New("forbidden address")

// Policy decides which destination addresses outbound connections may use.
// The zero value is the strict default: only public unicast addresses.
type Policy struct {
	// AllowPrivate allows loopback, private (RFC 1918, fc00::/7), CGNAT
	// 100.64.0.0/10, local-use NAT64, unspecified and reserved addresses.
	// Link-local (169.254.0.0/16, fe80::/10) and multicast stay refused
	// even then; only an Allowed prefix opens them.
	AllowPrivate bool
	// Allowed networks are permitted whatever their class (e.g. 127.0.0.1/32
	// for tests, or an internal receiver's subnet), except the cloud
	// metadata addresses (see MetadataAddresses): those open only when
	// listed one by one, as a single address.
	Allowed []netip.Prefix
}

// ParsePolicy builds a Policy from configuration values. Each allowed entry
// is a CIDR prefix ("10.1.0.0/16") or a single address ("127.0.0.1",
// "::1"); a bad entry is an error naming it.
func ParsePolicy(allowPrivate bool, allowed []string) (Policy, error) {
	p := Policy{AllowPrivate: allowPrivate}
	for i, raw := range allowed {
		s := strings.TrimSpace(raw)
		if strings.Contains(s, "/") {
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				return Policy{}, fmt.Errorf("httpguard: allowed[%d] %q is not a CIDR prefix: %w", i, raw, err)
			}
			if pfx.Addr().Is4In6() {
				bits := pfx.Bits() - 96
				if bits < 0 {
					return Policy{}, fmt.Errorf("httpguard: allowed[%d] %q: IPv4-mapped prefix shorter than /96", i, raw)
				}
				pfx = netip.PrefixFrom(pfx.Addr().Unmap(), bits)
			}
			p.Allowed = append(p.Allowed, pfx.Masked())
			continue
		}
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return Policy{}, fmt.Errorf("httpguard: allowed[%d] %q is not an IP address or CIDR prefix: %w", i, raw, err)
		}
		if addr.Zone() != "" {
			return Policy{}, fmt.Errorf("httpguard: allowed[%d] %q: zoned addresses are not supported", i, raw)
		}
		addr = addr.Unmap()
		p.Allowed = append(p.Allowed, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return p, nil
}

// Address classes. A prefix list is small enough to scan linearly.
var (
	// alwaysForbidden is refused unless an Allowed prefix covers it.
	alwaysForbidden = []classPrefix{
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
		{netip.MustParsePrefix("fe80::/10"), "link-local"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
		{netip.MustParsePrefix("ff00::/8"), "multicast"},
	}
	// private is refused unless AllowPrivate is set or an Allowed prefix
	// covers it.
	private = []classPrefix{
		{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
		{netip.MustParsePrefix("::/128"), "unspecified"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
		{netip.MustParsePrefix("::1/128"), "loopback"},
		{netip.MustParsePrefix("10.0.0.0/8"), "private"},
		{netip.MustParsePrefix("172.16.0.0/12"), "private"},
		{netip.MustParsePrefix("192.168.0.0/16"), "private"},
		{netip.MustParsePrefix("fc00::/7"), "private"},
		{netip.MustParsePrefix("fec0::/10"), "private"}, // deprecated site-local
		{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
		{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},
		{netip.MustParsePrefix("198.18.0.0/15"), "reserved"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // includes broadcast
		{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	}
	// Prefixes that embed an IPv4 address the traffic may end up at.
	nat64         = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052 well-known prefix
	nat64Local    = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215 local use, any RFC 6052 length from /48
	sixToFour     = netip.MustParsePrefix("2002::/16")
	teredo        = netip.MustParsePrefix("2001::/32")
	v4Compatible  = netip.MustParsePrefix("::/96")           // deprecated ::a.b.c.d
	v4Translated  = netip.MustParsePrefix("::ffff:0:0:0/96") // SIIT ::ffff:0:a.b.c.d
	v6Unspecified = netip.IPv6Unspecified()
	v6Loopback    = netip.IPv6Loopback()
)

// MetadataAddresses are the cloud instance-metadata and credential
// endpoints the guard refuses whatever the class of their network, even
// with AllowPrivate or an Allowed prefix that covers them, unless the
// address itself is listed in Allowed. Each maps to its owner.
var MetadataAddresses = map[netip.Addr]string{
	netip.MustParseAddr("169.254.169.254"): "instance metadata (AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean, ...)",
	netip.MustParseAddr("fd00:ec2::254"):   "AWS instance metadata (IPv6)",
	netip.MustParseAddr("169.254.170.2"):   "AWS ECS task metadata and credentials",
	netip.MustParseAddr("169.254.170.23"):  "AWS EKS Pod Identity credentials",
	netip.MustParseAddr("fd00:ec2::23"):    "AWS EKS Pod Identity credentials (IPv6)",
	netip.MustParseAddr("fd20:ce::254"):    "GCP metadata server (IPv6)",
	netip.MustParseAddr("100.100.100.200"): "Alibaba Cloud instance metadata",
	netip.MustParseAddr("192.0.0.192"):     "Oracle Cloud instance metadata",
	netip.MustParseAddr("168.63.129.16"):   "Azure WireServer (host platform endpoint)",
}

type classPrefix struct {
	prefix netip.Prefix
	class  string
}

// Check returns nil when the policy lets connections reach ip, else an
// error wrapping ErrForbiddenAddress that names the address and its class.
// An IPv6 address that carries an IPv4 one (IPv4-mapped, -compatible or
// -translated, NAT64, 6to4, Teredo) is judged by the IPv4 address too.
func (p Policy) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("httpguard: invalid address: %w", ErrForbiddenAddress)
	}
	ip = ip.WithZone("").Unmap()
	embedded := embeddedIPv4(ip)
	// Metadata endpoints first: no class allowance or covering prefix
	// opens them, only the address itself listed.
	if owner, ok := MetadataAddresses[ip]; ok && !p.listed(ip) {
		return fmt.Errorf("httpguard: %s is a cloud metadata address (%s): %w", ip, owner, ErrForbiddenAddress)
	}
	for _, e := range embedded {
		if owner, ok := MetadataAddresses[e.addr]; ok && !p.listed(e.addr) && !p.listed(ip) {
			return fmt.Errorf("httpguard: %s embeds (%s) %s, a cloud metadata address (%s): %w", ip, e.how, e.addr, owner, ErrForbiddenAddress)
		}
	}
	if p.allowed(ip) {
		return nil
	}
	if class := p.refusal(ip); class != "" {
		return fmt.Errorf("httpguard: %s is %s: %w", ip, class, ErrForbiddenAddress)
	}
	for _, e := range embedded {
		if p.allowed(e.addr) {
			continue
		}
		if class := p.refusal(e.addr); class != "" {
			return fmt.Errorf("httpguard: %s embeds (%s) %s which is %s: %w", ip, e.how, e.addr, class, ErrForbiddenAddress)
		}
	}
	return nil
}

func (p Policy) allowed(ip netip.Addr) bool {
	for _, pfx := range p.Allowed {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// listed reports whether ip itself, as a single address, is Allowed.
func (p Policy) listed(ip netip.Addr) bool {
	for _, pfx := range p.Allowed {
		if pfx.IsSingleIP() && pfx.Addr() == ip {
			return true
		}
	}
	return false
}

// refusal returns the class that makes ip forbidden, or "".
func (p Policy) refusal(ip netip.Addr) string {
	for _, c := range alwaysForbidden {
		if c.prefix.Contains(ip) {
			return c.class
		}
	}
	if p.AllowPrivate {
		return ""
	}
	for _, c := range private {
		if c.prefix.Contains(ip) {
			return c.class
		}
	}
	return ""
}

// embeddedAddr is an IPv4 address carried inside an IPv6 one.
type embeddedAddr struct {
	addr netip.Addr
	how  string
}

// embeddedIPv4 returns the IPv4 addresses that traffic to ip may reach: the
// one a translation or tunnelling scheme puts inside it. For local-use
// NAT64 the prefix length is not known, so every RFC 6052 position from
// /48 on is returned.
func embeddedIPv4(ip netip.Addr) []embeddedAddr {
	if !ip.Is6() || ip.Is4In6() {
		return nil
	}
	b := ip.As16()
	v4 := func(a, b2, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b2, c, d}) }
	switch {
	case nat64.Contains(ip):
		return []embeddedAddr{{v4(b[12], b[13], b[14], b[15]), "NAT64"}}
	case nat64Local.Contains(ip):
		return []embeddedAddr{
			{v4(b[6], b[7], b[9], b[10]), "NAT64 /48"},
			{v4(b[7], b[9], b[10], b[11]), "NAT64 /56"},
			{v4(b[9], b[10], b[11], b[12]), "NAT64 /64"},
			{v4(b[12], b[13], b[14], b[15]), "NAT64 /96"},
		}
	case sixToFour.Contains(ip):
		return []embeddedAddr{{v4(b[2], b[3], b[4], b[5]), "6to4"}}
	case teredo.Contains(ip):
		// 2001:0:<server>:<flags>:<port ^ 0xffff>:<client ^ 0xffffffff>
		return []embeddedAddr{
			{v4(b[12]^0xff, b[13]^0xff, b[14]^0xff, b[15]^0xff), "Teredo client"},
			{v4(b[4], b[5], b[6], b[7]), "Teredo server"},
		}
	case v4Translated.Contains(ip):
		return []embeddedAddr{{v4(b[12], b[13], b[14], b[15]), "IPv4-translated"}}
	case v4Compatible.Contains(ip) && ip != v6Unspecified && ip != v6Loopback:
		return []embeddedAddr{{v4(b[12], b[13], b[14], b[15]), "IPv4-compatible"}}
	}
	return nil
}

// Control is a net.Dialer Control function enforcing the policy on the
// resolved address of every connection attempt.
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("httpguard: dial %s %q: unparsable address: %w", network, address, ErrForbiddenAddress)
	}
	return p.Check(ap.Addr())
}

// ClientConfig tunes the HTTP client built by NewClient. Zero values take
// the defaults noted on each field.
type ClientConfig struct {
	MaxIdleConnsPerHost   int           // default 64
	MaxIdleConns          int           // default 512
	IdleConnTimeout       time.Duration // default 90s
	DialTimeout           time.Duration // default 10s
	TLSHandshakeTimeout   time.Duration // default 10s
	ResponseHeaderTimeout time.Duration // default 0: bounded by the request context
}

// NewClient returns an HTTP client whose every connection passes p. It uses
// no proxy (a proxy would hide the destination from the guard), keeps
// connections alive and does not follow redirects: a 3xx answer is returned
// to the caller as it is. Per-request deadlines come from the request
// context.
func NewClient(p Policy, cfg ClientConfig) *http.Client {
	dialer := NewDialer(p, cfg)
	perHost := MaxIdleConnsPerHost(cfg)
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          MaxIdleConns(cfg),
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       IdleConnTimeout(cfg),
		TLSHandshakeTimeout:   cmp.Or(cfg.TLSHandshakeTimeout, 10*time.Second),
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// No Accept-Encoding: gzip: answers are only quoted (a few
		// hundred bytes) in errors and delivery logs, and asking costs a
		// header map per request.
		DisableCompression: true,
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Dialer is NewClient's dialer: a net.Dialer whose every connection
// attempt passes the policy.
type Dialer struct{ d net.Dialer }

// NewDialer returns the dialer of NewClient's connections: every address
// it connects to passes p, and an attempt gives up after cfg.DialTimeout.
func NewDialer(p Policy, cfg ClientConfig) *Dialer {
	return &Dialer{d: net.Dialer{
		Timeout:   cmp.Or(cfg.DialTimeout, 10*time.Second),
		KeepAlive: 30 * time.Second,
		ControlContext: func(ctx context.Context, network, address string, c syscall.RawConn) error {
			err := p.Control(network, address, c)
			if a, ok := ctx.Value(attemptsKey{}).(*attempts); ok && err == nil {
				a.allowed.Store(true)
			}
			return err
		},
	}}
}

// attempts records, for one DialContext, whether the policy let any of
// the host's addresses through.
type attempts struct{ allowed atomic.Bool }

type attemptsKey struct{}

// DialContext connects to address. The error wraps ErrForbiddenAddress
// only when the policy refused every address the dial tried: a host with
// a forbidden address and an allowed one that failed otherwise (refused,
// timed out) is a failure worth retrying, not a refusal of the
// destination, though the net package reports the first address's error.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	a := &attempts{}
	conn, err := d.d.DialContext(context.WithValue(ctx, attemptsKey{}, a), network, address)
	if err != nil && a.allowed.Load() && errors.Is(err, ErrForbiddenAddress) {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("httpguard: dial %s %s: %w", network, address, ctxErr)
		}
		return nil, fmt.Errorf("httpguard: dial %s %s: the policy allowed some of its addresses, and those failed (the first address's error: %v)", network, address, err)
	}
	return conn, err
}

// IdleConnTimeout is how long an idle connection of cfg's client is kept.
func IdleConnTimeout(cfg ClientConfig) time.Duration {
	return cmp.Or(cfg.IdleConnTimeout, 90*time.Second)
}

// MaxIdleConns is how many idle connections cfg's client keeps over all
// hosts (at least its per-host number).
func MaxIdleConns(cfg ClientConfig) int {
	return max(cmp.Or(cfg.MaxIdleConns, 512), MaxIdleConnsPerHost(cfg))
}

// MaxIdleConnsPerHost is how many idle connections cfg's client keeps per
// host.
func MaxIdleConnsPerHost(cfg ClientConfig) int {
	return cmp.Or(cfg.MaxIdleConnsPerHost, 64)
}
