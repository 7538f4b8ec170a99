// Package nats is the NATS JetStream adapter of the nats-distributed and
// multi-database topologies: a Publisher (ports.EventPublisher) used by the
// bridge, a Consumer (ports.EventConsumer) shared by the workers through one
// durable pull consumer, the stream set-up that applies every configured
// setting, and an embeddable JetStream server for local use.
//
// Every message carries Nats-Msg-Id = event id, so a republish within the
// stream's duplicate window stores nothing new. A delivery is acknowledged
// only when the handler says so (Ack waits for the server's confirmation).
// Connection failures are returned wrapping ports.ErrUnavailable.
//
// This is the only package that imports nats.go and nats-server.
package nats
