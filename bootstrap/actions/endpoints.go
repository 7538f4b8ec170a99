package actions

import (
	"fmt"

	"github.com/fraiseql/fraiseql-observer/adapters/email"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
)

// EndpointOf names where act of obs delivers, as endpoint health and the
// [[delivery.endpoints]] overrides name it: email actions to the
// configured SMTP server ("smtp://host:port"), the rest as domain.Endpoint
// says.
func EndpointOf(cfg config.Config, obs *domain.Observer, act *domain.Action) string {
	if act.Type == domain.ActionEmail && cfg.Email.Configured() {
		return "smtp://" + email.ServerAddr(cfg.Email.Host, cfg.Email.Port, email.TLSMode(cfg.Email.TLS))
	}
	return domain.Endpoint(obs, act)
}

// UnusedEndpointOverrides names each [[delivery.endpoints]] entry that
// matches no action of observers (a typo, a forgotten port, an observer
// since removed): its limits would silently apply to nothing. One message
// per entry, naming the key and the endpoint as the service names it.
func UnusedEndpointOverrides(cfg config.Config, observers []domain.Observer) []string {
	if len(cfg.Delivery.Endpoints) == 0 {
		return nil
	}
	used := map[string]bool{}
	for i := range observers {
		for j := range observers[i].Actions {
			used[EndpointOf(cfg, &observers[i], &observers[i].Actions[j])] = true
		}
	}
	var out []string
	for i, e := range cfg.Delivery.Endpoints {
		name := config.NormalizeEndpoint(e.Endpoint)
		if !used[name] {
			out = append(out, fmt.Sprintf("delivery.endpoints[%d]: endpoint %q (%q as the service names it) matches no configured action; its limits apply to nothing", i, e.Endpoint, name))
		}
	}
	return out
}
