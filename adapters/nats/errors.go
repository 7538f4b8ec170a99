package nats

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// interpretError translates a client error at the boundary: a missing
// stream or consumer wraps ports.ErrNotFound, a connection problem
// (closed, disconnected, timed out, no responders) wraps
// ports.ErrUnavailable, and a message the bus refuses whatever the retry
// (larger than max_payload or the stream's message size, an invalid
// subject) wraps domain.ErrPermanent. op names what was attempted.
func interpretError(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("nats: %s: %w", op, err)
	case refused(err):
		return fmt.Errorf("nats: %s: %w: %w", op, domain.ErrPermanent, err)
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

// JetStream API error codes of a message the stream refuses for its size.
const (
	jsMessageTooLarge jetstream.ErrorCode = 10054 // message size exceeds maximum allowed
	jsHeaderTooLarge  jetstream.ErrorCode = 10097 // header size exceeds maximum allowed
)

// refused reports errors that publishing the same message again cannot
// get past.
func refused(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) || errors.Is(err, nats.ErrInvalidMsg) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jsMessageTooLarge || apiErr.ErrorCode == jsHeaderTooLarge)
}
