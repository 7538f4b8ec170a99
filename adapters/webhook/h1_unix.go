//go:build unix

package webhook

import (
	"errors"
	"syscall"
)

// closedOrTalking reports whether the server closed hc, or sent something
// on it, while it was idle: either way it cannot carry the next request
// (net/http's client learns this from the read it keeps pending on every
// idle connection; here one non-blocking peek before reuse).
func (hc *h1Conn) closedOrTalking() bool {
	if hc.br.Buffered() > 0 {
		return true
	}
	sc, ok := hc.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var bad bool
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read (EAGAIN) is a live, quiet connection; a byte,
		// the end (0 bytes, no error) or an error is not.
		bad = !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EWOULDBLOCK)
		return true // answered: do not wait for the connection to become readable
	})
	return bad || err != nil
}
