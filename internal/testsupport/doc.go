// Package testsupport holds the helpers that tests of several packages
// share: a settable clock, a buffer safe for concurrent writers, a slog
// handler that records, child processes a test can SIGKILL (and whose
// peak memory it can read), a TCP proxy on loopback whose link a test can
// freeze or cut, and private servers a test may crash and restart: a
// PostgreSQL cluster (initdb, pg_ctl) and nats-server processes, alone or
// as a JetStream cluster.
//
// Only tests import it. It imports the standard library only: no adapter,
// no driver, no service client, so any package's tests may use it without
// bending the import rules.
package testsupport
