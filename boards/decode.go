package boards

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits that keep a hostile or broken file from costing much.
const (
	// MaxConfigBytes is the largest config file Parse reads.
	MaxConfigBytes = 1 << 20
	// maxNodes bounds the YAML nodes visited, aliases counted each time.
	maxNodes = 100_000
	// maxDepth bounds nesting, merges included (the schema needs 4).
	maxDepth = 16
)

// Load reads and parses the config file at path (see Parse). A file that
// cannot be read gives a plain error; a file that can gives a *ConfigError
// naming path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("boards: reading config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a YAML board config, fills in the defaults of what is
// absent (DefaultConfig) and validates the result. source names the config
// in problems ("configs/mesh/board1.yaml").
//
// Every problem is reported at once, in one *ConfigError, each with its
// YAML path and line: YAML syntax errors (with the parser's line), unknown
// and duplicate keys, values of the wrong type, and everything Validate
// checks, except that the node name may be absent (to be given with
// SetNode). Parse never panics.
func Parse(data []byte, source string) (*Config, error) {
	c := DefaultConfig("")
	c.source = source
	c.lines = map[string]int{}
	fail := func(p Problem) (*Config, error) {
		return nil, &ConfigError{Source: source, Problems: []Problem{p}}
	}
	if len(data) > MaxConfigBytes {
		return fail(Problem{Msg: fmt.Sprintf("config is %d bytes, more than the %d allowed", len(data), MaxConfigBytes)})
	}
	doc, p := parseYAML(data)
	if p != nil {
		return fail(*p)
	}
	d := decoder{lines: c.lines, budget: maxNodes}
	if doc != nil {
		d.value(doc, reflect.ValueOf(c).Elem(), "", 0)
	}
	if c.Data.Dir == "" && c.Node != "" {
		c.Data.Dir = DefaultDataDir(c.Node)
	}
	problems := d.problems
	for _, p := range c.check(false, nil) {
		if !d.failed(p.Path) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return nil, &ConfigError{Source: source, Problems: sortProblems(problems)}
	}
	return c, nil
}

