//go:build !unix

package webhook

// closedOrTalking reports whether hc holds unread bytes; elsewhere than
// on unix a closed idle connection is found by the request itself, which
// is then sent once more on a new connection.
func (hc *h1Conn) closedOrTalking() bool { return hc.br.Buffered() > 0 }
