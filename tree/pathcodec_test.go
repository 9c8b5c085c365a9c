package tree

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tinylib/msgp/msgp"
)

// pcHex decodes hex with optional spaces, for golden bytes.
func pcHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// pcStrHex is the hex of a msgpack fixstr.
func pcStrHex(s string) string {
	return hex.EncodeToString(msgp.AppendString(nil, s))
}

var pcGoldenCases = []struct {
	name string
	path Path
	hex  string // AppendPath output
}{
	{"empty", ptPath(), "c7 00 03"},
	{"meta actor del", ptPath(Nil(), Str("actor"), Str("del")), "c7 0b 03 c0" + pcStrHex("actor") + pcStrHex("del")},
	{"fixext8 fx big2", ptPath(Str("fx"), Str("big2")), "d7 03" + pcStrHex("fx") + pcStrHex("big2")},
	{"bus-025 fx bin 0102", ptPath(Str("fx"), Str("bin"), Bytes([]byte{1, 2})), "c7 0b 03 a2 6678 a3 62696e c4 02 01 02"},
	{"fixext1", ptPath(Int(1)), "d4 03 01"},
	{"fixext2", ptPath(Str("a")), "d5 03 a1 61"},
	{"fixext4", ptPath(Str("abc")), "d6 03 a3 616263"},
	{"fixext16", ptPath(Str("abcdefghijklmno")), "d8 03 af" + hex.EncodeToString([]byte("abcdefghijklmno"))},
	{"ext8 size 3", ptPath(Int(1), Int(2), Int(3)), "c7 03 03 01 02 03"},
	{"ext8 size 5", ptPath(Str("abcd")), "c7 05 03 a4 61626364"},
	{"root nil only", ptPath(Nil()), "d4 03 c0"},
	{"bools", ptPath(Bool(true), Bool(false)), "d5 03 c3 c2"},
	{"uint8 int", ptPath(Int(200)), "d5 03 cc c8"},
	{"uint8 128", ptPath(Int(128)), "d5 03 cc 80"},
	{"negative fixint", ptPath(Int(-32)), "d4 03 e0"},
	{"int8", ptPath(Int(-33)), "d5 03 d0 df"},
	{"uint16", ptPath(Int(65535)), "c7 03 03 cd ffff"},
	{"int16", ptPath(Int(-129)), "c7 03 03 d1 ff7f"},
	{"uint32", ptPath(Int(1 << 16)), "c7 05 03 ce 00010000"},
	{"int32", ptPath(Int(-1 << 20)), "c7 05 03 d2 fff00000"},
	{"uint64 2^40", ptPath(Int(1 << 40)), "c7 09 03 cf 0000010000000000"},
	{"int64 min", ptPath(Int(math.MinInt64)), "c7 09 03 d3 8000000000000000"},
	{"float64", ptPath(Float(1.5)), "c7 09 03 cb 3ff8000000000000"},
	{"empty string", ptPath(Str("")), "d4 03 a0"},
	{"empty bytes", ptPath(Bytes(nil)), "d5 03 c4 00"},
	{"str8", ptPath(Str(strings.Repeat("x", 32))), "c7 22 03 d9 20" + strings.Repeat("78", 32)},
	{"ext16", ptPath(Str(strings.Repeat("y", 300))), "c8 01 2f 03 da 012c" + strings.Repeat("79", 300)},
	{"ext32", ptPath(Bytes(bytes.Repeat([]byte{7}, 70000))), "c9 00011175 03 c6 00011170" + strings.Repeat("07", 70000)},
}

func TestAppendPathGolden(t *testing.T) {
	for _, tc := range pcGoldenCases {
		t.Run(tc.name, func(t *testing.T) {
			want := pcHex(t, tc.hex)
			got := AppendPath(nil, tc.path)
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendPath = % x\nwant          % x", pcTrunc(got), pcTrunc(want))
			}
			if n := PathSize(tc.path); n < len(got) {
				t.Errorf("PathSize = %d < encoded %d", n, len(got))
			}
			// Appending to existing bytes keeps them.
			pre := []byte{0xaa, 0xbb}
			if got2 := AppendPath(pre, tc.path); !bytes.Equal(got2[:2], pre) || !bytes.Equal(got2[2:], want) {
				t.Errorf("AppendPath with prefix = % x", pcTrunc(got2))
			}
			p, rest, err := ReadPath(append(want, 0x01, 0x02))
			if err != nil {
				t.Fatalf("ReadPath: %v", err)
			}
			if diff := cmp.Diff(tc.path, p); diff != "" {
				t.Errorf("ReadPath = %#v, want %#v", p, tc.path)
			}
			if !bytes.Equal(rest, []byte{1, 2}) {
				t.Errorf("rest = % x, want 01 02", rest)
			}
			// Array form.
			arr := AppendPathArray(nil, tc.path)
			p, rest, err = ReadPath(arr)
			if err != nil || len(rest) != 0 || !p.Equal(tc.path) {
				t.Errorf("ReadPath(array) = %#v, % x, %v", p, rest, err)
			}
		})
	}
}

func pcTrunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// TestReadPathHeaderForms decodes the same path from every ext header form
// and from arrays.
func TestReadPathHeaderForms(t *testing.T) {
	want := ptPath(Str("fx"), Str("big2")) // 8-byte payload
	payload := "a2 6678 a4 62696732"
	tests := []struct {
		name string
		hex  string
	}{
		{"fixext8", "d7 03 " + payload},
		{"ext8", "c7 08 03 " + payload},
		{"ext16", "c8 0008 03 " + payload},
		{"ext32", "c9 00000008 03 " + payload},
		{"fixarray", "92 " + payload},
		{"array16", "dc 0002 " + payload},
		{"array32", "dd 00000002 " + payload},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, rest, err := ReadPath(pcHex(t, tc.hex))
			if err != nil {
				t.Fatal(err)
			}
			if !p.Equal(want) || len(rest) != 0 {
				t.Errorf("ReadPath = %#v, rest % x", p, rest)
			}
		})
	}
	for _, h := range []string{"c7 00 03", "c8 0000 03", "c9 00000000 03", "90", "dc 0000", "dd 00000000"} {
		p, rest, err := ReadPath(pcHex(t, h))
		if err != nil || len(p) != 0 || p == nil || len(rest) != 0 {
			t.Errorf("ReadPath(%s) = %#v, % x, %v; want empty path", h, p, rest, err)
		}
	}
}

func TestReadElem(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want Elem
	}{
		{"nil", "c0", Nil()},
		{"true", "c3", Bool(true)},
		{"false", "c2", Bool(false)},
		{"fixint", "7f", Int(127)},
		{"negative fixint", "ff", Int(-1)},
		{"uint8", "cc ff", Int(255)},
		{"uint16", "cd ffff", Int(65535)},
		{"uint32", "ce ffffffff", Int(math.MaxUint32)},
		{"uint64", "cf 7fffffffffffffff", Int(math.MaxInt64)},
		{"int8", "d0 80", Int(-128)},
		{"int16 positive", "d1 0001", Int(1)},
		{"int32", "d2 80000000", Int(math.MinInt32)},
		{"int64", "d3 8000000000000000", Int(math.MinInt64)},
		{"float32 widened", "ca 3fc00000", Float(1.5)},
		{"float64", "cb 4009000000000000", Float(3.125)},
		{"float64 negative zero", "cb 8000000000000000", Float(0)},
		{"float64 inf", "cb 7ff0000000000000", Float(math.Inf(1))},
		{"fixstr", "a3 616263", Str("abc")},
		{"str8", "d9 01 61", Str("a")},
		{"str16", "da 0001 61", Str("a")},
		{"str32", "db 00000001 61", Str("a")},
		{"bin8", "c4 02 0102", Bytes([]byte{1, 2})},
		{"bin16", "c5 0001 ff", Bytes([]byte{0xff})},
		{"bin32", "c6 00000000", Bytes(nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append(pcHex(t, tc.hex), 0x99)
			e, rest, err := ReadElem(in)
			if err != nil {
				t.Fatal(err)
			}
			if e != tc.want {
				t.Errorf("ReadElem = %#v, want %#v", e, tc.want)
			}
			if !bytes.Equal(rest, []byte{0x99}) {
				t.Errorf("rest = % x", rest)
			}
		})
	}
}

