// Package ports declares the outbound interfaces the application needs:
// event sources, checkpoints, dead letters, leases and action executors.
// Adapters implement them; every adapter of a port passes the shared
// conformance suite in ports/porttest. (In this project "ports" means the
// driven side only; inbound entry points are the CLI and admin HTTP in
// bootstrap.)
package ports

import "errors"

// ErrNotFound is returned when a named item does not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps failures to reach a backing service (connection
// refused, timeout) so callers can tell outages from bad requests.
var ErrUnavailable = errors.New("backing service unavailable")

// ErrNotMigrated wraps failures caused by a store whose tables or schema
// do not exist: the database was not migrated.
var ErrNotMigrated = errors.New("store is not set up")
