package ports

// DeliveryMetrics receives what durable delivery measures: parked
// retries, endpoint health and the delivery log. Implementations must be
// safe for concurrent use and cheap: some calls are on the hot path.
type DeliveryMetrics interface {
	// Parked counts an item parked in the retry store, by state.
	Parked(state RetryState)
	// RetrySettled counts a parked item the retry runner settled:
	// "completed" (nothing left), "rescheduled" (some action waits
	// again) or "released" (deferred or shut down, unchanged).
	RetrySettled(outcome string)
	// RetryItems records how many items are parked, by state.
	RetryItems(due, waiting int64)
	// EndpointState records an endpoint's circuit state ("closed",
	// "open", "half_open"), counting the transition.
	EndpointState(endpoint, state string)
	// EndpointRemoved drops an endpoint no action uses any more (after a
	// reload): its state is no longer reported.
	EndpointRemoved(endpoint string)
	// EndpointDeferred counts an action not attempted because of its
	// endpoint; reason is a domain.DeferReason.
	EndpointDeferred(endpoint, reason string)
	// DeliveriesLogged counts delivery records written to the log.
	DeliveriesLogged(n int)
	// DeliveriesDropped counts delivery records dropped (the writer's
	// buffer was full, or the log refused them).
	DeliveriesDropped(n int)
}

// NopDeliveryMetrics discards measurements.
type NopDeliveryMetrics struct{}

func (NopDeliveryMetrics) Parked(RetryState)               {}
func (NopDeliveryMetrics) RetrySettled(string)             {}
func (NopDeliveryMetrics) RetryItems(int64, int64)         {}
func (NopDeliveryMetrics) EndpointState(string, string)    {}
func (NopDeliveryMetrics) EndpointRemoved(string)          {}
func (NopDeliveryMetrics) EndpointDeferred(string, string) {}
func (NopDeliveryMetrics) DeliveriesLogged(int)            {}
func (NopDeliveryMetrics) DeliveriesDropped(int)           {}
