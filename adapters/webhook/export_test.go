package webhook

import (
	"context"
	"net"
)

// WrapCleartextConns makes e's cleartext (http://) client hand each
// connection it dials to wrap, and use what wrap returns. Call it before
// e sends anything.
func WrapCleartextConns(e *Executor, wrap func(net.Conn) net.Conn) {
	dial := e.h1.dial
	e.h1.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return wrap(c), nil
	}
}
