// Package actions is the part of the composition root that knows the
// action adapters: per action type, the executor a process registers (over
// the connections it has), the previewer the dry run asks, and the checks
// of configured values the adapters own. The service (bootstrap.App) and
// the one-shot commands (bootstrap/operate) build their executors here.
package actions

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/fraiseql/fraiseql-observer/adapters/email"
	"github.com/fraiseql/fraiseql-observer/adapters/httpguard"
	"github.com/fraiseql/fraiseql-observer/adapters/logaction"
	natsadapter "github.com/fraiseql/fraiseql-observer/adapters/nats"
	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	redisadapter "github.com/fraiseql/fraiseql-observer/adapters/redis"
	"github.com/fraiseql/fraiseql-observer/adapters/slack"
	"github.com/fraiseql/fraiseql-observer/adapters/webhook"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// Deps are the connections the action executors run on (nil when the
// process has none).
type Deps struct {
	DB    *postgres.DB
	Redis *redisadapter.Client
	NATS  *natsadapter.Conn
	// Propagate sends the trace context on webhooks (nil: tracing off).
	Propagate func(context.Context, http.Header)
}

// Checks are the action adapters' checks config.LoadObservers runs on
// configured values: the Standard Webhooks format of every signing
// secret, the fixed addresses of email actions.
func Checks() config.Checks {
	return config.Checks{
		SigningSecret: func(s string) error {
			_, err := webhook.ParseSigningSecret(s)
			return err
		},
		Email: email.CheckAction,
	}
}

// LoadObservers loads and compiles the observers of cfg (the main file's
// and observers_file's), resolving *_env values through lookupEnv, with
// the action adapters' checks: what run would refuse, validate-config
// refuses.
func LoadObservers(cfg config.Config, lookupEnv func(string) (string, bool)) ([]domain.Observer, error) {
	return config.LoadObservers(cfg, lookupEnv, Checks())
}

// Policy is the outbound network policy of [security]; an entry of
// security.allowed_networks that is not a network or address is a
// *config.ConfigError naming the key.
func Policy(cfg config.Config) (httpguard.Policy, error) {
	policy, err := httpguard.ParsePolicy(cfg.Security.AllowPrivateNetworks, cfg.Security.AllowedNetworks)
	if err != nil {
		return policy, &config.ConfigError{File: cfg.File, Key: "security.allowed_networks", Msg: err.Error()}
	}
	return policy, nil
}

// Build registers one executor per action type the connections and the
// configuration allow; closeFn releases them.
func Build(cfg config.Config, env func(string) (string, bool), logger *slog.Logger, deps Deps) (_ *application.Dispatcher, closeFn func(), _ error) {
	policy, err := Policy(cfg)
	if err != nil {
		return nil, nil, err
	}
	wh, err := webhook.NewExecutor(webhook.Config{Policy: policy, Propagate: deps.Propagate}, logger)
	if err != nil {
		return nil, nil, err
	}
	executors := map[domain.ActionType]ports.ActionExecutor{
		domain.ActionWebhook: wh,
		domain.ActionLog:     logaction.NewExecutor(logger),
		domain.ActionSlack:   slack.NewExecutor(wh, logger),
	}
	closeFn = wh.Close
	if cfg.Email.Configured() {
		mailer, err := newEmailExecutor(cfg, env, logger)
		if err != nil {
			wh.Close()
			return nil, nil, err
		}
		executors[domain.ActionEmail] = mailer
		closeFn = func() { mailer.Close(); wh.Close() }
	}
	if deps.Redis != nil {
		executors[domain.ActionCache] = redisadapter.NewInvalidator(deps.Redis, logger)
	}
	if deps.DB != nil {
		executors[domain.ActionDatabase] = postgres.NewFunctionCaller(deps.DB.Pool)
	}
	if deps.NATS != nil {
		executors[domain.ActionNATS] = natsadapter.NewActionPublisher(deps.NATS)
	}
	return application.NewDispatcher(executors), closeFn, nil
}

// newEmailExecutor builds the email executor on [email]; the password
// comes from the variable email.password_env names. No connection is made
// before the first message.
func newEmailExecutor(cfg config.Config, env func(string) (string, bool), logger *slog.Logger) (*email.Executor, error) {
	e := cfg.Email
	password := ""
	if e.PasswordEnv != "" {
		v, ok := env(e.PasswordEnv)
		if !ok || v == "" {
			return nil, &config.ConfigError{File: cfg.File, Key: "email.password_env", Msg: "environment variable " + e.PasswordEnv + " is not set"}
		}
		password = v
	}
	maxIdle := e.MaxIdleConns
	if maxIdle == 0 {
		maxIdle = -1 // the adapter's "a session per message"
	}
	mailer, err := email.NewExecutor(email.Config{
		Host: e.Host, Port: e.Port, From: e.From, TLS: email.TLSMode(e.TLS),
		Username: e.Username, Password: password, Timeout: e.Timeout, HELOName: e.HELOName,
		MaxIdleConns: maxIdle, IdleTimeout: e.IdleTimeout,
	}, logger)
	if err != nil {
		return nil, &config.ConfigError{File: cfg.File, Key: "email", Msg: err.Error()}
	}
	return mailer, nil
}

// CheckSupported refuses observers whose actions have no executor in this
// process. LoadObservers already refused actions whose service the
// configuration lacks, with the key to set; this catches an executor that
// the wiring failed to register.
func CheckSupported(cfg config.Config, d *application.Dispatcher, obs []domain.Observer) error {
	for _, o := range obs {
		for i, act := range o.Actions {
			if !d.Supports(act.Type) {
				return &config.ConfigError{File: cfg.File, Key: fmt.Sprintf("observers (%q).actions[%d]", o.Name, i),
					Msg: fmt.Sprintf("action type %s is not available in topology %s", act.Type, cfg.Topology)}
			}
		}
	}
	return nil
}

// Uses reports whether any observer has an action of type t.
func Uses(obs []domain.Observer, t domain.ActionType) bool {
	for _, o := range obs {
		for _, a := range o.Actions {
			if a.Type == t {
				return true
			}
		}
	}
	return false
}
