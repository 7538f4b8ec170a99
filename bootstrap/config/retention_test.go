package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

func TestRetentionSection(t *testing.T) {
	t.Parallel()
	def, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if def.Retention.Enabled() || def.Retention.Interval != time.Hour || def.Retention.BatchSize != 1000 {
		t.Errorf("defaults = %+v, want off, hourly, 1000 rows a batch", def.Retention)
	}
	cfg, err := config.Load(writeConfig(t, `
[retention]
change_log   = "720h"
dead_letters = "2160h"
interval     = "10m"
batch_size   = 200
`), []string{"FRAISEQL_RETENTION_BATCH_SIZE=300"})
	if err != nil {
		t.Fatal(err)
	}
	want := config.RetentionConfig{ChangeLog: 720 * time.Hour, DeadLetters: 2160 * time.Hour, Interval: 10 * time.Minute, BatchSize: 300}
	if cfg.Retention != want || !cfg.Retention.Enabled() {
		t.Errorf("retention = %+v, want %+v", cfg.Retention, want)
	}

	cases := []struct{ body, key, msg string }{
		{"[retention]\nchange_log = \"-1h\"\n", "retention.change_log", "must not be negative"},
		{"[retention]\ndead_letters = \"-1h\"\n", "retention.dead_letters", "must not be negative"},
		{"[retention]\ninterval = \"0s\"\n", "retention.interval", "must be positive"},
		{"[retention]\nbatch_size = 0\n", "retention.batch_size", "not between 1 and 100000"},
		{"[retention]\nbatch_size = 1000000\n", "retention.batch_size", "not between 1 and 100000"},
		{"topology = \"memory\"\n[retention]\ndead_letters = \"24h\"\n", "retention.dead_letters", "memory topology"},
		{"topology = \"memory\"\n[retention]\nchange_log = \"24h\"\n", "retention.change_log", "memory topology"},
		{"[retention]\nchange_logs = \"24h\"\n", "retention.change_logs", "unknown key"},
	}
	for _, c := range cases {
		_, err := config.Load(writeConfig(t, c.body), nil)
		var ce *config.ConfigError
		if !errors.As(err, &ce) || ce.Key != c.key || !strings.Contains(ce.Msg, c.msg) {
			t.Errorf("%q: %v, want a ConfigError on %s saying %q", c.body, err, c.key, c.msg)
		}
	}
}
