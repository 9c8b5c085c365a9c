package edgekv_test

// This test pins the layout of DESIGN.md §1:
//
//   - tree and its sub-packages import nothing from broker, hw, runner,
//     boards, cmd or the module root, and outside the standard library only
//     the msgp runtime; tree itself imports none of its sub-packages;
//   - broker, hw and runner never import each other;
//   - boards imports only the standard library and a YAML package;
//   - nothing imports cmd/..., and only cmd/... imports the module root (the
//     assembly);
//   - the pure packages (tree, tree/wire, tree/replica) use no network,
//     files, wall clock, goroutines, locks or global randomness, and every
//     package of the module they depend on, directly or not, is pure too;
//   - the simulator (tree/sim) is deterministic: its own files start no
//     goroutine and use no wall clock or global randomness (it drives the
//     engine, which has goroutines of its own, only step by step);
//   - every package directory has a doc.go with a package comment.
//
// The import graph comes from `go list -e -json ./...`, which reads import
// clauses only, so the test still works while a package does not compile.
// The purity checks parse every non-test .go file of the pure packages,
// whatever its build tags.
//
// When a rule here stops a change that DESIGN.md allows, change DESIGN.md and
// this test together.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// purePackages are the packages, relative to the module root, that must use
// no network, files, wall clock, goroutines, locks or global randomness.
// Missing ones are skipped; at least one must exist. tree/store does file
// I/O and tree/node runs goroutines: they are deliberately not listed.
var purePackages = []string{"tree", "tree/wire", "tree/replica"}

// deterministicPackages must not start goroutines, read the wall clock or
// use global randomness in their own files, but may import impure
// packages (the simulator drives the engine step by step).
var deterministicPackages = []string{"tree/sim"}

// treeExternalAllowed are the import-path prefixes outside the standard
// library and the module that tree/... may import (non-test code).
var treeExternalAllowed = []string{"github.com/tinylib/msgp/"}

// yamlPackages are the YAML packages boards may import.
var yamlPackages = []string{
	"gopkg.in/yaml.v3",
	"go.yaml.in/yaml/v3",
	"go.yaml.in/yaml/v4",
	"github.com/goccy/go-yaml",
	"sigs.k8s.io/yaml",
}

// adapters never import each other.
var adapters = []string{"broker", "hw", "runner"}

// forbiddenPureImports maps an import path (or a prefix ending in "/...")
// to why a pure package may not import it.
var forbiddenPureImports = map[string]string{
	"net":         "network",
	"net/...":     "network",
	"os":          "files and process state",
	"os/...":      "files and processes",
	"io/ioutil":   "files",
	"syscall":     "system calls",
	"sync":        "locks",
	"sync/...":    "shared-memory concurrency",
	"math/rand":   "global randomness (use a seeded math/rand/v2 source passed in)",
	"crypto/rand": "global randomness (pass randomness in)",
	"log":         "the global logger (pure packages return events)",
	"unsafe":      "unsafe memory access",
	"plugin":      "loading code",
}

// forbiddenTimeFuncs are the time package members a pure package may not
// use: they read the wall clock, sleep, or start timers.
var forbiddenTimeFuncs = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true,
	"After": true, "AfterFunc": true, "Tick": true,
	"NewTimer": true, "NewTicker": true, "LoadLocation": true,
}

// allowedRandV2 are the math/rand/v2 members a pure package may use: the
// constructors of seeded sources and the types. Its top-level functions
// (IntN, Float64, Shuffle, ...) use the global source.
var allowedRandV2 = map[string]bool{
	"New": true, "NewPCG": true, "NewChaCha8": true, "NewZipf": true,
	"Rand": true, "Source": true, "PCG": true, "ChaCha8": true, "Zipf": true,
}

// pkg is the part of `go list -json` output the test reads.
type pkg struct {
	ImportPath   string
	Dir          string
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
}

// layout is the module's packages keyed by path relative to the module
// root ("." for the root, "tree/sim", ...).
type layout struct {
	module string
	root   string
	pkgs   map[string]*pkg
}

// loadLayout runs go list once per test binary.
func loadLayout(t *testing.T) *layout {
	t.Helper()
	l, err := loadLayoutOnce()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var loadLayoutOnce = sync.OnceValues(func() (*layout, error) {
	root, err := os.Getwd() // go test runs in the package dir: the module root
	if err != nil {
		return nil, err
	}
	out, err := goCmd("list", "-m")
	if err != nil {
		return nil, err
	}
	module := strings.TrimSpace(out)
	l := &layout{module: module, root: root, pkgs: map[string]*pkg{}}
	// Merge the default build with the invariants build tag (STYLE.md).
	for _, tags := range []string{"", "invariants"} {
		out, err := goCmd("list", "-e", "-json=ImportPath,Dir,Imports,Deps,TestImports,XTestImports", "-tags="+tags, "./...")
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(strings.NewReader(out))
		for {
			var p pkg
			if err := dec.Decode(&p); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("decoding go list output: %w", err)
			}
			rel := l.rel(p.ImportPath)
			if old, ok := l.pkgs[rel]; ok {
				old.Imports = union(old.Imports, p.Imports)
				old.Deps = union(old.Deps, p.Deps)
				old.TestImports = union(old.TestImports, p.TestImports)
				old.XTestImports = union(old.XTestImports, p.XTestImports)
				continue
			}
			l.pkgs[rel] = &p
		}
	}
	if len(l.pkgs) == 0 {
		return nil, errors.New("go list found no packages")
	}
	return l, nil
})

