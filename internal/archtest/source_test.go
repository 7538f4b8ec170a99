package archtest

// The rules below read the source itself rather than the import graph:
// file sizes, and type assertions to the concrete types of an adapter.

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// Size limits of issue 7: one file is read in one sitting, and the
// composition root's own package stays a room, not a store-room (its
// concerns have subpackages: bootstrap/stores, actions, operate, telemetry,
// config).
const (
	maxFileLines      = 600  // per non-test Go file
	maxBootstrapLines = 1500 // the non-test files directly in bootstrap/
)

// goFile is one Go source file of the module.
type goFile struct {
	path  string // slash-separated, relative to the module root
	lines int    // as wc -l counts them
	test  bool
	ast   *ast.File
	fset  *token.FileSet
}

// dir is the directory of the file, relative to the module root.
func (f goFile) dir() string { return path.Dir(f.path) }

// readModule parses every Go file of the module in fsys (its root),
// skipping hidden directories, testdata and nested modules.
func readModule(t *testing.T, fsys fs.FS) []goFile {
	t.Helper()
	var files []goFile
	fset := token.NewFileSet()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return fs.SkipDir
			}
			if _, err := fs.Stat(fsys, path.Join(p, "go.mod")); p != "." && err == nil {
				return fs.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, p, src, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files = append(files, goFile{path: p, lines: bytes.Count(src, []byte("\n")), test: strings.HasSuffix(p, "_test.go"), ast: f, fset: fset})
		return nil
	})
	if err != nil {
		t.Fatalf("read the module: %v", err)
	}
	return files
}

// moduleFS is the module this test belongs to.
func moduleFS(t *testing.T) fs.FS {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	return os.DirFS(root)
}

// sizeViolations lists the non-test files over maxFileLines and the
// bootstrap package's own files when together over maxBootstrapLines.
func sizeViolations(files []goFile) []string {
	var out []string
	bootstrap := 0
	for _, f := range files {
		if f.test {
			continue
		}
		if f.lines > maxFileLines {
			out = append(out, fmt.Sprintf("%s has %d lines (at most %d per non-test Go file: split it by concern)", f.path, f.lines, maxFileLines))
		}
		if f.dir() == "bootstrap" {
			bootstrap += f.lines
		}
	}
	if bootstrap > maxBootstrapLines {
		out = append(out, fmt.Sprintf("bootstrap/*.go hold %d non-test lines (at most %d: give the concern a subpackage of bootstrap)", bootstrap, maxBootstrapLines))
	}
	return out
}

// adapterAssertions lists the type assertions and type-switch cases that
// name a concrete type (anything but an interface) of an adapter package
// outside that adapter (its directory and subdirectories, their tests
// included). What code needs of an adapter beyond a port is a port.
func adapterAssertions(files []goFile) []string {
	// The package name and the interface types of each directory.
	names := map[string]string{}
	ifaces := map[string]map[string]bool{}
	for _, f := range files {
		if f.test {
			continue
		}
		names[f.dir()] = f.ast.Name.Name
		for _, decl := range f.ast.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				if ts := spec.(*ast.TypeSpec); isInterface(ts.Type) {
					if ifaces[f.dir()] == nil {
						ifaces[f.dir()] = map[string]bool{}
					}
					ifaces[f.dir()][ts.Name.Name] = true
				}
			}
		}
	}
	var out []string
	for _, f := range files {
		imported := map[string]string{} // local name -> package directory
		for _, imp := range f.ast.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if !strings.HasPrefix(p, module+"/") || adapterOf(p) == "" {
				continue
			}
			pkgDir := rel(p)
			local := names[pkgDir]
			if imp.Name != nil {
				local = imp.Name.Name
			}
			if local != "" && local != "_" && local != "." {
				imported[local] = pkgDir
			}
		}
		if len(imported) == 0 {
			continue
		}
		own := adapterOf(module + "/" + f.dir())
		check := func(at token.Pos, typ ast.Expr) {
			pkgDir, name, ok := qualifiedType(typ, imported)
			if !ok || adapterOf(module+"/"+pkgDir) == own || ifaces[pkgDir][name] {
				return
			}
			out = append(out, fmt.Sprintf("%s:%d: asserts to %s.%s, a concrete type of %s: ask for a port instead",
				f.path, f.fset.Position(at).Line, path.Base(pkgDir), name, adapterOf(module+"/"+pkgDir)))
		}
		ast.Inspect(f.ast, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.TypeAssertExpr:
				if n.Type != nil { // nil: the x.(type) of a type switch
					check(n.Pos(), n.Type)
				}
			case *ast.TypeSwitchStmt:
				for _, c := range n.Body.List {
					for _, typ := range c.(*ast.CaseClause).List {
						check(typ.Pos(), typ)
					}
				}
			}
			return true
		})
	}
	slices.Sort(out)
	return out
}

