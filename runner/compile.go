package runner

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/d5/tengo/v2"
	"github.com/d5/tengo/v2/stdlib"

	"github.com/edgekv/edgekv/tree"
)

// Limits bound what one activation of a job may do.
type Limits struct {
	// MaxAllocs bounds the objects one activation allocates (tengo's
	// SetMaxAllocs). Default 200,000.
	MaxAllocs int64
	// Activation bounds the wall time of one activation. Default 1 s.
	Activation time.Duration
	// MaxHeap stops an activation under which the node's heap grows by
	// more than this. Default 64 MiB.
	MaxHeap uint64
}

func (l Limits) withDefaults() Limits {
	if l.MaxAllocs == 0 {
		l.MaxAllocs = 200_000
	}
	if l.Activation == 0 {
		l.Activation = time.Second
	}
	if l.MaxHeap == 0 {
		l.MaxHeap = 64 << 20
	}
	return l
}

// The sandbox. A job sees only these standard modules, and of them not
// what reaches outside the node or cannot be cancelled: times.sleep (the
// VM cannot abort it), fmt's print functions (the node's standard output).
// os is left out entirely.
var allowedModules = []string{"math", "text", "times", "rand", "fmt", "json", "base64", "hex", "enum"}

func init() {
	// One string or byte slice may not exceed 1 MiB (tengo's default is
	// 2 GiB: "x" * 1e9 would take the node's memory).
	tengo.MaxStringLen = 1 << 20
	tengo.MaxBytesLen = 1 << 20
}

// stdModules returns the allowed standard modules, sleep and print left out.
func stdModules() *tengo.ModuleMap {
	mods := tengo.NewModuleMap()
	for _, name := range allowedModules {
		if src, ok := stdlib.SourceModules[name]; ok {
			mods.AddSourceModule(name, []byte(src))
			continue
		}
		attrs := maps.Clone(stdlib.BuiltinModules[name])
		wrap := func(fn string, f tengo.CallableFunc) {
			attrs[fn] = &tengo.UserFunction{Name: fn, Value: f}
		}
		switch name {
		case "times":
			delete(attrs, "sleep")
		case "fmt":
			delete(attrs, "print")
			delete(attrs, "printf")
			delete(attrs, "println")
			wrap("sprintf", guarded("fmt.sprintf", attrs["sprintf"].(*tengo.UserFunction).Value))
		case "json":
			wrap("encode", guarded("json.encode", attrs["encode"].(*tengo.UserFunction).Value))
			wrap("indent", guarded("json.indent", attrs["indent"].(*tengo.UserFunction).Value))
		case "text":
			wrap("replace", safeReplace)
		}
		mods.AddBuiltinModule(name, attrs)
	}
	return mods
}

// globals every job's code sees (set per activation).
var runnerGlobals = []string{"kv", "event", "state", "data", "result"}

// compiled is one version of a code entry, compiled with the modules of
// the tree at that time; each activation runs a clone.
type compiled struct {
	path tree.Path
	code Code
	prog *tengo.Compiled
	err  error // compile error (prog nil)
}

// compile compiles c's text with the job globals, the code's variables
// and modules (tree modules by their path's text, "a.b", and the allowed
// standard ones).
func compile(path tree.Path, c Code, modules map[string]string, lim Limits) *compiled {
	out := &compiled{path: path, code: c}
	s := tengo.NewScript([]byte(c.Text))
	mods := stdModules()
	names := make([]string, 0, len(modules))
	for name := range modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		mods.AddSourceModule(name, []byte(modules[name]))
	}
	s.SetImports(mods)
	s.SetMaxAllocs(lim.MaxAllocs)
	s.SetMaxConstObjects(100_000)
	vars := append([]string(nil), runnerGlobals...)
	vars = append(vars, c.Vars...)
	for k := range c.Default {
		vars = append(vars, k)
	}
	for _, v := range vars {
		_ = s.Add(v, nil) // declared; set per activation (a name given twice is fine)
	}
	prog, err := s.Compile()
	if err != nil {
		out.err = fmt.Errorf("compile %s: %s", path, strings.TrimSpace(err.Error()))
		return out
	}
	out.prog = prog
	return out
}
