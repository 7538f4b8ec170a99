package logaction_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/logaction"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/testsupport"
	"github.com/fraiseql/fraiseql-observer/ports/porttest"
)

// The log action writes to the process's own logger: it has no target that
// can be down or hang, only configurations that can never work.
func TestExecutorConformance(t *testing.T) {
	t.Parallel()
	target := func(level string) (porttest.ActionTarget, *testsupport.Logs) {
		logs := &testsupport.Logs{}
		act := &domain.Action{Name: "log-1", Type: domain.ActionLog, Log: &domain.LogAction{Level: level}}
		return porttest.ActionTarget{Executor: logaction.NewExecutor(slog.New(logs)), Action: act}, logs
	}
	porttest.RunActionExecutor(t, porttest.ActionHarness{
		Features: porttest.ActionFeatures{PermanentFailures: true},
		Success: func(*testing.T) porttest.ActionTarget {
			tg, logs := target("warn")
			tg.Took = func(_ context.Context, ev *domain.Event) (bool, error) {
				for _, r := range logs.Find(logaction.DefaultMessage) {
					if r.Attrs["event_id"] == ev.ID && r.Level == slog.LevelWarn {
						return true, nil
					}
				}
				return false, nil
			}
			return tg
		},
		Permanent: map[string]func(t *testing.T) porttest.ActionTarget{
			"unknown level": func(*testing.T) porttest.ActionTarget {
				tg, _ := target("loud")
				return tg
			},
			"no log config": func(*testing.T) porttest.ActionTarget {
				tg, _ := target("info")
				tg.Action.Log = nil
				return tg
			},
		},
	})
}
