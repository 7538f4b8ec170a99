package operate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// ErrNotReady is what Healthcheck returns (wrapped) when the service
// answers that it is not ready.
var ErrNotReady = errors.New("not ready")

// Healthcheck asks the service running with cfg whether it is ready: GET
// /readyz at http.listen (an unspecified address such as 0.0.0.0 is
// reached on loopback), within timeout. It returns the service's word per
// dependency. The error wraps ErrNotReady when the service answered 503
// (naming what failed), ports.ErrUnavailable when it could not be
// reached, and is a *config.ConfigError when http.listen gives nothing to
// ask (off, or port 0).
func Healthcheck(ctx context.Context, cfg config.Config, timeout time.Duration) (map[string]string, error) {
	addr, err := localAdminAddr(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, detail, err := adminhttp.NewClient("http://"+addr, "", timeout).Ready(ctx)
	if err != nil {
		return nil, fmt.Errorf("healthcheck: %w", err)
	}
	if !ok {
		var failed []string
		for _, k := range slices.Sorted(maps.Keys(detail)) {
			if v := detail[k]; v != "ok" && !strings.HasPrefix(v, "reading") && !strings.HasPrefix(v, "standby") && v != "consuming" {
				failed = append(failed, k+": "+v)
			}
		}
		return detail, fmt.Errorf("healthcheck: %s: %w: %s", addr, ErrNotReady, strings.Join(failed, "; "))
	}
	return detail, nil
}

// localAdminAddr is where this machine reaches the admin server of cfg.
func localAdminAddr(cfg config.Config) (string, error) {
	listen := cfg.HTTP.Listen
	if listen == "" {
		return "", &config.ConfigError{File: cfg.File, Key: "http.listen", Msg: "the admin HTTP server is off: there is no /readyz to ask"}
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", &config.ConfigError{File: cfg.File, Key: "http.listen", Msg: err.Error()}
	}
	if port == "0" {
		return "", &config.ConfigError{File: cfg.File, Key: "http.listen", Msg: "port 0 is chosen at start: set a fixed port to check"}
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port), nil
}
