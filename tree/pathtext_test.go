package tree

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ptPath is a short constructor for test paths.
func ptPath(elems ...Elem) Path {
	if elems == nil {
		return Path{}
	}
	return Path(elems)
}

// ptTextCases are valid texts: Parse(text) == path and path.String() ==
// canon (canon "" means text itself is canonical).
var ptTextCases = []struct {
	name  string
	text  string
	path  Path
	canon string
}{
	// Fixture forms: MoaT's own str(Path) output.
	{"fixture int 123", "fx.ints:123", ptPath(Str("fx"), Str("ints"), Int(123)), ""},
	{"fixture int 0", "fx.ints:0", ptPath(Str("fx"), Str("ints"), Int(0)), ""},
	{"fixture int -1", "fx.ints:-1", ptPath(Str("fx"), Str("ints"), Int(-1)), ""},
	{"fixture bool true", "fx.bools:t", ptPath(Str("fx"), Str("bools"), Bool(true)), ""},
	{"fixture bool false", "fx.bools:f", ptPath(Str("fx"), Str("bools"), Bool(false)), ""},
	{"fixture bytes", "fx.bin:sAQI=", ptPath(Str("fx"), Str("bin"), Bytes([]byte{1, 2})), ""},
	{"fixture float", "fx.floats:1:.5", ptPath(Str("fx"), Str("floats"), Float(1.5)), ""},
	{"fixture strings", "fx.str:_el.with:.dot.123", ptPath(Str("fx"), Str("str el"), Str("with.dot"), Str("123")), ""},
	{"fixture meta", ":n.actor.del", ptPath(Nil(), Str("actor"), Str("del")), ""},
	{"fixture deep", "fx.deep.l3.l4.l5.l6.l7.l8", ptPath(Str("fx"), Str("deep"), Str("l3"), Str("l4"), Str("l5"), Str("l6"), Str("l7"), Str("l8")), ""},

	// Canonical forms.
	{"root colon", ":", ptPath(), ""},
	{"root empty string", "", ptPath(), ":"},
	{"single", "a", ptPath(Str("a")), ""},
	{"empty string elem", ":e", ptPath(Str("")), ""},
	{"empty strings", ":e:e", ptPath(Str(""), Str("")), ""},
	{"empty string middle", "a:e.b", ptPath(Str("a"), Str(""), Str("b")), ""},
	{"nil alone", ":n", ptPath(Nil()), ""},
	{"nil then int", ":n:1", ptPath(Nil(), Int(1)), ""},
	{"int then string", ":1.a", ptPath(Int(1), Str("a")), ""},
	{"bool then string", ":t.a", ptPath(Bool(true), Str("a")), ""},
	{"colon in string", "a::b", ptPath(Str("a:b")), ""},
	{"colons only", "::::", ptPath(Str("::")), ""},
	{"leading dot in string", ":.a", ptPath(Str(".a")), ""},
	{"leading space in string", ":_a", ptPath(Str(" a")), ""},
	{"underscore is literal", "a_b._", ptPath(Str("a_b"), Str("_")), ""},
	{"digits are a string", "123.-1.1:.5", ptPath(Str("123"), Str("-1"), Str("1.5")), ""},
	{"escape letters are a string", "t.f.n.e.x1", ptPath(Str("t"), Str("f"), Str("n"), Str("e"), Str("x1")), ""},
	{"utf8", "grüße.日本", ptPath(Str("grüße"), Str("日本")), ""},
	{"control chars", "a\tb\n", ptPath(Str("a\tb\n")), ""},
	{"int max", ":9223372036854775807", ptPath(Int(math.MaxInt64)), ""},
	{"int min", ":-9223372036854775808", ptPath(Int(math.MinInt64)), ""},
	{"float one", ":1:.0", ptPath(Float(1)), ""},
	{"float zero", ":0:.0", ptPath(Float(0)), ""},
	{"float negative", ":-2:.5", ptPath(Float(-2.5)), ""},
	{"float big exp", ":1e+100", ptPath(Float(1e100)), ""},
	{"float 1e16", ":1e+16", ptPath(Float(1e16)), ""},
	{"float 1e15", ":1000000000000000:.0", ptPath(Float(1e15)), ""},
	{"float small", ":1:.5e-07", ptPath(Float(1.5e-7)), ""},
	{"float 0.0001", ":0:.0001", ptPath(Float(0.0001)), ""},
	{"float third", ":0:.3333333333333333", ptPath(Float(1.0 / 3)), ""},
	{"float max", ":1:.7976931348623157e+308", ptPath(Float(math.MaxFloat64)), ""},
	{"float denormal", ":5e-324", ptPath(Float(5e-324)), ""},
	{"float +inf", ":iinf", ptPath(Float(math.Inf(1))), ""},
	{"float -inf", ":-inf", ptPath(Float(math.Inf(-1))), ""},
	{"bytes empty", ":s", ptPath(Bytes(nil)), ""},
	{"bytes empty then string", ":s.a", ptPath(Bytes(nil), Str("a")), ""},
	{"bytes high", ":s+vv8/f7/", ptPath(Bytes([]byte{250, 251, 252, 253, 254, 255})), ""},
	{"mixed", "a:t:f:1:2:.5:sAA==.b", ptPath(Str("a"), Bool(true), Bool(false), Int(1), Float(2.5), Bytes([]byte{0}), Str("b")), ""},

	// Accepted non-canonical forms.
	{"hex int", ":x1f", ptPath(Int(31)), ":31"},
	{"hex int prefix", ":x0x1F", ptPath(Int(31)), ":31"},
	{"hex int negative", ":x-1f", ptPath(Int(-31)), ":-31"},
	{"hex int underscore", ":xff_ff", ptPath(Int(0xffff)), ":65535"},
	{"binary int", ":b101", ptPath(Int(5)), ":5"},
	{"binary int prefix", ":b0b11", ptPath(Int(3)), ":3"},
	{"i literal", ":i42", ptPath(Int(42)), ":42"},
	{"plus sign", ":+5", ptPath(Int(5)), ":5"},
	{"underscore int", ":1_000", ptPath(Int(1000)), ":1000"},
	{"python hex literal", ":0x1f", ptPath(Int(31)), ":31"},
	{"python octal literal", ":0o17", ptPath(Int(15)), ":15"},
	{"python binary literal", ":0b11", ptPath(Int(3)), ":3"},
	{"zeros", ":00", ptPath(Int(0)), ":0"},
	{"float exp only", ":1e3", ptPath(Float(1000)), ":1000:.0"},
	{"float trailing dot", ":1:.", ptPath(Float(1)), ":1:.0"},
	{"float leading zeros", ":01:.5", ptPath(Float(1.5)), ":1:.5"},
	{"float underscores", ":1_0:.2_5", ptPath(Float(10.25)), ":10:.25"},
	{"float negative zero", ":-0:.0", ptPath(Float(0)), ":0:.0"},
	{"float overflow is inf", ":1e400", ptPath(Float(math.Inf(1))), ":iinf"},
	{"plus inf", ":+inf", ptPath(Float(math.Inf(1))), ":iinf"},
	{"i minus inf", ":i-inf", ptPath(Float(math.Inf(-1))), ":-inf"},
	{"True literal", "a:True", ptPath(Str("a"), Bool(true)), "a:t"},
	{"False literal", "a:iFalse", ptPath(Str("a"), Bool(false)), "a:f"},
	{"None literal", ":None.a", ptPath(Nil(), Str("a")), ":n.a"},
	{"hex bytes", ":y0102", ptPath(Bytes([]byte{1, 2})), ":sAQI="},
	{"hex bytes spaced", ":y01:_02", ptPath(Bytes([]byte{1, 2})), ":sAQI="},
	{"hex bytes empty", ":y", ptPath(Bytes(nil)), ":s"},
	{"ascii bytes", ":vab:.c:_d::", ptPath(Bytes([]byte("ab.c d:"))), ":sYWIuYyBkOg=="},
	{"ascii bytes empty", ":v", ptPath(Bytes(nil)), ":s"},
	{"inline escape after t", ":t::", ptPath(Bool(true), Str(":")), ":t.::"},
	{"inline escape after e", ":e:_", ptPath(Str(""), Str(" ")), ":e.:_"},
	{"string then escape", "a:1", ptPath(Str("a"), Int(1)), ""},
}

