// Package archtest checks the dependency rules of ARCHITECTURE.md on the
// real import graph (go list), production and test imports alike, so a
// forbidden import fails the test suite; and, reading the source
// (source_test.go), the size limits of files and of bootstrap's own
// package, and that no code asserts to a concrete adapter type outside
// that adapter.
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

// benchTool is the end-to-end load harness (ARCHITECTURE.md, cmd).
const benchTool = "cmd/fraiseql-bench"

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string // of the package's own _test.go files
	XTestImports []string // of its external _test package
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", module+"/...")
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
	"net/url": true, // parsing only: endpoints of webhook and Slack targets
}

// adapterExceptions are the adapter-to-adapter imports that exist, and
// why (ARCHITECTURE.md lists them too). Every other adapter imports no
// other adapter.
var adapterExceptions = map[string]map[string]string{
	"adapters/webhook": {"adapters/httpguard": "the webhook executor dials through the SSRF policy"},
	"adapters/slack":   {"adapters/webhook": "slack posts through the webhook executor's guarded client and status policy"},
}

// testAdapterExceptions are further adapter-to-adapter imports of tests.
var testAdapterExceptions = map[string]map[string]string{
	"adapters/slack": {"adapters/httpguard": "its tests build the webhook executor slack posts through"},
}

// configDeps are the modules bootstrap/config reads configuration with.
var configDeps = []string{"github.com/knadh/koanf", "github.com/go-viper/mapstructure", "github.com/pelletier/go-toml"}

func rel(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "/") }

func under(p, dir string) bool { r := rel(p); return r == dir || strings.HasPrefix(r, dir+"/") }

func isStd(p string) bool { return !strings.Contains(strings.Split(p, "/")[0], ".") }

// adapterOf names the adapter package p belongs to ("adapters/x"), or "".
func adapterOf(p string) string {
	parts := strings.SplitN(rel(p), "/", 3)
	if len(parts) < 2 || parts[0] != "adapters" || !strings.HasPrefix(p, module) {
		return ""
	}
	return parts[0] + "/" + parts[1]
}

func TestDependencyRules(t *testing.T) {
	t.Parallel()
	withTests := 0
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			if msg := violation(p.ImportPath, imp, false); msg != "" {
				t.Errorf("%s imports %s: %s", rel(p.ImportPath), imp, msg)
			}
		}
		if len(p.TestImports)+len(p.XTestImports) > 0 {
			withTests++
		}
		for _, imp := range append(p.TestImports, p.XTestImports...) {
			if msg := violation(p.ImportPath, imp, true); msg != "" {
				t.Errorf("tests of %s import %s: %s", rel(p.ImportPath), imp, msg)
			}
		}
	}
	if withTests < 5 {
		t.Fatalf("go list reported test imports for only %d packages", withTests)
	}
}