func goCmd(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("go", args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func union(a, b []string) []string {
	s := slices.Concat(a, b)
	slices.Sort(s)
	return slices.Compact(s)
}

// rel returns importPath relative to the module ("." for the module
// itself), or "" when it is outside the module.
func (l *layout) rel(importPath string) string {
	if importPath == l.module {
		return "."
	}
	if r, ok := strings.CutPrefix(importPath, l.module+"/"); ok {
		return r
	}
	return ""
}

// under reports whether rel is dir or inside it.
func under(rel, dir string) bool {
	return rel == dir || strings.HasPrefix(rel, dir+"/")
}

// isStd reports whether importPath is in the standard library: its first
// element has no dot.
func isStd(importPath string) bool {
	first, _, _ := strings.Cut(importPath, "/")
	return !strings.Contains(first, ".")
}

// sortedRels returns the package keys in order.
func (l *layout) sortedRels() []string {
	rels := make([]string, 0, len(l.pkgs))
	for r := range l.pkgs {
		rels = append(rels, r)
	}
	sort.Strings(rels)
	return rels
}

// imported lists what a package uses: its transitive non-test
// dependencies, then the direct imports of its tests, each tagged.
func (l *layout) imported(p *pkg) []edge {
	var es []edge
	for _, d := range p.Deps {
		via := "imports"
		if !slices.Contains(p.Imports, d) {
			via = "depends (indirectly) on"
		}
		es = append(es, edge{d, via})
	}
	for _, d := range p.TestImports {
		es = append(es, edge{d, "imports in its tests"})
	}
	for _, d := range p.XTestImports {
		es = append(es, edge{d, "imports in its external tests"})
	}
	return es
}

type edge struct {
	to  string // import path
	via string // "imports", "depends (indirectly) on", ...
}

func TestImportDirection(t *testing.T) {
	l := loadLayout(t)
	for _, rel := range l.sortedRels() {
		p := l.pkgs[rel]
		for _, e := range l.imported(p) {
			to := l.rel(e.to)
			if to == "" || to == rel {
				continue // outside the module, or a package's own external test
			}
			// Nothing imports cmd/...
			if under(to, "cmd") {
				t.Errorf("%s %s %s: nothing may import cmd/... (DESIGN.md §1)", rel, e.via, to)
				continue
			}
			// tree/... imports no adapter, boards, cmd or assembly.
			if under(rel, "tree") {
				for _, bad := range []string{"broker", "hw", "runner", "boards"} {
					if under(to, bad) {
						t.Errorf("%s %s %s: tree/... may import only tree/..., the standard library and msgp (DESIGN.md §1)", rel, e.via, to)
					}
				}
			}
			// Only the command line imports the assembly.
			if to == "." && !under(rel, "cmd") && !strings.HasSuffix(e.via, "tests") {
				t.Errorf("%s %s the module root: only cmd/... may import the assembly (DESIGN.md §1)", rel, e.via)
			}
			// broker, hw and runner never import each other.
			for _, a := range adapters {
				if !under(rel, a) {
					continue
				}
				for _, b := range adapters {
					if b != a && under(to, b) {
						t.Errorf("%s %s %s: broker, hw and runner never import each other; they meet in cmd/edgekv through interfaces (DESIGN.md §1)", rel, e.via, to)
					}
				}
			}
		}
	}
}

func TestTreeImports(t *testing.T) {
	l := loadLayout(t)
	for _, rel := range l.sortedRels() {
		if !under(rel, "tree") {
			continue
		}
		for _, imp := range l.pkgs[rel].Imports {
			to := l.rel(imp)
			switch {
			case isStd(imp):
			case to != "":
				if rel == "tree" && under(to, "tree") {
					t.Errorf("tree imports %s: the core imports none of its sub-packages; they import it (DESIGN.md §1)", to)
				}
				// Other module packages are reported by TestImportDirection.
			case !slices.ContainsFunc(treeExternalAllowed, func(prefix string) bool {
				return imp+"/" == prefix || strings.HasPrefix(imp, prefix)
			}):
				t.Errorf("%s imports %s: tree/... may import only the standard library, msgp and tree/... (DESIGN.md §1)", rel, imp)
			}
		}
	}
}

func TestBoardsImports(t *testing.T) {
	l := loadLayout(t)
	for _, rel := range l.sortedRels() {
		if !under(rel, "boards") {
			continue
		}
		for _, imp := range l.pkgs[rel].Imports {
			if isStd(imp) || under(l.rel(imp), "boards") || slices.Contains(yamlPackages, imp) {
				continue
			}
			t.Errorf("%s imports %s: boards may import only the standard library and a YAML package (DESIGN.md §1)", rel, imp)
		}
	}
}

// TestPureDependencies: everything of the module that a pure package
// depends on, directly or through others, is pure itself.
func TestPureDependencies(t *testing.T) {
	l := loadLayout(t)
	for _, rel := range purePackages {
		p := l.pkgs[rel]
		if p == nil {
			continue
		}
		for _, d := range p.Deps {
			to := l.rel(d)
			if to == "" || to == rel {
				continue
			}
			if !slices.Contains(purePackages, to) {
				t.Errorf("pure package %s depends on %s, which is not pure (DESIGN.md §1: a pure package's dependencies are pure too)", rel, to)
			}
		}
	}
}

func TestPurePackages(t *testing.T) {
	l := loadLayout(t)
	found := 0
	for _, rel := range slices.Concat(purePackages, deterministicPackages) {
		deterministic := slices.Contains(deterministicPackages, rel)
		dir := filepath.Join(l.root, filepath.FromSlash(rel))
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, "_test.go") })
		if len(files) == 0 {
			continue // not written yet
		}
		found++
		for _, f := range files {
			for _, problem := range purityProblems(t, l.root, f, deterministic) {
				t.Error(problem)
			}
		}
	}
	if found == 0 {
		t.Fatalf("none of the pure packages %v exists", purePackages)
	}
}