func isInterface(e ast.Expr) bool {
	_, ok := e.(*ast.InterfaceType)
	return ok
}

// qualifiedType returns the package directory and name of typ when it is
// (a pointer to, an instance of) a type of an imported package.
func qualifiedType(typ ast.Expr, imported map[string]string) (pkgDir, name string, ok bool) {
	for {
		switch t := typ.(type) {
		case *ast.ParenExpr:
			typ = t.X
		case *ast.StarExpr:
			typ = t.X
		case *ast.IndexExpr:
			typ = t.X
		case *ast.IndexListExpr:
			typ = t.X
		case *ast.SelectorExpr:
			id, isIdent := t.X.(*ast.Ident)
			if !isIdent {
				return "", "", false
			}
			pkgDir, ok = imported[id.Name]
			return pkgDir, t.Sel.Name, ok
		default:
			return "", "", false
		}
	}
}

func TestSourceRules(t *testing.T) {
	t.Parallel()
	files := readModule(t, moduleFS(t))
	if len(files) < 100 {
		t.Fatalf("found only %d Go files", len(files))
	}
	for _, v := range sizeViolations(files) {
		t.Error(v)
	}
	for _, v := range adapterAssertions(files) {
		t.Error(v)
	}
}

// src is a Go file of n lines: the given text, padded with comments.
func src(n int, text string) *fstest.MapFile {
	lines := strings.Count(text, "\n")
	return &fstest.MapFile{Data: []byte(text + strings.Repeat("//\n", max(n-lines, 0)))}
}

func TestSizeRulesCatchViolations(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		fsys fstest.MapFS
		want []string // substrings, one per expected violation
	}{
		{"a file over the limit", fstest.MapFS{
			"go.mod":                   {Data: []byte("module " + module + "\n")},
			"adapters/postgres/big.go": src(601, "package postgres\n"),
			"adapters/postgres/ok.go":  src(600, "package postgres\n"),
		}, []string{"adapters/postgres/big.go has 601 lines"}},
		{"tests and other modules are not counted", fstest.MapFS{
			"go.mod":                          {Data: []byte("module " + module + "\n")},
			"adapters/postgres/x_test.go":     src(5000, "package postgres\n"),
			"tools/gen/go.mod":                {Data: []byte("module gen\n")},
			"tools/gen/main.go":               src(5000, "package main\n"),
			"adapters/postgres/testdata/x.go": src(5000, "package x\n"),
		}, nil},
		{"bootstrap's own files together", fstest.MapFS{
			"go.mod":                {Data: []byte("module " + module + "\n")},
			"bootstrap/app.go":      src(600, "package bootstrap\n"),
			"bootstrap/wire.go":     src(600, "package bootstrap\n"),
			"bootstrap/durable.go":  src(301, "package bootstrap\n"),
			"bootstrap/app_test.go": src(600, "package bootstrap\n"),
		}, []string{"bootstrap/*.go hold 1501 non-test lines"}},
		{"bootstrap's subpackages are rooms of their own", fstest.MapFS{
			"go.mod":                     {Data: []byte("module " + module + "\n")},
			"bootstrap/app.go":           src(600, "package bootstrap\n"),
			"bootstrap/wire.go":          src(600, "package bootstrap\n"),
			"bootstrap/stores/stores.go": src(600, "package stores\n"),
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			checkViolations(t, sizeViolations(readModule(t, c.fsys)), c.want)
		})
	}
}

