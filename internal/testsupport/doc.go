// Package testsupport holds the helpers that tests of several packages
// share: a settable clock, a buffer safe for concurrent writers, a slog
// handler that records, child processes a test can SIGKILL, and a TCP
// proxy on loopback whose link a test can freeze or cut.
//
// Only tests import it. It imports the standard library only: no adapter,
// no driver, no service client, so any package's tests may use it without
// bending the import rules.
package testsupport