// purityProblems parses one file and returns a message per forbidden
// import, wall-clock or timer use, global randomness use and go statement.
// For a deterministic (not pure) package only the go statements, clocks and
// global randomness count: it may import file and lock packages.
func purityProblems(t *testing.T, root, file string, deterministic bool) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Errorf("parsing %s: %v", file, err)
		return nil
	}
	relFile, err := filepath.Rel(root, file)
	if err != nil {
		relFile = file
	}
	relFile = filepath.ToSlash(relFile)
	at := func(pos token.Pos) string {
		return fmt.Sprintf("%s:%d", relFile, fset.Position(pos).Line)
	}

	var problems []string
	var timeName, randV2Name string // local names of time and math/rand/v2
	for _, spec := range f.Imports {
		imp, err := strconv.Unquote(spec.Path.Value)
		if err != nil {
			continue
		}
		if why, bad := forbiddenImport(imp); bad && (!deterministic || imp == "math/rand" || imp == "crypto/rand") {
			problems = append(problems, fmt.Sprintf("%s: pure package imports %q (%s); pure packages take I/O, clocks and randomness from their caller (DESIGN.md §1)", at(spec.Pos()), imp, why))
			continue
		}
		name := path.Base(imp)
		if imp == "math/rand/v2" {
			name = "rand"
		}
		if spec.Name != nil {
			name = spec.Name.Name
		}
		if name == "." && (imp == "time" || imp == "math/rand/v2") {
			problems = append(problems, fmt.Sprintf("%s: pure package dot-imports %q; import it by name so its uses can be checked", at(spec.Pos()), imp))
		}
		switch imp {
		case "time":
			timeName = name
		case "math/rand/v2":
			randV2Name = name
		}
	}

	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			problems = append(problems, fmt.Sprintf("%s: pure package starts a goroutine (go statement); return work to the caller instead", at(n.Pos())))
		case *ast.SelectorExpr:
			x, ok := n.X.(*ast.Ident)
			if !ok {
				break
			}
			switch {
			case timeName != "" && x.Name == timeName && forbiddenTimeFuncs[n.Sel.Name]:
				problems = append(problems, fmt.Sprintf("%s: pure package uses time.%s (wall clock or timer); take the time or clock as a parameter", at(n.Pos()), n.Sel.Name))
			case randV2Name != "" && x.Name == randV2Name && !allowedRandV2[n.Sel.Name]:
				problems = append(problems, fmt.Sprintf("%s: pure package uses rand.%s from math/rand/v2 (global source); use a *rand.Rand passed in", at(n.Pos()), n.Sel.Name))
			}
		}
		return true
	})
	return problems
}

// forbiddenImport reports whether a pure package may not import imp, and why.
func forbiddenImport(imp string) (why string, bad bool) {
	if why, ok := forbiddenPureImports[imp]; ok {
		return why, true
	}
	for pattern, why := range forbiddenPureImports {
		if prefix, ok := strings.CutSuffix(pattern, "/..."); ok && strings.HasPrefix(imp, prefix+"/") {
			return why, true
		}
	}
	return "", false
}

func TestDocGo(t *testing.T) {
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir // the go command ignores these too
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if p != root {
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		goFiles, _ := filepath.Glob(filepath.Join(p, "*.go"))
		if len(goFiles) == 0 {
			return nil
		}
		doc := filepath.Join(p, "doc.go")
		if _, err := os.Stat(doc); err != nil {
			t.Errorf("%s/: package directory has no doc.go (STYLE.md: what it owns, what it may import, its concurrency contract)", rel)
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), doc, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Errorf("%s/doc.go: %v", rel, err)
			return nil
		}
		if f.Doc == nil || strings.TrimSpace(f.Doc.Text()) == "" {
			t.Errorf("%s/doc.go:1: doc.go has no package comment", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
