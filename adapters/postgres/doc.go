// Package postgres implements the ports on PostgreSQL with pgx/v5: the
// commit-order-safe change-log source, checkpoints, dead letters, leases,
// migrations and the watch/unwatch capture triggers. It is the only package
// that imports pgx.
package postgres
