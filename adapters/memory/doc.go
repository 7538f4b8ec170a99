// Package memory implements the ports in process memory for the `memory`
// topology and local development: an append-only event log fed by the admin
// API or a JSON-lines file, checkpoints, dead letters and leases. These are
// product adapters, not test doubles: they pass the same conformance suites
// as the durable ones, but nothing survives a restart.
package memory