func TestAppendElemMatchesPython(t *testing.T) {
	// Python's msgpack packs non-negative ints unsigned, negatives signed,
	// floats as float64, str with str8 and bytes as bin.
	tests := []struct {
		e   Elem
		hex string
	}{
		{Int(0), "00"}, {Int(127), "7f"}, {Int(128), "cc80"}, {Int(256), "cd0100"},
		{Int(-1), "ff"}, {Int(-32), "e0"}, {Int(-33), "d0df"}, {Int(-128), "d080"},
		{Int(-129), "d1ff7f"}, {Int(-32769), "d2ffff7fff"}, {Int(math.MaxInt64), "cf7fffffffffffffff"},
		{Float(3.25), "cb400a000000000000"}, {Str("hello"), "a568656c6c6f"},
		{Bytes([]byte{0, 1, 0xfe, 0xff}), "c4040001feff"}, {Nil(), "c0"}, {Bool(true), "c3"},
	}
	for _, tc := range tests {
		got := AppendElem(nil, tc.e)
		if hex.EncodeToString(got) != tc.hex {
			t.Errorf("AppendElem(%#v) = %x, want %s", tc.e, got, tc.hex)
		}
		if n := pcElemSize(tc.e); n != len(got) {
			t.Errorf("pcElemSize(%#v) = %d, want %d", tc.e, n, len(got))
		}
	}
}

func TestReadPathErrors(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want error
		msg  string
	}{
		{"empty input", "", ErrMalformed, "empty input"},
		{"str", "a1 61", ErrMalformed, "found str"},
		{"map", "80", ErrMalformed, "found map"},
		{"nil", "c0", ErrMalformed, "found nil"},
		{"reserved", "c1", ErrMalformed, "reserved byte 0xc1"},
		{"other ext", "d4 04 01", ErrMalformed, "found ext type 4"},
		{"timestamp ext", "d6 ff 00000000", ErrMalformed, "found ext type -1"},
		{"truncated ext8 header", "c7", ErrMalformed, "truncated ext header"},
		{"truncated ext8 type", "c7 01", ErrMalformed, "truncated ext header"},
		{"truncated ext16 header", "c8 00", ErrMalformed, "truncated ext header"},
		{"truncated ext32 header", "c9 000000", ErrMalformed, "truncated ext header"},
		{"truncated fixext", "d7 03 a2 6678", ErrMalformed, "truncated path"},
		{"truncated ext32 payload", "c9 ffffffff 03 00", ErrMalformed, "truncated path"},
		{"element map", "c7 03 03 a1 61 80", ErrMalformed, "path element 1: found map"},
		{"element array", "d5 03 91 01", ErrMalformed, "path element 0: found array"},
		{"element nested path", "c7 03 03 d4 03 01", ErrMalformed, "path element 0: found ext type 3 (nested path)"},
		{"element bigint", "c7 04 03 a0 d4 02 01", ErrMalformed, "path element 1: found ext type 2 (big integer)"},
		{"element reserved", "d4 03 c1", ErrMalformed, "path element 0: found reserved byte"},
		{"element overruns payload", "c7 02 03 a3 61 62 63", ErrMalformed, "path element 0: truncated string"},
		{"element truncated int", "d5 03 a0 cd", ErrMalformed, "path element 1: truncated integer"},
		{"element truncated float", "c7 03 03 cb 0000", ErrMalformed, "truncated float"},
		{"element truncated bin", "d5 03 c4 05", ErrMalformed, "truncated bytes"},
		{"nil not first", "d5 03 a0 c0", ErrInvalidPath, "path element 1: nil element allowed only first"},
		{"nil not first array", "92 01 c0", ErrInvalidPath, "path element 1: nil"},
		{"NaN", "c7 09 03 cb 7ff8000000000001", ErrInvalidPath, "NaN"},
		{"NaN float32", "c7 05 03 ca 7fc00000", ErrInvalidPath, "NaN"},
		{"uint64 overflow", "c7 09 03 cf ffffffffffffffff", ErrInvalidPath, "out of int64 range"},
		{"array short", "92 01", ErrMalformed, "truncated"},
		{"array header short", "dc 00", ErrMalformed, "truncated array header"},
		{"array huge", "dd ffffffff", ErrInvalidPath, "more than 1024"},
		{"array too long", "dc 0401" + strings.Repeat("01", 1025), ErrInvalidPath, "more than 1024"},
		{"ext too long", "c8 0401 03" + strings.Repeat("01", 1025), ErrInvalidPath, "more than 1024"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := pcHex(t, tc.hex)
			p, _, err := ReadPath(in)
			if err == nil {
				t.Fatalf("ReadPath(% x) = %#v, want error", pcTrunc(in), p)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v does not wrap %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
		})
	}
	// Exactly MaxPathLen elements is fine.
	in := pcHex(t, "c8 0400 03"+strings.Repeat("01", MaxPathLen))
	if p, _, err := ReadPath(in); err != nil || len(p) != MaxPathLen {
		t.Errorf("ReadPath(%d elements) = len %d, %v", MaxPathLen, len(p), err)
	}
}

