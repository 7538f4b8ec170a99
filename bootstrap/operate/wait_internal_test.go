package operate

import (
	"maps"
	"slices"
	"testing"

	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
)

// Of the databases, --wait looks up only those the command uses: a
// source whose url_env is unset does not fail a command on another.
func TestStateDatabasesOnlyThoseAsked(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.Topology = config.TopologyMultiDatabase
	cfg.Databases = []config.SourceDatabase{{Name: "src1", URL: "postgres://127.0.0.1/src1"}, {Name: "src2", URLEnv: "UNSET_SRC2_URL"}}
	noEnv := func(string) (string, bool) { return "", false }
	if _, err := stateDatabases(cfg, noEnv, nil); err == nil {
		t.Fatal("every database: no error for src2's unset url_env")
	}
	dbs, err := stateDatabases(cfg, noEnv, []string{"databases.src1"})
	if err != nil {
		t.Fatalf("src1 only: %v", err)
	}
	if keys := slices.Sorted(maps.Keys(dbs)); !slices.Equal(keys, []string{"databases.src1"}) {
		t.Errorf("src1 only: %q", keys)
	}
}
