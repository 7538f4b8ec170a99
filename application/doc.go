// Package application runs the observer's use cases on top of the domain
// and the ports. It imports domain and ports only.
//
//   - Processor: an event against the observers, their conditions and
//     actions, with scheduled retries and dead-lettering; Dispatcher
//     routes each action to the executor of its type.
//   - Scheduler: keeps events of one entity in order while different
//     entities run in parallel.
//   - Reader: moves events from a source to a Handler (the scheduler or
//     the bridge) and the checkpoint only past finished events;
//     RunWithLease runs it while this process holds the lease, and Pauser
//     lets an operator pause it.
//   - Bridge: publishes change-log events to the bus, finished on the
//     broker's acknowledgement. Worker: processes deliveries from the bus,
//     acking only finished events.
//   - Dedup (a processor decorator) and CachingExecutor (an executor
//     decorator): an event processed once, an action that succeeded not
//     repeated; both fail open.
//   - DeadLetterRetrier: re-runs one dead-lettered action and reports the
//     real outcome.
//   - Durable retries: the processor parks unfinished actions in a
//     RetryStore after their in-memory attempts (BlockedKeys holds an
//     entity's later events behind them); RetryRunner runs the due ones;
//     Maintenance repairs the store and prunes the delivery log.
//   - EndpointGuard (an executor decorator): circuit breaker, rate limit
//     and concurrency cap per endpoint. DeliveryRecorder and
//     DeliveryWriter: the delivery log. Resender: an operator's resend.
//   - TracedProcessor, TracedExecutor and TracedHandler: decorators that
//     record an event's span, each action attempt's and the bridge's
//     publication over ports.Tracer.
//
// The operator use cases (status, checkpoint moves, replay, dead-letter
// commands, the dry run) are in application/admin.
package application