// yamlLineError matches the YAML parser's "yaml: line N: msg" errors.
var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses data as one YAML document and returns its root node
// (nil for an empty document), or the syntax error as a problem.
func parseYAML(data []byte) (root *yaml.Node, problem *Problem) {
	defer func() {
		// The parser is not ours: a bug in it must not take the node down.
		if r := recover(); r != nil {
			root, problem = nil, &Problem{Msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil // empty, or only comments
	} else if err != nil {
		return nil, syntaxProblem(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxProblem(err)
	default:
		return nil, &Problem{Line: next.Line, Msg: "a second YAML document: a config file holds one"}
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return &doc, nil
}

func syntaxProblem(err error) *Problem {
	msg := err.Error()
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		if line, err := strconv.Atoi(m[1]); err == nil {
			return &Problem{Line: line, Msg: "YAML: " + m[2]}
		}
	}
	return &Problem{Msg: "YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// sortProblems orders problems by line, those without a line last, keeping
// the order of problems on one line.
func sortProblems(ps []Problem) []Problem {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = int(^uint(0) >> 1)
		}
		if lb == 0 {
			lb = int(^uint(0) >> 1)
		}
		return la - lb
	})
	return ps
}

// decoder walks a YAML node tree into a Config by the yaml tags of its
// fields, recording the line of every path and a problem for every key or
// value it cannot take, and carries on after each.
type decoder struct {
	problems []Problem
	bad      []string // paths whose values could not be decoded
	lines    map[string]int
	budget   int  // YAML nodes left to visit
	overrun  bool // budget or depth exceeded (reported once)
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

func (d *decoder) problem(path string, line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// typeError records a value at path that cannot be decoded.
func (d *decoder) typeError(path string, line int, format string, args ...any) {
	d.bad = append(d.bad, path)
	d.problem(path, line, format, args...)
}

// failed reports whether path, or a path it is under, could not be
// decoded: validating what is there would only repeat the problem.
func (d *decoder) failed(path string) bool {
	for _, b := range d.bad {
		if path == b || b == "" ||
			strings.HasPrefix(path, b) && (path[len(b)] == '.' || path[len(b)] == '[') {
			return true
		}
	}
	return false
}

// value decodes n into v (addressable) at the YAML path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.budget--
	if d.budget < 0 || depth > maxDepth {
		if !d.overrun {
			d.overrun = true
			d.typeError(path, n.Line, "config too large or nested too deeply (aliases counted at each use)")
		}
		return
	}
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = n.Line
	}
	null := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"

	if v.Type() == durationType {
		dur, msg := parseDuration(n)
		if msg != "" {
			d.typeError(path, n.Line, "%s", msg)
			return
		}
		v.Set(reflect.ValueOf(dur))
		return
	}
	if v.Type() == sizeType {
		size, msg := parseSize(n)
		if msg != "" {
			d.typeError(path, n.Line, "%s", msg)
			return
		}
		v.Set(reflect.ValueOf(size))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if null {
			return // "listen:" with nothing under it keeps the defaults
		}
		if n.Kind != yaml.MappingNode {
			d.typeError(path, n.Line, "want a mapping, got %s", describe(n))
			return
		}
		d.mapping(n, v, path, depth, map[string]bool{})
	case reflect.Pointer:
		if null {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path, depth)
	case reflect.Slice:
		if null {
			v.SetZero()
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.typeError(path, n.Line, "want a list, got %s", describe(n))
			return
		}
		if len(n.Content) == 0 {
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
		v.Set(s)
	case reflect.String:
		switch {
		case null:
			v.SetString("")
		case n.Kind != yaml.ScalarNode:
			d.typeError(path, n.Line, "want a string, got %s", describe(n))
		default:
			v.SetString(n.Value)
		}
	case reflect.Int:
		var i int64
		if n.Kind != yaml.ScalarNode || null || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.typeError(path, n.Line, "want an integer, got %s", describe(n))
			return
		}
		if v.OverflowInt(i) {
			d.typeError(path, n.Line, "%s is out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || null || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") || n.Decode(&f) != nil {
			d.typeError(path, n.Line, "want a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || null || n.Decode(&b) != nil {
			d.typeError(path, n.Line, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		panic(fmt.Sprintf("boards: no decoder for %s at %s", v.Type(), path)) // programmer error
	}
}

// mapping decodes the keys of the mapping n into the struct v, skipping
// keys in done (set by an enclosing mapping that merges n with "<<") and
// adding its own.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, depth int, done map[string]bool) {
	fields := structFields(v.Type())
	first := map[string]int{} // key → line, for duplicates
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.ShortTag() == "!!merge") {
			merges = append(merges, val)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.problem(path, k.Line, "a key must be a string, got %s", describe(k))
			continue
		}
		sub := joinPath(path, k.Value)
		if l, dup := first[k.Value]; dup {
			d.problem(sub, k.Line, "duplicate key (first at line %d)", l)
			continue
		}
		first[k.Value] = k.Line
		if done[k.Value] {
			continue // an explicit key of the merging mapping wins
		}
		fi, ok := fields[k.Value]
		if !ok {
			d.problem(sub, k.Line, "unknown key%s", suggest(k.Value, fields))
			continue
		}
		d.value(val, v.Field(fi), sub, depth+1)
	}
	for k := range first {
		done[k] = true
	}
	// YAML merge keys: "<<: *base" or "<<: [*a, *b]"; the mapping's own
	// keys win, then earlier merged mappings over later ones.
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			line := src.Line
			if src.Kind == yaml.AliasNode && src.Alias != nil {
				src = src.Alias
			}
			d.budget--
			if d.budget < 0 || depth+1 > maxDepth {
				if !d.overrun {
					d.overrun = true
					d.typeError(path, line, "config too large or nested too deeply (aliases counted at each use)")
				}
				return
			}
			if src.Kind != yaml.MappingNode {
				d.problem(joinPath(path, "<<"), line, "want a mapping (or a list of them) to merge, got %s", describe(src))
				d.bad = append(d.bad, path) // what it lacks may be missing
				continue
			}
			d.mapping(src, v, path, depth+1, done)
		}
	}
}

// structFields maps the yaml keys of struct type t to field indexes.
func structFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names the nearest known key to an unknown one, or lists them.
func suggest(key string, fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	lower := strings.ToLower(key)
	best, bestDist := "", 3
	for _, name := range names {
		dist := editDistance(lower, name)
		if len(lower) >= 3 && (strings.HasPrefix(lower, name) || strings.HasPrefix(name, lower)) {
			dist = min(dist, 1) // "address" for "addr", "log" for "log_level"
		}
		if dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

// editDistance is the Levenshtein distance between short strings a and b
// (at most 64 bytes of each are compared).
func editDistance(a, b string) int {
	a, b = a[:min(len(a), 64)], b[:min(len(b), 64)]
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names what a node holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!str":
			return fmt.Sprintf("the string %q", truncate(n.Value))
		case "!!int":
			return "the integer " + truncate(n.Value)
		case "!!float":
			return "the number " + truncate(n.Value)
		case "!!bool":
			return "the boolean " + truncate(n.Value)
		}
		return fmt.Sprintf("%q", truncate(n.Value))
	}
	return "nothing"
}

// truncate shortens s for a message.
func truncate(s string) string {
	const maxLen = 60
	if len(s) <= maxLen {
		return s
	}
	cut := maxLen
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
