// Package httpguard is the outbound network policy of fraiseql-observer: an
// SSRF guard that refuses connections to loopback, private, link-local and
// other non-public addresses unless configuration allows them.
//
// The check runs at dial time on the resolved IP address, so host names
// (including "localhost"), DNS rebinding and redirects cannot get around it.
package httpguard

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
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
	// 100.64.0.0/10, unspecified and reserved addresses. Link-local
	// (169.254.0.0/16 with the cloud metadata address 169.254.169.254,
	// fe80::/10) and multicast stay refused even then; only an Allowed
	// prefix opens them.
	AllowPrivate bool
	// Allowed networks are permitted whatever their class (e.g. 127.0.0.1/32
	// for tests, or an internal receiver's subnet).
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
	}
	// Prefixes that embed an IPv4 address the traffic may end up at.
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

type classPrefix struct {
	prefix netip.Prefix
	class  string
}

// Check returns nil when the policy lets connections reach ip, else an
// error wrapping ErrForbiddenAddress that names the address and its class.
func (p Policy) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("httpguard: invalid address: %w", ErrForbiddenAddress)
	}
	ip = ip.WithZone("").Unmap()
	if p.allowed(ip) {
		return nil
	}
	if class := p.refusal(ip); class != "" {
		return fmt.Errorf("httpguard: %s is %s: %w", ip, class, ErrForbiddenAddress)
	}
	// An IPv6 address that embeds an IPv4 one (NAT64, 6to4) is judged by
	// the embedded address too.
	if embedded, ok := embeddedIPv4(ip); ok && !p.allowed(embedded) {
		if class := p.refusal(embedded); class != "" {
			return fmt.Errorf("httpguard: %s embeds %s which is %s: %w", ip, embedded, class, ErrForbiddenAddress)
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

func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
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
	dialer := &net.Dialer{
		Timeout:   cmp.Or(cfg.DialTimeout, 10*time.Second),
		KeepAlive: 30 * time.Second,
		Control:   p.Control,
	}
	perHost := cmp.Or(cfg.MaxIdleConnsPerHost, 64)
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(cmp.Or(cfg.MaxIdleConns, 512), perHost),
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       cmp.Or(cfg.IdleConnTimeout, 90*time.Second),
		TLSHandshakeTimeout:   cmp.Or(cfg.TLSHandshakeTimeout, 10*time.Second),
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