// violation returns why importer may not import imp, or "". test says the
// import is made by importer's tests.
func violation(importer, imp string, test bool) string {
	own := strings.HasPrefix(imp, module)
	if test && imp == importer {
		return "" // an external test package imports the package it tests
	}
	if msg := thirdPartyViolation(importer, imp, test); msg != "" {
		return msg
	}
	// Tests may use the shared test support: the conformance suites, the
	// internal helpers and the in-memory product adapters as test doubles
	// (they pass the same suites). The pure core's tests stay pure.
	testSupport := own && (under(imp, "ports/porttest") || under(imp, "internal") || under(imp, "adapters/memory"))
	pureCore := under(importer, "domain") || under(importer, "ports") && !under(importer, "ports/porttest")
	if test && testSupport && !pureCore {
		return ""
	}
	ownOnly := func(msg string, dirs ...string) string {
		if !own {
			if !isStd(imp) {
				return msg
			}
			return ""
		}
		for _, d := range dirs {
			if under(imp, d) {
				return ""
			}
		}
		return msg
	}
	switch {
	case under(importer, "domain"):
		stdOK := pureStd[imp] || test && isStd(imp) // tests may use testing, sync, reflect...
		if own && !under(imp, "domain") || !own && !stdOK {
			return "domain is pure: standard library without I/O only"
		}
	case under(importer, "ports/porttest"):
		if own && !under(imp, "domain") && !under(imp, "ports") {
			return "the conformance suites depend on domain and ports only"
		}
	case under(importer, "ports"):
		return ownOnly("ports depends on domain and the standard library only", "domain", "ports")
	case under(importer, "application/admin"):
		if own && rel(imp) == "application" {
			return ""
		}
		return ownOnly("application/admin depends on domain, ports and application only", "domain", "ports", "application/admin")
	case under(importer, "application"):
		return ownOnly("application depends on domain and ports only", "domain", "ports")
	case under(importer, "adapters/adminhttp"):
		return ownOnly("adapters/adminhttp, an inbound adapter, depends on the standard library, domain, ports, application and application/admin only",
			"domain", "ports", "application", "adapters/adminhttp")
	case adapterOf(importer) != "":
		return adapterViolation(adapterOf(importer), imp, test)
	case under(importer, "bootstrap/config"):
		if own && !under(imp, "domain") && !under(imp, "bootstrap/config") {
			return "bootstrap/config depends on domain and koanf only: no adapter, no use case"
		}
		if !own && !isStd(imp) && !hasAnyPrefix(imp, configDeps) {
			return "bootstrap/config reads configuration with koanf only"
		}
	case under(importer, "bootstrap"):
		// The composition root is bootstrap and its subpackages (stores,
		// actions, operate, telemetry): all of them may import adapters
		// (see the last rule). The subpackages are rooms beside App, which
		// imports them; none of them builds on App.
		if own && (under(imp, "cmd") || under(imp, "integration")) {
			return "the composition root does not depend on its callers"
		}
		if own && !test && rel(imp) == "bootstrap" && rel(importer) != "bootstrap" {
			return "bootstrap's subpackages stand beside App: bootstrap imports them, never the reverse"
		}
	case under(importer, benchTool):
		// The load harness is an outer-ring tool: it runs the service's
		// binary as a black box and imports none of its packages, only the
		// pgbench runner it shares with the capture benchmark and the
		// server's turn for CREATE DATABASE it shares with the tests.
		if own && !under(imp, "internal/pgbench") && !under(imp, "internal/ddlturn") {
			return "cmd/fraiseql-bench measures the binary from outside: it imports internal/pgbench and internal/ddlturn only"
		}
	case under(importer, "internal/pgbench"):
		if !isStd(imp) {
			return "internal/pgbench runs the pgbench program with the standard library only"
		}
	case under(importer, "internal/ddlturn"):
		if !isStd(imp) {
			return "internal/ddlturn takes the server's turn with the standard library only: callers bring the connection"
		}
	case under(importer, "cmd"):
		if own && !under(imp, "bootstrap") && !under(imp, "application/admin") && !under(imp, "domain") && !under(imp, "ports") {
			return "cmd talks to bootstrap and renders the reports of application/admin"
		}
	}
	integrationTest := test && under(importer, "integration")
	if own && under(imp, "adapters") && !under(importer, "adapters") && !under(importer, "bootstrap") && !integrationTest {
		return "only bootstrap (the composition root) imports adapters"
	}
	return ""
}

// adapterViolation: an adapter implements ports on one technology; it
// calls no use case, knows no composition root and imports no other
// adapter but the listed exceptions.
func adapterViolation(adapter, imp string, test bool) string {
	if !strings.HasPrefix(imp, module) {
		return ""
	}
	other := adapterOf(imp)
	switch {
	case under(imp, "application"):
		return "adapters implement ports; they do not call the use cases"
	case under(imp, "bootstrap"), under(imp, "cmd"):
		return "adapters do not know the composition root"
	case other == "" || other == adapter:
		return ""
	case adapterExceptions[adapter][other] != "", test && testAdapterExceptions[adapter][other] != "":
		return ""
	}
	return "an adapter does not import another adapter (the exceptions are listed in ARCHITECTURE.md)"
}