func TestAssertionRuleCatchesViolations(t *testing.T) {
	t.Parallel()
	pgSpec := `pg "` + module + `/adapters/postgres"`
	pg := "import " + pgSpec + "\n"
	base := fstest.MapFS{
		"go.mod":                     {Data: []byte("module " + module + "\n")},
		"adapters/postgres/store.go": {Data: []byte("package postgres\n\ntype Checkpoints struct{}\ntype Lease struct{}\ntype Querier interface{ Query() }\n")},
		"adapters/memory/lease.go":   {Data: []byte("package memory\n\ntype Lease struct{}\n")},
		"ports/ports.go":             {Data: []byte("package ports\n\ntype Lease interface{ Acquire() }\n")},
	}
	with := func(files map[string]string) fstest.MapFS {
		fsys := fstest.MapFS{}
		for k, v := range base {
			fsys[k] = v
		}
		for k, v := range files {
			fsys[k] = &fstest.MapFile{Data: []byte(v)}
		}
		return fsys
	}
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"an assertion to a pointer, aliased import", map[string]string{
			"bootstrap/http.go": "package bootstrap\n\n" + pg + "\nfunc f(x any) { _ = x.(*pg.Checkpoints) }\n",
		}, []string{"bootstrap/http.go:5: asserts to postgres.Checkpoints"}},
		{"a comma-ok assertion to a value type", map[string]string{
			"application/admin/x.go": "package admin\n\nimport \"" + module + "/adapters/memory\"\n\nfunc f(x any) bool { _, ok := x.(memory.Lease); return ok }\n",
		}, []string{"application/admin/x.go:5: asserts to memory.Lease"}},
		{"a type switch case, in a test", map[string]string{
			"cmd/fraiseql-observer/x_test.go": "package main\n\nimport \"" + module + "/adapters/postgres\"\n\nfunc f(x any) {\n\tswitch x.(type) {\n\tcase int, *postgres.Lease:\n\t}\n}\n",
		}, []string{"cmd/fraiseql-observer/x_test.go:7: asserts to postgres.Lease"}},
		{"another adapter's type", map[string]string{
			"adapters/redis/x.go": "package redis\n\n" + pg + "\nfunc f(x any) { _ = x.(*pg.Lease) }\n",
		}, []string{"adapters/redis/x.go:5: asserts to postgres.Lease"}},
		{"allowed: the adapter's own package and its tests", map[string]string{
			"adapters/postgres/x.go":      "package postgres\n\nfunc f(x any) { _ = x.(*Lease) }\n",
			"adapters/postgres/x_test.go": "package postgres_test\n\nimport \"" + module + "/adapters/postgres\"\n\nfunc f(x any) { _ = x.(*postgres.Lease) }\n",
		}, nil},
		{"allowed: ports, interfaces of an adapter, conversions", map[string]string{
			"bootstrap/x.go": "package bootstrap\n\nimport (\n\t\"" + module + "/ports\"\n\t" + pgSpec + "\n)\n\n" +
				"func f(x any, y *pg.Lease) { _ = x.(ports.Lease); _ = x.(pg.Querier); _ = any(y) }\n",
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			checkViolations(t, adapterAssertions(readModule(t, with(c.files))), c.want)
		})
	}
}

// checkViolations wants exactly one violation per substring of want.
func checkViolations(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("violations %q, want %d matching %q", got, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("violation %q does not say %q", got[i], w)
		}
	}
}
