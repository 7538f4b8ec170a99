// Package application runs the observer's use cases on top of the domain
// and the ports: the processor (event → observers → conditions → actions →
// summary, with scheduled retries and dead-lettering), the scheduler that
// keeps events of one entity in order while different entities run in
// parallel, and the reader loop that moves the checkpoint only past
// finished events. It imports domain and ports only.
package application
