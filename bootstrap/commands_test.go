package bootstrap_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observer/bootstrap"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// TestTargetDatabase: migrate, watch and unwatch work on [database], or on
// the [[databases]] entry --database names (multi-database only); the
// memory topology has no database, and watch in multi-database must name
// a source, whose bridge reads the change log.
func TestTargetDatabase(t *testing.T) {
	t.Setenv("FRAISEQL_TEST_BILLING_URL", "postgres://127.0.0.1:5432/billing")
	multi := config.Config{Topology: config.TopologyMultiDatabase, Database: config.DatabaseConfig{URL: "postgres://127.0.0.1:5432/state"},
		Databases: []config.SourceDatabase{
			{Name: "orders", URL: "postgres://127.0.0.1:5432/orders"},
			{Name: "billing", URLEnv: "FRAISEQL_TEST_BILLING_URL"},
			{Name: "unset", URLEnv: "FRAISEQL_TEST_NOT_SET_ANYWHERE"},
		}}
	single := config.Config{Topology: config.TopologyPostgresOnly, Database: config.DatabaseConfig{URL: "postgres://127.0.0.1:5432/app"}}
	memory := config.Config{Topology: config.TopologyMemory}
	cases := []struct {
		name    string
		cfg     config.Config
		db      string
		watch   bool
		wantURL string
		wantErr string // the ConfigError's key and a part of its message
	}{
		{"postgres-only", single, "", true, "postgres://127.0.0.1:5432/app", ""},
		{"memory", memory, "", false, "", "topology: the memory topology reads no database"},
		{"--database outside multi-database", single, "orders", true, "", `topology: --database "orders" names a [[databases]] entry`},
		{"migrate of the state database", multi, "", false, "postgres://127.0.0.1:5432/state", ""},
		{"watch without --database", multi, "", true, "", "databases: in the multi-database topology the bridges read the change logs of the [[databases]]: name one with --database (orders, billing, unset)"},
		{"watch of a source", multi, "orders", true, "postgres://127.0.0.1:5432/orders", ""},
		{"a source's url_env", multi, "billing", false, "postgres://127.0.0.1:5432/billing", ""},
		{"a source's url_env not set", multi, "unset", true, "", "databases[2].url_env: environment variable FRAISEQL_TEST_NOT_SET_ANYWHERE is not set"},
		{"an unknown source", multi, "shipping", true, "", `databases: --database "shipping" is not a [[databases]] name (orders, billing, unset)`},
	}
	for _, c := range cases {
		got, _, err := bootstrap.TargetDatabase(c.cfg, c.db, c.watch)
		if c.wantErr != "" {
			var ce *config.ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: %v, want a ConfigError with %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil || got.URL != c.wantURL {
			t.Errorf("%s: url %q, %v; want %q", c.name, got.URL, err, c.wantURL)
		}
	}
}
