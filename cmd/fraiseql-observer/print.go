package main

import (
	"encoding/json"
	"fmt"
	"io"

	gotoml "github.com/pelletier/go-toml/v2"
)

// writeEffectiveConfig prints the effective configuration tree as TOML
// (with a header saying what it is) or as JSON.
func writeEffectiveConfig(w io.Writer, file string, tree map[string]any, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(tree)
	}
	from := "defaults and FRAISEQL_* variables"
	if file != "" {
		from = "defaults, " + file + " and FRAISEQL_* variables"
	}
	fmt.Fprintf(w, "# Effective configuration (%s); secrets redacted.\n# observers: the main file's, then observers_file's.\n", from)
	b, err := gotoml.Marshal(tree)
	if err != nil {
		return fmt.Errorf("print configuration: %w", err)
	}
	_, err = w.Write(b)
	return err
}
