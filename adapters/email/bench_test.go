package email_test

import (
	"context"
	"testing"

	"github.com/fraiseql/fraiseql-observer/adapters/email"
	"github.com/fraiseql/fraiseql-observer/domain"
	"github.com/fraiseql/fraiseql-observer/internal/smtptest"
)

// BenchmarkExecute sends one message per iteration to the in-process SMTP
// server on 127.0.0.1, keeping sessions (the default pool) or opening one
// per message, in clear and with STARTTLS.
func BenchmarkExecute(b *testing.B) {
	for _, mode := range []struct {
		name     string
		tls      email.TLSMode
		startTLS bool
	}{
		{"none", email.TLSNone, false},
		{"starttls", email.TLSStartTLS, true},
	} {
		for _, reuse := range []struct {
			name    string
			maxIdle int
		}{
			{"pooled", 0},
			{"per-message", -1},
		} {
			b.Run(mode.name+"/"+reuse.name, func(b *testing.B) {
				ts := smtptest.Start(b, smtptest.Config{StartTLS: mode.startTLS, Discard: true})
				exec, _ := newExecutor(b, ts, func(c *email.Config) { c.TLS, c.MaxIdleConns = mode.tls, reuse.maxIdle })
				ev, act := newEvent(), newAction(func(e *domain.EmailAction) {
					e.HTMLBodyTemplate = domain.MustCompileTemplate("<p>{{ note }}</p>")
				})
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if err := exec.Execute(ctx, ev, testObserver, act); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(ts.Conns())/float64(b.N), "conns/op")
			})
		}
	}
}
