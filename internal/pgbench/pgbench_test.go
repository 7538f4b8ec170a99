package pgbench

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	out := `transaction type: insert.sql
scaling factor: 1
query mode: prepared
number of clients: 8
number of threads: 2
duration: 3 s
number of transactions actually processed: 4521
latency average = 5.309 ms
initial connection time = 12.771 ms
tps = 1506.913541 (without initial connection time)
`
	r, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.TPS != 1506.913541 || r.Commits != 4521 {
		t.Errorf("Parse = %+v, want tps 1506.913541, commits 4521", r)
	}
	if _, err := Parse("pgbench: error: connection refused"); err == nil || !strings.Contains(err.Error(), "no tps") {
		t.Errorf("Parse of an error output = %v, want an error naming the missing tps", err)
	}
}

func TestWriteScript(t *testing.T) {
	t.Parallel()
	p, err := WriteScript(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(p, "insert.sql") {
		t.Errorf("script path %s", p)
	}
}
