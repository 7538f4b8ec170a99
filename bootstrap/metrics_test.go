package bootstrap_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap"
)

const metricsObservers = `
[[observers]]
name = "hooks"
entity = "Order"
events = ["INSERT"]
[[observers.actions]]
name = "ok-hook"
type = "webhook"
url = "RECEIVER/ok"
`

// The metrics of the running service, wired: build_info with the version
// given, a standby replica's backlog measured from the stored checkpoint
// (not the whole table), and action counts per observer once it reads.
func TestServiceMetrics(t *testing.T) {
	t.Parallel()
	b := setupOperator(t, metricsObservers)
	ctx := t.Context()
	b.changeRow(t, "00000000-0000-0000-0000-00000000000a", 0)
	saved := b.changeRow(t, "00000000-0000-0000-0000-00000000000b", 0)
	for _, id := range []string{"c", "d", "e"} {
		b.changeRow(t, "00000000-0000-0000-0000-00000000000"+id, 0)
	}
	if err := b.cps.Save(ctx, "default", saved); err != nil {
		t.Fatal(err)
	}
	// Another replica reads: this one is a standby.
	if held, err := b.ls.Acquire(ctx, "reader:default", "other-replica", time.Minute); err != nil || !held {
		t.Fatalf("acquire: %v %v", held, err)
	}

	cfg := b.cfg
	cfg.HTTP.Listen = "127.0.0.1:0"
	app, err := bootstrap.New(ctx, cfg, bootstrap.Options{Logger: quietLogger(), Version: "v9.9.9"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		app.Close()
	})
	scrape := func() string {
		resp, err := http.Get("http://" + app.HTTPAddr() + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	var out string
	waitFor(t, "the standby's backlog", func() bool {
		out = scrape()
		return strings.Contains(out, `fraiseql_observer_backlog_rows{reader="default"}`)
	})
	for _, want := range []string{
		`fraiseql_observer_backlog_rows{reader="default"} 3`,
		`fraiseql_observer_backlog_size 3`,
		`fraiseql_observer_build_info{go_version="go`,
		`version="v9.9.9"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("standby metrics lack %q:\n%s", want, grepMetrics(out))
		}
	}
	if b.recv.count("/ok") != 0 {
		t.Fatal("the standby delivered")
	}

	// The other replica goes away: this one reads and counts its actions
	// per observer.
	if err := b.ls.Release(ctx, "reader:default", "other-replica"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three deliveries counted", func() bool {
		out = scrape()
		return strings.Contains(out, `fraiseql_observer_action_executed_total{action="ok-hook",action_type="webhook",observer="hooks",outcome="succeeded"} 3`)
	})
}

func grepMetrics(out string) string {
	var b strings.Builder
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, "fraiseql_observer_") {
			b.WriteString(l)
		}
	}
	return b.String()
}
