package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The reader skips, in the database, the rows of entities no observer
// names: they are neither delivered nor held back (the checkpoint moves
// past them), and the rows of the observed entity around them flow. A
// reload that adds an observer for another entity makes the reader return
// that entity's rows from then on.
func TestReaderSkipsEntitiesNoObserverNamesAndFollowsReload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recv := newReceiver(t, nil)
	obsFile := filepath.Join(t.TempDir(), "observers.toml")
	if err := os.WriteFile(obsFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := b.config(webhookObserver("orders", "Order", recv.URL(), nil))
	cfg.ObserversFile = obsFile
	app := b.start(t, cfg)
	app.waitReading(t)

	ids := b.insert(t,
		change{Entity: "Invoice", Kind: "INSERT", Data: `{"n": 1}`},
		change{Entity: "Order", Kind: "INSERT", Data: `{"n": 2}`},
		change{Entity: "Invoice", Kind: "INSERT", Data: `{"n": 3}`},
	)
	recv.waitDelivered(t, ids[1:2])
	b.waitCheckpointAtEnd(t)
	if got := len(recv.all()); got != 1 {
		t.Fatalf("%d requests, want only the Order's", got)
	}

	invoices := fmt.Sprintf("[[observers]]\nname = \"invoices\"\nentity = \"Invoice\"\nevents = [\"INSERT\"]\n"+
		"[[observers.actions]]\ntype = \"webhook\"\nurl = %q\n", recv.URL())
	if err := os.WriteFile(obsFile, []byte(invoices), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := app.app.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	later := b.insert(t, change{Entity: "Invoice", Kind: "INSERT", Data: `{"n": 4}`})
	recv.waitDelivered(t, later)
	if got := len(recv.all()); got != 2 {
		t.Fatalf("%d requests, want the Order's and the later Invoice's", got)
	}
}
