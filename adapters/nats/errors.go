package nats

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// interpretError translates a client error at the boundary: a missing
// stream or consumer wraps ports.ErrNotFound, a connection problem
// (closed, disconnected, timed out, no responders) wraps
// ports.ErrUnavailable. op names what was attempted.
func interpretError(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("nats: %s: %w", op, err)
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("nats: %s: %w: %w", op, ports.ErrNotFound, err)
	case unavailable(err):
		return fmt.Errorf("nats: %s: %w: %w", op, ports.ErrUnavailable, err)
	}
	return fmt.Errorf("nats: %s: %w", op, err)
}

func unavailable(err error) bool {
	for _, target := range []error{
		context.DeadlineExceeded,
		nats.ErrConnectionClosed, nats.ErrDisconnected, nats.ErrNoServers, nats.ErrTimeout,
		nats.ErrNoResponders, nats.ErrConnectionDraining, nats.ErrConnectionReconnecting,
		nats.ErrStaleConnection, nats.ErrMaxConnectionsExceeded,
		jetstream.ErrNoStreamResponse, jetstream.ErrAsyncPublishTimeout, jetstream.ErrTooManyStalledMsgs,
		jetstream.ErrConnectionClosed, jetstream.ErrServerShutdown, jetstream.ErrJetStreamPublisherClosed,
		jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}
