package wire

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// fixtureDir is where the MoaT-KV 0.70.22 reference fixtures live.
func fixtureDir(t testing.TB) string {
	t.Helper()
	for _, d := range []string{
		os.Getenv("EDGEKV_MOATKV_TESTDATA"),
		filepath.Join("..", "..", "testdata", "moatkv"),
	} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "bus-index.tsv")); err == nil {
			return d
		}
	}
	t.Fatal("MoaT-KV fixtures not found (testdata/moatkv; or set EDGEKV_MOATKV_TESTDATA)")
	return ""
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// busFile is one row of bus-index.tsv.
type busFile struct {
	File, Phase, Broker, Topic string
	Size                       int
	Decoded                    string // the Python one-liner
	Reassembled                string // for the last chunk of a series
}

// Kind is the file name's kind: set, delete, recovery, chunk, init, ping, …
func (f busFile) Kind() string {
	s := strings.TrimSuffix(f.File, ".bin")
	i := strings.LastIndexByte(s, '-')
	k := s[i+1:]
	if strings.HasSuffix(s, "recovery-delete") {
		k = "recovery-delete"
	}
	return k
}

func busIndex(t testing.TB) []busFile {
	t.Helper()
	data := readFixture(t, "bus-index.tsv")
	var out []busFile
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 7 || cols[0] == "file" {
			continue
		}
		size, err := strconv.Atoi(cols[4])
		if err != nil {
			t.Fatalf("bus-index.tsv: %s: size %q", cols[0], cols[4])
		}
		f := busFile{File: cols[0], Phase: cols[1], Broker: cols[2], Topic: cols[3], Size: size, Decoded: cols[6]}
		if i := strings.Index(f.Decoded, "  => reassembled "); i >= 0 {
			f.Reassembled = f.Decoded[i:]
			f.Decoded = f.Decoded[:i]
			f.Reassembled = f.Reassembled[strings.Index(f.Reassembled, ": ")+2:]
		}
		out = append(out, f)
	}
	return out
}

// readmeListing returns the decoded one-liners README.md shows for a .dkv
// file, in order.
func readmeListing(t testing.TB, file string) []string {
	t.Helper()
	var out []string
	in := false
	for _, line := range strings.Split(string(readFixture(t, "README.md")), "\n") {
		if strings.HasPrefix(line, "### ") {
			in = strings.HasPrefix(line, "### "+file+" ")
			continue
		}
		if in && strings.HasPrefix(line, "    {") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	if len(out) == 0 {
		t.Fatalf("README.md has no listing for %s", file)
	}
	return out
}

// pyBytes is a Python bytes value.
type pyBytes string

// pyPath is a MoaT Path[...] value.
type pyPath []any

// parsePy parses the Python literals the fixtures' one-liners use: dicts,
// lists, tuples, str, bytes, int, float, None, True, False and Path[...].
// A str shown as 'xxx…(N chars)' expands to N copies of its first rune.
func parsePy(s string) (any, error) {
	p := &pyParser{s: s}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("trailing text at %d: %q", p.i, p.s[p.i:])
	}
	return v, nil
}

