package domain

import (
	"errors"
	"net/url"
	"strings"
	"time"
)

// Endpoint names where an action delivers, for endpoint health (circuit
// breaker, rate limit, concurrency cap) and for waking parked retries: the
// scheme, host and port of a webhook or Slack target ("https://host:443"),
// otherwise the action itself ("<type>:<observer>/<action>"). Email
// actions deliver to the configured SMTP server, which only the
// composition root knows: it names those endpoints itself.
func Endpoint(obs *Observer, act *Action) string {
	var raw string
	switch {
	case act.Type == ActionWebhook && act.Webhook != nil:
		raw = act.Webhook.URL
	case act.Type == ActionSlack && act.Slack != nil:
		raw = act.Slack.WebhookURL
	}
	if raw != "" {
		if ep, ok := URLEndpoint(raw); ok {
			return ep
		}
	}
	return string(act.Type) + ":" + obs.Name + "/" + act.Name
}

// URLEndpoint returns the scheme, host and port of an http or https URL
// ("https://example.com:443"; default ports filled in, IPv6 hosts in
// brackets, scheme and host lower-cased); ok is false for anything else.
func URLEndpoint(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	switch {
	case scheme != "http" && scheme != "https":
		return "", false
	case port == "" && scheme == "http":
		port = "80"
	case port == "":
		port = "443"
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + port, true
}

// DeferReason says why an action was not attempted.
type DeferReason string

// The deferral reasons.
const (
	DeferOpen        DeferReason = "open"        // the endpoint's circuit is open
	DeferRate        DeferReason = "rate"        // over the endpoint's rate limit
	DeferConcurrency DeferReason = "concurrency" // the endpoint's concurrency cap is reached
)

// DeferredError is returned instead of running an action that its
// endpoint cannot take now. It is neither a success nor a failure: no
// attempt was made, none is counted, and the action may run again from
// Until on.
type DeferredError struct {
	Endpoint string
	Reason   DeferReason
	Until    time.Time
}

func (e *DeferredError) Error() string {
	return "deferred (" + string(e.Reason) + "): endpoint " + e.Endpoint + " until " + e.Until.Format(time.RFC3339Nano)
}

// AsDeferred returns the deferral err carries, if any.
func AsDeferred(err error) (*DeferredError, bool) {
	if err == nil { // the common case, without errors.As's allocation
		return nil, false
	}
	var d *DeferredError
	ok := errors.As(err, &d)
	return d, ok
}
