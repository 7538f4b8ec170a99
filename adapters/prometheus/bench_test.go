package prometheus_test

import (
	"testing"
	"time"

	promadapter "github.com/fraiseql/fraiseql-observer/adapters/prometheus"
	"github.com/fraiseql/fraiseql-observer/domain"
)

func BenchmarkActionExecuted(b *testing.B) {
	m := promadapter.New(promadapter.BuildInfo{})
	d := domain.ActionDetail{Observer: "orders", Action: "orders-hook", ActionType: domain.ActionWebhook, Outcome: domain.OutcomeSucceeded, Duration: 30 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		m.ActionExecuted(d)
	}
}
