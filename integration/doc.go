// Package integration holds the end-to-end suites: they start the real
// service through bootstrap.New and App.Run (or the built binary) against
// the real PostgreSQL, one fresh database per test, and check what users
// observe: webhook receipts, the dead-letter table, checkpoints, /metrics,
// /readyz, logs and exit codes. The load harness is in load_test.go
// (benchmarks, run only with -bench).
package integration