func TestReadElemErrors(t *testing.T) {
	for _, h := range []string{"", "80", "90", "d4 03 01", "c1", "cf ffffffffffffffff", "cb 7ff8000000000000", "a5 61"} {
		in := pcHex(t, h)
		e, rest, err := ReadElem(in)
		if err == nil {
			t.Errorf("ReadElem(%s) = %#v, want error", h, e)
		}
		if !bytes.Equal(rest, in) {
			t.Errorf("ReadElem(%s) error rest = % x, want input", h, rest)
		}
	}
}

// bus025 is /work/shared/testdata/moatkv/bus-025-update-set.bin, a raw MQTT
// payload captured from MoaT-KV 0.70.22.
const bus025 = "86a46e6f6465a4726566 31a47469636b13a47072 6576c0a470617468c70b 03a26678a362696ec402 0102a576616c7565b262 7974657320656c656d65 6e742030313032a4746f 636b3f"

func TestReadPathBus025(t *testing.T) {
	msg := pcHex(t, bus025)
	if dir := pcFixtureDir(); dir != "" {
		file, err := os.ReadFile(filepath.Join(dir, "bus-025-update-set.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(file, msg) {
			t.Fatalf("fixture file differs from the inline copy")
		}
	}
	key := msgp.AppendString(nil, "path")
	i := bytes.Index(msg, key)
	if i < 0 {
		t.Fatal("no path key")
	}
	raw := msg[i+len(key):]
	p, rest, err := ReadPath(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := ptPath(Str("fx"), Str("bin"), Bytes([]byte{1, 2}))
	if !p.Equal(want) {
		t.Fatalf("path = %#v, want %#v", p, want)
	}
	if got := p.String(); got != "fx.bin:sAQI=" {
		t.Errorf("String() = %q", got)
	}
	enc := raw[:len(raw)-len(rest)]
	if !bytes.Equal(AppendPath(nil, p), enc) {
		t.Errorf("AppendPath = % x, want % x", AppendPath(nil, p), enc)
	}
	if !bytes.HasPrefix(rest, msgp.AppendString(nil, "value")) {
		t.Errorf("rest does not start with the value key: % x", pcTrunc(rest))
	}
}

// pcFixtureDir finds the MoaT-KV reference fixtures, or returns "".
func pcFixtureDir() string {
	for _, d := range []string{
		os.Getenv("EDGEKV_MOATKV_TESTDATA"),
		filepath.Join("..", "testdata", "moatkv"),
		filepath.Join("..", "..", "shared", "testdata", "moatkv"),
	} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "bus-025-update-set.bin")); err == nil {
			return d
		}
	}
	return ""
}

