package actions

import (
	"github.com/fraiseql/fraiseql-observer/adapters/email"
	"github.com/fraiseql/fraiseql-observer/adapters/logaction"
	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	redisadapter "github.com/fraiseql/fraiseql-observer/adapters/redis"
	"github.com/fraiseql/fraiseql-observer/adapters/slack"
	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// Previewers describe each action type for the dry run, as the executors
// of Build would run it; none of them connects to anything.
func Previewers(cfg config.Config) map[domain.ActionType]ports.ActionPreviewer {
	return map[domain.ActionType]ports.ActionPreviewer{
		domain.ActionWebhook:  webhook.Previewer,
		domain.ActionLog:      logaction.Previewer,
		domain.ActionSlack:    slack.Previewer,
		domain.ActionCache:    redisadapter.Previewer,
		domain.ActionDatabase: postgres.FunctionPreviewer,
		domain.ActionNATS:     natsadapter.Previewer,
		domain.ActionEmail:    email.NewPreviewer(cfg.Email.From),
	}
}

// DebugEvent dry-runs input (an event envelope as JSON) against the
// observers of cfg, resolving *_env values through lookupEnv: each action
// is described by its adapter's previewer, without side effects.
func DebugEvent(cfg config.Config, lookupEnv func(string) (string, bool), input []byte) (admin.DebugReport, error) {
	ev, computed, err := admin.DecodeEvent(input)
	if err != nil {
		return admin.DebugReport{}, err
	}
	observers, err := LoadObservers(cfg, lookupEnv)
	if err != nil {
		return admin.DebugReport{}, err
	}
	return admin.DryRun{Previewers: Previewers(cfg)}.Run(ev, computed, observers), nil
}