func mustPy(t testing.TB, s string) any {
	t.Helper()
	v, err := parsePy(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return v
}

type pyParser struct {
	s string
	i int
}

func (p *pyParser) ws() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *pyParser) eat(tok string) bool {
	p.ws()
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

func (p *pyParser) value() (any, error) {
	p.ws()
	switch {
	case p.eat("{"):
		m := map[string]any{}
		for !p.eat("}") {
			k, err := p.value()
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("dict key %v is not a str", k)
			}
			if !p.eat(":") {
				return nil, fmt.Errorf("want ':' at %d", p.i)
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			m[ks] = v
			p.eat(",")
		}
		return m, nil
	case p.eat("Path["):
		l, err := p.seq("]")
		return pyPath(l), err
	case p.eat("["):
		return p.seq("]")
	case p.eat("("):
		return p.seq(")")
	case p.eat("None"):
		return nil, nil
	case p.eat("True"):
		return true, nil
	case p.eat("False"):
		return false, nil
	case p.eat("b'"), p.eat(`b"`):
		s, err := p.str(p.s[p.i-1])
		return pyBytes(s), err
	case p.eat("'"), p.eat(`"`):
		s, err := p.str(p.s[p.i-1])
		if err != nil {
			return nil, err
		}
		if i := strings.Index(s, "…("); i > 0 && strings.HasSuffix(s, " chars)") {
			n, err := strconv.Atoi(s[i+len("…(") : len(s)-len(" chars)")])
			if err != nil {
				return nil, err
			}
			r, _ := utf8.DecodeRuneInString(s)
			s = strings.Repeat(string(r), n)
		}
		return s, nil
	}
	j := p.i
	for j < len(p.s) && strings.IndexByte("-+0123456789.e", p.s[j]) >= 0 {
		j++
	}
	num := p.s[p.i:j]
	if num == "" {
		return nil, fmt.Errorf("unexpected %q at %d", p.s[p.i:], p.i)
	}
	p.i = j
	if strings.ContainsAny(num, ".e") {
		return strconv.ParseFloat(num, 64)
	}
	return strconv.ParseInt(num, 10, 64)
}

func (p *pyParser) seq(end string) ([]any, error) {
	l := []any{}
	for !p.eat(end) {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		l = append(l, v)
		p.eat(",")
		if p.i >= len(p.s) {
			return nil, fmt.Errorf("unterminated sequence")
		}
	}
	return l, nil
}

func (p *pyParser) str(q byte) (string, error) {
	var sb strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == q:
			return sb.String(), nil
		case c == '\\' && p.i < len(p.s):
			e := p.s[p.i]
			p.i++
			switch e {
			case 'x':
				v, err := strconv.ParseUint(p.s[p.i:p.i+2], 16, 8)
				if err != nil {
					return "", err
				}
				sb.WriteByte(byte(v))
				p.i += 2
			case 'n':
				sb.WriteByte('\n')
			case 't':
				sb.WriteByte('\t')
			default:
				sb.WriteByte(e)
			}
		default:
			sb.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated string")
}

// pyOf converts a msgpack value to the form parsePy produces.
func pyOf(t testing.TB, raw []byte) any {
	t.Helper()
	v, rest, err := msgp.ReadIntfBytes(raw)
	if err != nil || len(rest) != 0 {
		t.Fatalf("value % x: %v (%d bytes left)", raw, err, len(rest))
	}
	return pyNorm(v)
}

func pyNorm(v any) any {
	switch x := v.(type) {
	case uint64:
		return int64(x)
	case int64, float64, string, bool, nil:
		return x
	case []byte:
		return pyBytes(x)
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = pyNorm(x[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = pyNorm(e)
		}
		return out
	}
	return fmt.Sprintf("unexpected %T %v", v, v)
}

// pyOfPath converts a path to parsePy's Path[...] form.
func pyOfPath(p tree.Path) pyPath {
	out := pyPath{}
	for _, e := range p {
		switch e.Kind() {
		case tree.KindNil:
			out = append(out, nil)
		case tree.KindBool:
			out = append(out, e.BoolVal())
		case tree.KindInt:
			out = append(out, e.IntVal())
		case tree.KindFloat:
			out = append(out, e.FloatVal())
		case tree.KindString:
			out = append(out, e.StrVal())
		case tree.KindBytes:
			out = append(out, pyBytes(e.BytesVal()))
		}
	}
	return out
}

// pyOfChain converts a chain to nested {node, tick, prev} dicts.
func pyOfChain(c tree.Chain) any {
	if len(c) == 0 {
		return nil
	}
	return map[string]any{"node": c[0].Node, "tick": int64(c[0].Tick), "prev": pyOfChain(c[1:])}
}

// pyOfRangeSet converts a range set to MoaT's list form.
func pyOfRangeSet(s tree.RangeSet) []any {
	out := []any{}
	for _, r := range s.Ranges() {
		if r.End == r.Start+1 {
			out = append(out, int64(r.Start))
		} else {
			out = append(out, []any{int64(r.Start), int64(r.End)})
		}
	}
	return out
}

func pyOfRangeSetMap(m map[string]tree.RangeSet) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = pyOfRangeSet(v)
	}
	return out
}

func pyOfTickMap(m map[string]uint64) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = int64(v)
	}
	return out
}

// pyOfUpdate rebuilds the message dict an update was decoded from.
func pyOfUpdate(t testing.TB, u Update) map[string]any {
	t.Helper()
	m := map[string]any{"path": pyOfPath(u.Event.Path), "tock": int64(u.Event.Tock)}
	if u.Event.Value != nil {
		m["value"] = pyOf(t, u.Event.Value)
	}
	if u.Recovery {
		m["chain"] = pyOfChain(u.Event.Chain)
	} else {
		m["prev"] = pyOfChain(u.Event.Chain[1:])
	}
	m["node"] = u.Sender
	m["tick"] = int64(u.SenderTick)
	return m
}

func ticksOfSet(s tree.RangeSet) []int64 {
	var out []int64
	s.All(func(x uint64) bool { out = append(out, int64(x)); return true })
	return out
}

// ev builds an event for tests: path text, raw value (nil: deletion),
// tock, and chain as alternating node, tick.
func ev(t testing.TB, path string, value []byte, tock uint64, chain ...any) tree.Event {
	t.Helper()
	p, err := tree.ParsePath(path)
	if err != nil {
		t.Fatal(err)
	}
	var c tree.Chain
	for i := 0; i+1 < len(chain); i += 2 {
		c = append(c, tree.Link{Node: chain[i].(string), Tick: uint64(chain[i+1].(int))})
	}
	return tree.Event{Path: p, Value: value, Chain: c, Tock: tock}
}

// str encodes a msgpack string value.
func str(s string) []byte { return msgp.AppendString(nil, s) }

// cmpOpts compare range sets by content and treat nil and empty alike.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b tree.RangeSet) bool { return a.Equal(b) }),
	cmpopts.EquateEmpty(),
	cmp.Comparer(func(a, b tree.Elem) bool { return a == b }),
}
