// Package ports declares the outbound interfaces the application needs;
// each doc comment is the contract:
//
//   - EventSource: read the change log (or another source) in a stable
//     order, and wait for more; Position orders it.
//   - CheckpointStore, and CheckpointLister for operators: per reader, the
//     position up to which every event is finished; saves can be fenced
//     by the reader's lease.
//   - Lease, and LeaseInspector for operators: one active holder per name.
//   - DeadLetterSink, DeadLetterStore (administration) and
//     DeadLetterCounter: parked failed work.
//   - ChangeLogInspector: backlog, counts, the first position since a
//     time, the oldest open transaction (status and replay).
//   - ActionExecutor: run one action; ActionPreviewer: describe it
//     without running it (the dry run).
//   - Deduplicator and ResultCache: process an event once; do not repeat
//     an action that succeeded.
//   - RetryStore and RetryCounter: unfinished actions parked durably, in
//     order per observer and entity; DeliveryLog: each attempt's outcome
//     (with ResponseNote, how an executor reports the answer);
//     EndpointStates: each endpoint's circuit state, for operators;
//     DeliveryMetrics.
//   - EventPublisher, EventConsumer and Delivery: the bus of the NATS
//     topologies; messages carry Headers (the trace context).
//   - Metrics: what the application measures; RetentionMetrics: what
//     retention deleted.
//   - Tracer and Span: spans and the trace context (NopTracer records
//     nothing).
//   - Pruner: delete, in bounded batches, the rows a retention Cutoff lets
//     go, or count them.
//
// Adapters implement them; every adapter of a port passes the shared
// conformance suite in ports/porttest (memory and PostgreSQL, Redis or
// NATS alike). Pruner (PostgreSQL only: the change log, dead letters, the
// delivery log) and ActionPreviewer (one per action kind, each describing
// its own action) are tested by each adapter's own tests. In this project "ports" means the
// driven side only; the inbound side is the CLI (cmd) and the admin HTTP
// API (adapters/adminhttp), over the use cases of application/admin.
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

// ErrLeaseLost marks work refused or ended because its holder no longer
// holds the lease it runs under (another holder took it, or it expired):
// a fenced checkpoint save, a reader term.
var ErrLeaseLost = errors.New("lease not held")