func TestParsePath(t *testing.T) {
	for _, tc := range ptTextCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePath(tc.text)
			if err != nil {
				t.Fatalf("ParsePath(%q): %v", tc.text, err)
			}
			if diff := cmp.Diff(tc.path, got); diff != "" {
				t.Errorf("ParsePath(%q) = %#v, want %#v", tc.text, got, tc.path)
			}
			canon := tc.canon
			if canon == "" {
				canon = tc.text
			}
			if s := got.String(); s != canon {
				t.Errorf("ParsePath(%q).String() = %q, want %q", tc.text, s, canon)
			}
			again, err := ParsePath(canon)
			if err != nil || !again.Equal(tc.path) {
				t.Errorf("ParsePath(%q) = %#v, %v; want %#v", canon, again, err, tc.path)
			}
		})
	}
}

func TestPathStringFixtures(t *testing.T) {
	// MoaT-KV 0.70.22's str(Path) for the paths in the reference capture.
	tests := []struct {
		name string
		path Path
		want string
	}{
		{"int 123", ptPath(Str("fx"), Str("ints"), Int(123)), "fx.ints:123"},
		{"int -1", ptPath(Str("fx"), Str("ints"), Int(-1)), "fx.ints:-1"},
		{"bool", ptPath(Str("fx"), Str("bools"), Bool(true)), "fx.bools:t"},
		{"bytes", ptPath(Str("fx"), Str("bin"), Bytes([]byte{1, 2})), "fx.bin:sAQI="},
		{"float", ptPath(Str("fx"), Str("floats"), Float(1.5)), "fx.floats:1:.5"},
		{"strings", ptPath(Str("fx"), Str("str el"), Str("with.dot"), Str("123")), "fx.str:_el.with:.dot.123"},
		{"meta", ptPath(Nil(), Str("actor"), Str("del")), ":n.actor.del"},
		{"empty", ptPath(), ":"},
		{"nil path", nil, ":"},
		{"empty string", ptPath(Str("")), ":e"},
		{"float 1.0", ptPath(Float(1)), ":1:.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.path.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPyFloatRepr(t *testing.T) {
	// Expected values are Python 3's repr().
	tests := []struct {
		f    float64
		want string
	}{
		{1.5, "1.5"}, {1.0, "1.0"}, {0.1, "0.1"}, {1e16, "1e+16"},
		{1e15, "1000000000000000.0"}, {1.5e-07, "1.5e-07"}, {0.0001, "0.0001"},
		{1e-05, "1e-05"}, {123456789.123, "123456789.123"},
		{1.7976931348623157e+308, "1.7976931348623157e+308"}, {5e-324, "5e-324"},
		{-2.5, "-2.5"}, {0, "0.0"}, {12345678901234567890.0, "1.2345678901234567e+19"},
		{9007199254740993.0, "9007199254740992.0"}, {3.25, "3.25"},
		{1.0 / 3, "0.3333333333333333"}, {2.2250738585072014e-308, "2.2250738585072014e-308"},
		{-1e-300, "-1e-300"}, {100, "100.0"}, {1e22, "1e+22"}, {123e-20, "1.23e-18"},
	}
	for _, tc := range tests {
		if got := pyFloatRepr(tc.f); got != tc.want {
			t.Errorf("pyFloatRepr(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestParsePathErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		pos  int
		msg  string // substring of the message
	}{
		{"empty element", "a..b", 2, "empty element"},
		{"leading dot", ".a", 0, "starts with '.'"},
		{"trailing dot", "a.", 2, "ends with '.'"},
		{"trailing colon", "a:", 1, "ends with ':'"},
		{"unknown escape", "fx.b:q", 4, `unknown escape ":q"`},
		{"unknown long escape", ":tx", 0, `unknown escape ":tx"`},
		{"nan is not an escape", ":nan", 0, `unknown escape ":nan"`},
		{"nan literal", ":inan", 0, `invalid literal "nan"`},
		{"mark", "a:mfoo", 1, "marks"},
		{"tuple", "a:1,2", 1, "tuples"},
		{"tuple parens", "a:(1)", 1, "tuples"},
		{"string literal", "a:'x'", 1, "string literals"},
		{"escape after dot", "a.:t", 2, "cannot follow '.'"},
		{"literal after dot", "a.:1", 2, "cannot follow '.'"},
		{"hex after dot", "a.:x1f", 2, "cannot follow '.'"},
		{"nil not first", "a:n", 1, "nil element allowed only first"},
		{"None not first", "a:None", 1, "nil element allowed only first"},
		{"text after constant", ":t_", 2, "expected '.' or ':'"},
		{"text after constant 2", "a:e_b", 3, "expected '.' or ':'"},
		{"int overflow", ":9223372036854775808", 0, "out of range"},
		{"int underflow", "a:-9223372036854775809", 1, "out of range"},
		{"hex overflow", ":x10000000000000000", 0, "out of range"},
		{"leading zero", ":0123", 0, "invalid literal"},
		{"double underscore", ":1__0", 0, "invalid literal"},
		{"trailing underscore", ":1_", 0, "invalid literal"},
		{"two dots", ":1:.5:.5", 0, "invalid literal"},
		{"expression", ":1+2", 0, "invalid literal"},
		{"uppercase word", ":Foo", 0, "invalid literal"},
		{"empty i", ":i", 0, "empty literal"},
		{"empty i before dot", "a:i.b", 1, "empty literal"},
		{"bad hex", ":xZZ", 0, "invalid hex integer"},
		{"empty hex", ":x", 0, "invalid hex integer"},
		{"bad binary", ":b102", 0, "invalid binary integer"},
		{"odd hex bytes", ":y012", 0, "invalid hex bytes"},
		{"non-ascii v", ":v\xff", 0, "non-ASCII"},
		{"bad base64", "a.b:s!!", 3, "invalid base64"},
		{"base64 missing padding", ":sAQI", 0, "invalid base64"},
		{"too long", strings.Repeat("a.", MaxPathLen) + "a", 2 * MaxPathLen, "more than 1024 elements"},
		{"too long escapes", strings.Repeat(":t", MaxPathLen+1), 2 * MaxPathLen, "more than 1024 elements"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePath(tc.text)
			if err == nil {
				t.Fatalf("ParsePath(%q) = %#v, want error", tc.text, p)
			}
			if !errors.Is(err, ErrInvalidPath) {
				t.Errorf("error %v does not wrap ErrInvalidPath", err)
			}
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *PathError", err)
			}
			if pe.Pos != tc.pos {
				t.Errorf("Pos = %d, want %d (%v)", pe.Pos, tc.pos, err)
			}
			if !strings.Contains(pe.Msg, tc.msg) {
				t.Errorf("Msg = %q, want it to contain %q", pe.Msg, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "tree: invalid path: position ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestPathErrorMessage(t *testing.T) {
	_, err := ParsePath("fx.b:q")
	want := `tree: invalid path: position 4: unknown escape ":q"`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestPathStringInvalid(t *testing.T) {
	// String never fails, but invalid paths do not parse back.
	for _, p := range []Path{
		ptPath(Str("a"), Nil()),
		ptPath(Float(math.NaN())),
	} {
		s := p.String()
		if _, err := ParsePath(s); err == nil {
			t.Errorf("ParsePath(%q) of invalid path %#v succeeded", s, p)
		}
	}
}

// ptRandElem makes a random element for round-trip tests.
func ptRandElem(r *rand.Rand, first bool) Elem {
	strs := []string{"", "a", "fx", " ", ".", ":", "_", "::", ":.", "a b.c:d", "123", "-1", "t", "e", "x1f", "grüße", "\x00\xff", "1.5"}
	for {
		switch r.IntN(6) {
		case 0:
			if first {
				return Nil()
			}
		case 1:
			return Bool(r.IntN(2) == 1)
		case 2:
			switch r.IntN(3) {
			case 0:
				return Int(int64(r.IntN(300)) - 150)
			case 1:
				return Int(int64(r.Uint64()))
			default:
				return Int([]int64{math.MinInt64, math.MaxInt64, 0, 1 << 32, -1 << 31}[r.IntN(5)])
			}
		case 3:
			switch r.IntN(3) {
			case 0:
				return Float(math.Float64frombits(r.Uint64()))
			case 1:
				return Float(float64(r.IntN(1000)) / 8)
			default:
				return Float([]float64{math.Inf(1), math.Inf(-1), 0, 1e16, 1e-5, math.MaxFloat64, 5e-324}[r.IntN(7)])
			}
		case 4:
			if r.IntN(2) == 0 {
				return Str(strs[r.IntN(len(strs))])
			}
			b := make([]byte, r.IntN(8))
			for i := range b {
				b[i] = byte(r.IntN(256))
			}
			return Str(string(b))
		case 5:
			b := make([]byte, r.IntN(20))
			for i := range b {
				b[i] = byte(r.IntN(256))
			}
			return Bytes(b)
		}
	}
}

func ptRandPath(r *rand.Rand) Path {
	p := make(Path, r.IntN(7))
	for i := range p {
		p[i] = ptRandElem(r, i == 0)
	}
	for p.Check() != nil { // NaN from random bits
		p = ptRandPath(r)
	}
	return p
}

func TestPathTextRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		p := ptRandPath(r)
		s := p.String()
		q, err := ParsePath(s)
		if err != nil {
			t.Fatalf("ParsePath(%q) from %#v: %v", s, p, err)
		}
		if !q.Equal(p) {
			t.Fatalf("ParsePath(%q) = %#v, want %#v", s, q, p)
		}
		if s2 := q.String(); s2 != s {
			t.Fatalf("String not canonical: %q then %q", s, s2)
		}
	}
}

func TestElemCanonicalOrder(t *testing.T) {
	want := []Elem{
		Nil(),
		Bool(false), Bool(true),
		Int(math.MinInt64), Int(-1), Int(0), Int(1), Int(123),
		Float(math.Inf(-1)), Float(-1.5), Float(0), Float(1), Float(1.5), Float(math.Inf(1)),
		Str(""), Str("1"), Str("a"), Str("ab"), Str("b"),
		Bytes(nil), Bytes([]byte{0}), Bytes([]byte{1, 2}), Bytes([]byte{0xff}),
	}
	got := slices.Clone(want)
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		r.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
		slices.SortFunc(got, Elem.Compare)
		if !slices.Equal(got, want) {
			t.Fatalf("sorted = %#v\nwant %#v", got, want)
		}
	}
	// 1 and 1.0 are distinct; the int sorts first.
	if Int(1) == Float(1) || Int(1).Compare(Float(1)) >= 0 {
		t.Errorf("Int(1) vs Float(1) not ordered int < float")
	}
	if Str("a") == Bytes([]byte("a")) || Str("a").Compare(Bytes([]byte("a"))) >= 0 {
		t.Errorf("Str(a) vs Bytes(a) not ordered string < bytes")
	}
}

func FuzzParsePath(f *testing.F) {
	for _, tc := range ptTextCases {
		f.Add(tc.text)
		f.Add(tc.path.String())
	}
	for _, s := range []string{"a..b", ".a", "a.", "a:", "fx.b:q", ":mfoo", "a:1,2", "a.:t", "a:n", ":t_", ":9223372036854775808", ":1e400", ":inan", ":x-0x_f", ":y0 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("ParsePath(%q): error %v does not wrap ErrInvalidPath", s, err)
			}
			var pe *PathError
			if !errors.As(err, &pe) || pe.Pos < 0 || pe.Pos > len(s) {
				t.Fatalf("ParsePath(%q): bad error %#v", s, err)
			}
			return
		}
		if err := p.Check(); err != nil {
			t.Fatalf("ParsePath(%q) = %#v, fails Check: %v", s, p, err)
		}
		c := p.String()
		q, err := ParsePath(c)
		if err != nil {
			t.Fatalf("ParsePath(%q) = %#v; re-parse of %q: %v", s, p, c, err)
		}
		if !q.Equal(p) {
			t.Fatalf("ParsePath(%q) = %#v; re-parse of %q = %#v", s, p, c, q)
		}
		if c2 := q.String(); c2 != c {
			t.Fatalf("String not canonical: %q then %q", c, c2)
		}
	})
}

func BenchmarkParsePath(b *testing.B) {
	s := "fx.str:_el.with:.dot.123:1:.5:t:-1:sAQI="
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePath(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPathString(b *testing.B) {
	p := ptPath(Str("fx"), Str("str el"), Str("with.dot"), Str("123"), Float(1.5), Bool(true), Int(-1), Bytes([]byte{1, 2}))
	b.ReportAllocs()
	for b.Loop() {
		_ = p.String()
	}
}