// TestPathFixtures decodes every "path" in every captured bus message and
// .dkv file, re-encodes it in the same form and expects identical bytes,
// and checks MoaT's str(Path) forms of the reconstructed full paths.
func TestPathFixtures(t *testing.T) {
	dir := pcFixtureDir()
	if dir == "" {
		t.Skip("MoaT-KV fixtures not found (set EDGEKV_MOATKV_TESTDATA)")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	nPaths := 0
	for _, f := range files {
		if !strings.HasSuffix(f, ".bin") && !strings.HasSuffix(f, ".dkv") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var prev Path // full path of the previous .dkv record
		for len(data) > 0 {
			n, rest, err := msgp.ReadMapHeaderBytes(data)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			data = rest
			var path Path
			var isArray, hasPath bool
			depth := int64(0)
			for range n {
				var key string
				key, data, err = msgp.ReadStringBytes(data)
				if err != nil {
					t.Fatalf("%s: key: %v", f, err)
				}
				switch key {
				case "path":
					raw := data
					path, data, err = ReadPath(raw)
					if err != nil {
						t.Fatalf("%s: ReadPath: %v", f, err)
					}
					enc := raw[:len(raw)-len(data)]
					isArray, hasPath = enc[0]&0xf0 == 0x90 || enc[0] == 0xdc, true
					var again []byte
					if isArray {
						again = AppendPathArray(nil, path)
					} else {
						again = AppendPath(nil, path)
						if PathSize(path) != len(enc) {
							t.Errorf("%s: PathSize(%s) = %d, encoded %d", f, path, PathSize(path), len(enc))
						}
					}
					if !bytes.Equal(again, enc) {
						t.Errorf("%s: path %s re-encodes as % x, want % x", f, path, again, enc)
					}
					nPaths++
				case "depth":
					depth, data, err = msgp.ReadInt64Bytes(data)
					if err != nil {
						t.Fatalf("%s: depth: %v", f, err)
					}
				default:
					data, err = msgp.Skip(data)
					if err != nil {
						t.Fatalf("%s: skip %s: %v", f, key, err)
					}
				}
			}
			if !hasPath {
				continue
			}
			full := path
			if isArray {
				if depth > int64(len(prev)) {
					t.Fatalf("%s: depth %d beyond previous path %s", f, depth, prev)
				}
				full = prev[:depth].Append(path...)
			}
			prev = full
			s := full.String()
			seen[s] = true
			if q, err := ParsePath(s); err != nil || !q.Equal(full) {
				t.Errorf("%s: ParsePath(%q) = %#v, %v", f, s, q, err)
			}
		}
	}
	if nPaths < 50 {
		t.Errorf("only %d paths found in the fixtures", nPaths)
	}
	for _, want := range []string{
		":", "fx.str", "fx.big2", ":n.actor.del", ":n.hostmap.ref2",
		"fx.ints:123", "fx.ints:0", "fx.ints:-1", "fx.bools:t", "fx.bools:f",
		"fx.bin:sAQI=", "fx.floats:1:.5", "fx.str:_el.with:.dot.123",
		"fx.deep.l3.l4.l5.l6.l7.l8", "fx.ref2:7", "fx.split:0", "fx.part.ref1:1",
	} {
		if !seen[want] {
			t.Errorf("fixture path %q not seen", want)
		}
	}
}

func TestPathCodecRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		p := ptRandPath(r)
		enc := AppendPath(nil, p)
		if PathSize(p) != len(enc) {
			t.Fatalf("PathSize(%#v) = %d, encoded %d", p, PathSize(p), len(enc))
		}
		q, rest, err := ReadPath(enc)
		if err != nil || len(rest) != 0 || !q.Equal(p) {
			t.Fatalf("ReadPath(AppendPath(%#v)) = %#v, % x, %v", p, q, rest, err)
		}
		q, rest, err = ReadPath(AppendPathArray(nil, p))
		if err != nil || len(rest) != 0 || !q.Equal(p) {
			t.Fatalf("ReadPath(AppendPathArray(%#v)) = %#v, % x, %v", p, q, rest, err)
		}
	}
}

func FuzzReadPath(f *testing.F) {
	for _, tc := range pcGoldenCases {
		if len(tc.hex) < 2000 {
			f.Add(pcHex(f, tc.hex))
			f.Add(AppendPathArray(nil, tc.path))
		}
	}
	for _, h := range []string{"", "80", "d4 04 01", "c7 03 03 a1 61 80", "c7 03 03 d4 03 01", "d5 03 a0 c0", "c7 09 03 cf ffffffffffffffff", "92 01", "dd ffffffff", "c9 ffffffff 03 00", "c7 05 03 ca 3fc00000"} {
		f.Add(pcHex(f, h))
	}
	f.Add(pcHex(f, bus025)[0x1c:])
	f.Fuzz(func(t *testing.T, b []byte) {
		p, rest, err := ReadPath(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("ReadPath(% x): error %v wraps neither sentinel", b, err)
			}
			if !bytes.Equal(rest, b) {
				t.Fatalf("ReadPath error: rest is not the input")
			}
			return
		}
		if len(rest) > len(b) || !bytes.Equal(rest, b[len(b)-len(rest):]) {
			t.Fatalf("rest is not a suffix of the input")
		}
		if err := p.Check(); err != nil {
			t.Fatalf("ReadPath(% x) = %#v fails Check: %v", b, p, err)
		}
		enc := AppendPath(nil, p)
		if PathSize(p) < len(enc) {
			t.Fatalf("PathSize %d < %d", PathSize(p), len(enc))
		}
		q, rest2, err := ReadPath(enc)
		if err != nil || len(rest2) != 0 || !q.Equal(p) {
			t.Fatalf("ReadPath(AppendPath(%#v)) = %#v, %v", p, q, err)
		}
		// The text form round-trips too.
		s := p.String()
		if q, err := ParsePath(s); err != nil || !q.Equal(p) {
			t.Fatalf("ParsePath(%q) = %#v, %v; want %#v", s, q, err, p)
		}
	})
}

var pcBenchPath = ptPath(Str("fx"), Str("str el"), Str("with.dot"), Int(123), Float(1.5), Bool(true), Bytes([]byte{1, 2}))

func BenchmarkAppendPath(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPath(buf[:0], pcBenchPath)
	}
}

func BenchmarkReadPath(b *testing.B) {
	enc := AppendPath(nil, pcBenchPath)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ReadPath(enc); err != nil {
			b.Fatal(err)
		}
	}
}