// thirdPartyViolation keeps each technology in its adapter.
func thirdPartyViolation(importer, imp string, test bool) string {
	// The integration tests and the load harness set up and tear down the
	// services' state (databases, keys, streams) with the clients directly.
	integrationTest := test && under(importer, "integration") || under(importer, benchTool)
	switch {
	case strings.HasPrefix(imp, "github.com/knadh/koanf") && !under(importer, "bootstrap/config"):
		return "only bootstrap/config reads configuration"
	case strings.HasPrefix(imp, "github.com/jackc/pgx") && !under(importer, "adapters/postgres") && !under(importer, "internal/testenv") && !integrationTest:
		return "only adapters/postgres talks to PostgreSQL"
	case strings.HasPrefix(imp, "github.com/redis/go-redis") && !under(importer, "adapters/redis") && !integrationTest:
		return "only adapters/redis talks to Redis"
	case strings.HasPrefix(imp, "github.com/nats-io/") && !under(importer, "adapters/nats") && !integrationTest:
		return "only adapters/nats talks to NATS"
	case strings.HasPrefix(imp, "go.opentelemetry.io/proto/") || strings.HasPrefix(imp, "google.golang.org/"):
		if !under(importer, "internal/otlptest") {
			return "only internal/otlptest (the tests' OTLP receiver) speaks the OTLP protocol and gRPC"
		}
	case strings.HasPrefix(imp, "go.opentelemetry.io/") && !under(importer, "adapters/otel"):
		return "only adapters/otel uses OpenTelemetry"
	}
	return ""
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

type importCase struct {
	importer, imp string
	test          bool
}

func TestViolationCatchesForbiddenImports(t *testing.T) {
	t.Parallel()
	m := func(p string) string { return module + "/" + p }
	bad := []importCase{
		// The pure core and the ports.
		{m("domain"), "net/http", false},
		{m("domain"), "os", false},
		{m("domain"), m("ports"), false},
		{m("ports"), m("application"), false},
		{m("ports/porttest"), m("adapters/memory"), false},
		// The use cases.
		{m("application"), m("adapters/postgres"), false},
		{m("application"), "github.com/jackc/pgx/v5", false},
		{m("application"), m("application/admin"), false},
		{m("application"), "go.opentelemetry.io/otel/trace", false},
		{m("adapters/webhook"), "go.opentelemetry.io/otel/propagation", false},
		{m("adapters/otel"), "go.opentelemetry.io/proto/otlp/collector/trace/v1", true},
		{m("integration"), "google.golang.org/grpc", true},
		{m("application/admin"), m("adapters/memory"), false},
		{m("application/admin"), m("bootstrap/config"), false},
		{m("application/admin"), "github.com/google/uuid", false},
		// Adapters: no use case, no composition root, no other adapter.
		{m("adapters/postgres"), m("application"), false},
		{m("adapters/redis"), m("application/admin"), false},
		{m("adapters/nats"), m("bootstrap"), false},
		{m("adapters/redis"), m("adapters/postgres"), false},
		{m("adapters/slack"), m("adapters/httpguard"), false},
		{m("adapters/webhook"), m("adapters/slack"), false},
		{m("adapters/webhook"), "github.com/knadh/koanf/v2", false},
		{m("adapters/webhook"), "github.com/jackc/pgx/v5", false},
		// The inbound adapter: standard library and the inner layers only.
		{m("adapters/adminhttp"), m("adapters/postgres"), false},
		{m("adapters/adminhttp"), m("bootstrap"), false},
		{m("adapters/adminhttp"), "github.com/prometheus/client_golang/prometheus", false},
		// Configuration: koanf and the domain only.
		{m("bootstrap/config"), m("adapters/postgres"), false},
		{m("bootstrap/config"), m("application"), false},
		{m("bootstrap/config"), "github.com/redis/go-redis/v9", false},
		{m("bootstrap"), "github.com/knadh/koanf/v2", false},
		{m("bootstrap"), m("cmd/fraiseql-observer"), false},
		// The composition root's rooms do not build on App.
		{m("bootstrap/operate"), m("bootstrap"), false},
		{m("bootstrap/stores"), m("bootstrap"), false},
		{m("bootstrap/actions"), m("cmd/fraiseql-observer"), false},
		{m("bootstrap/telemetry"), m("integration"), false},
		{m("bootstrap/stores"), "github.com/knadh/koanf/v2", false},
		{m("internal/testenv"), m("adapters/postgres"), false},
		// cmd renders reports; it builds nothing.
		{m("cmd/fraiseql-observer"), m("adapters/postgres"), false},
		{m("cmd/fraiseql-observer"), m("adapters/adminhttp"), false},
		{m("cmd/fraiseql-observer"), m("application"), false},
		// Test imports are checked too.
		{m("domain"), m("adapters/memory"), true},
		{m("domain"), m("internal/testenv"), true},
		{m("application"), m("adapters/postgres"), true},
		{m("adapters/redis"), m("adapters/postgres"), true},
		{m("adapters/redis"), m("application"), true},
		{m("adapters/webhook"), "github.com/jackc/pgx/v5", true},
		{m("bootstrap"), "github.com/nats-io/nats.go", true},
		{m("cmd/fraiseql-observer"), m("adapters/postgres"), true},
		// The load harness measures the binary from outside.
		{m("cmd/fraiseql-bench"), m("bootstrap"), false},
		{m("cmd/fraiseql-bench"), m("adapters/postgres"), false},
		{m("cmd/fraiseql-bench"), m("application"), false},
		{m("cmd/fraiseql-bench"), "go.opentelemetry.io/otel", false},
		{m("cmd/fraiseql-observer"), m("internal/pgbench"), false},
		{m("internal/pgbench"), "github.com/jackc/pgx/v5", false},
		{m("internal/pgbench"), m("domain"), false},
		{m("internal/ddlturn"), "github.com/jackc/pgx/v5", false},
		{m("internal/ddlturn"), m("domain"), false},
		{m("cmd/fraiseql-bench"), m("internal/testenv"), false},
	}
	for _, b := range bad {
		if violation(b.importer, b.imp, b.test) == "" {
			t.Errorf("%s importing %s (test %v) should be a violation", rel(b.importer), b.imp, b.test)
		}
	}
	good := []importCase{
		{m("domain"), "encoding/json", false},
		{m("domain"), "testing", true},
		{m("application"), m("ports"), false},
		{m("application/admin"), m("application"), false},
		{m("application/admin"), m("ports"), false},
		{m("application"), m("adapters/memory"), true},
		{m("application/admin"), m("adapters/memory"), true},
		{m("adapters/webhook"), m("adapters/httpguard"), false},
		{m("adapters/slack"), m("adapters/webhook"), false},
		{m("adapters/slack"), m("adapters/httpguard"), true},
		{m("adapters/postgres"), m("ports/porttest"), true},
		{m("adapters/redis"), m("internal/testenv"), true},
		{m("adapters/adminhttp"), m("application/admin"), false},
		{m("adapters/adminhttp"), m("application"), false},
		{m("adapters/adminhttp"), "net/http", false},
		{m("adapters/adminhttp"), m("adapters/memory"), true},
		{m("bootstrap"), m("adapters/postgres"), false},
		{m("bootstrap"), m("bootstrap/stores"), false},
		{m("bootstrap/actions"), m("adapters/webhook"), false},
		{m("bootstrap/stores"), m("adapters/postgres"), false},
		{m("bootstrap/operate"), m("adapters/adminhttp"), false},
		{m("bootstrap/operate"), m("bootstrap/stores"), false},
		{m("bootstrap/telemetry"), m("adapters/otel"), false},
		{m("bootstrap/operate"), m("bootstrap"), true},
		{m("cmd/fraiseql-observer"), m("bootstrap/operate"), false},
		{m("bootstrap/config"), "github.com/knadh/koanf/v2", false},
		{m("bootstrap/config"), "github.com/pelletier/go-toml/v2", false},
		{m("bootstrap/config"), m("domain"), false},
		{m("cmd/fraiseql-observer"), m("bootstrap/config"), false},
		{m("cmd/fraiseql-observer"), m("application/admin"), false},
		{m("integration"), "github.com/jackc/pgx/v5", true},
		{m("integration"), m("adapters/nats"), true},
		{m("adapters/otel"), "go.opentelemetry.io/otel/sdk/trace", false},
		{m("adapters/otel"), m("internal/otlptest"), true},
		{m("internal/otlptest"), "go.opentelemetry.io/proto/otlp/trace/v1", false},
		{m("internal/otlptest"), "google.golang.org/grpc", false},
		{m("cmd/fraiseql-bench"), "github.com/jackc/pgx/v5", false},
		{m("cmd/fraiseql-bench"), "github.com/redis/go-redis/v9", false},
		{m("cmd/fraiseql-bench"), "github.com/nats-io/nats.go/jetstream", false},
		{m("cmd/fraiseql-bench"), m("internal/pgbench"), false},
		{m("cmd/fraiseql-bench"), m("internal/ddlturn"), false},
		{m("internal/testenv"), m("internal/ddlturn"), false},
		{m("cmd/fraiseql-bench"), m("internal/testenv"), true},
		{m("integration"), m("internal/pgbench"), true},
		{m("internal/pgbench"), "os/exec", false},
	}
	for _, g := range good {
		if msg := violation(g.importer, g.imp, g.test); msg != "" {
			t.Errorf("%s importing %s (test %v) should be allowed, got %q", rel(g.importer), g.imp, g.test, msg)
		}
	}
}
