// Package archtest checks the hexagonal dependency rules of
// ARCHITECTURE.md on the real import graph (go list), so a forbidden
// import fails the test suite.
package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/fraiseql/fraiseql-observer"

type pkg struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// pureStd are the standard packages the domain may use: no I/O, no clock
// sources, no network, no OS.
var pureStd = map[string]bool{
	"bytes": true, "cmp": true, "encoding/json": true, "errors": true, "fmt": true, "maps": true,
	"math": true, "math/big": true, "regexp": true, "slices": true, "sort": true, "strconv": true,
	"strings": true, "time": true, "unicode": true, "unicode/utf8": true, "unicode/utf16": true,
	"iter": true, "io": true, "crypto/sha256": true, "encoding/hex": true,
}

func rel(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "/") }

func under(p, dir string) bool { r := rel(p); return r == dir || strings.HasPrefix(r, dir+"/") }

func isStd(p string) bool { return !strings.Contains(strings.Split(p, "/")[0], ".") }

func TestDependencyRules(t *testing.T) {
	t.Parallel()
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			if msg := violation(p.ImportPath, imp); msg != "" {
				t.Errorf("%s imports %s: %s", rel(p.ImportPath), imp, msg)
			}
		}
	}
}

// violation returns why importer may not import imp, or "".
func violation(importer, imp string) string {
	own := strings.HasPrefix(imp, module)
	switch {
	case under(importer, "domain"):
		if own && !under(imp, "domain") || !own && !pureStd[imp] {
			return "domain is pure: standard library without I/O only"
		}
	case under(importer, "ports") && !under(importer, "ports/porttest"):
		if own && !under(imp, "domain") && !under(imp, "ports") || !own && !isStd(imp) {
			return "ports depends on domain and the standard library only"
		}
	case under(importer, "application/admin"):
		if own && !under(imp, "domain") && !under(imp, "ports") && rel(imp) != "application" && !under(imp, "application/admin") || !own && !isStd(imp) {
			return "application/admin depends on domain, ports and application only"
		}
	case under(importer, "application"):
		if own && !under(imp, "domain") && !under(imp, "ports") || !own && !isStd(imp) {
			return "application depends on domain and ports only"
		}
	case under(importer, "cmd"):
		if own && !under(imp, "bootstrap") && !under(imp, "application/admin") && !under(imp, "domain") && !under(imp, "ports") {
			return "cmd talks to bootstrap and renders the reports of application/admin"
		}
	}
	if under(imp, "adapters") && !under(importer, "adapters") && !under(importer, "bootstrap") && !under(importer, "integration") {
		return "only bootstrap (the composition root) imports adapters"
	}
	if strings.HasPrefix(imp, "github.com/knadh/koanf") && !under(importer, "bootstrap/config") {
		return "only bootstrap/config reads configuration"
	}
	if strings.HasPrefix(imp, "github.com/jackc/pgx") && !under(importer, "adapters/postgres") && !under(importer, "internal/testenv") {
		return "only adapters/postgres talks to PostgreSQL"
	}
	if strings.HasPrefix(imp, "github.com/redis/go-redis") && !under(importer, "adapters/redis") {
		return "only adapters/redis talks to Redis"
	}
	if strings.HasPrefix(imp, "github.com/nats-io/") && !under(importer, "adapters/nats") {
		return "only adapters/nats talks to NATS"
	}
	return ""
}

func TestViolationCatchesForbiddenImports(t *testing.T) {
	t.Parallel()
	bad := [][2]string{
		{module + "/domain", "net/http"},
		{module + "/domain", "os"},
		{module + "/domain", module + "/ports"},
		{module + "/application", module + "/adapters/postgres"},
		{module + "/application", "github.com/jackc/pgx/v5"},
		{module + "/ports", module + "/application"},
		{module + "/adapters/webhook", "github.com/knadh/koanf/v2"},
		{module + "/bootstrap", "github.com/knadh/koanf/v2"},
		{module + "/cmd/fraiseql-observer", module + "/adapters/postgres"},
		{module + "/adapters/webhook", "github.com/jackc/pgx/v5"},
	}
	for _, b := range bad {
		if violation(b[0], b[1]) == "" {
			t.Errorf("%s importing %s should be a violation", rel(b[0]), b[1])
		}
	}
	good := [][2]string{
		{module + "/domain", "encoding/json"},
		{module + "/application", module + "/ports"},
		{module + "/bootstrap", module + "/adapters/postgres"},
		{module + "/bootstrap/config", "github.com/knadh/koanf/v2"},
		{module + "/adapters/webhook", module + "/adapters/httpguard"},
	}
	for _, g := range good {
		if msg := violation(g[0], g[1]); msg != "" {
			t.Errorf("%s importing %s should be allowed, got %q", rel(g[0]), g[1], msg)
		}
	}
}
