// Package admin holds the operator use cases: the persisted state of a
// deployment (Status), moving a reader's checkpoint under its lease
// (MoveCheckpoint, the one lease-guarded implementation, used by Replay and
// by the admin API's checkpoint PUT), replaying since a time, the
// dead-letter commands (list, show, remove, stats, retry, retry-all) and
// the dry run of an event (DryRun), and retention (Retention: what the
// prune command and the service's periodic prune delete). The CLI (cmd/fraiseql-observer) and the
// admin HTTP API (adapters/adminhttp) both call them; bootstrap builds them
// from ports.
//
// The package imports domain, ports and application only, so every use
// case runs on the memory adapters as well as on PostgreSQL. Results are
// plain report types whose JSON is what `--json` prints and what the admin
// API answers.
package admin
