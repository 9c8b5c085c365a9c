package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// mp builds msgpack from appenders.
func mp(fns ...func([]byte) []byte) []byte {
	var b []byte
	for _, fn := range fns {
		b = fn(b)
	}
	return b
}

func mpUint(v uint64) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendUint64(b, v) }
}
func mpInt(v int64) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendInt64(b, v) }
}
func mpStr(s string) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendString(b, s) }
}
func mpF64(f float64) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendFloat64(b, f) }
}
func mpF32(f float32) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendFloat32(b, f) }
}
func mpMap(n uint32) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendMapHeader(b, n) }
}
func mpArr(n uint32) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendArrayHeader(b, n) }
}
func mpBin(v []byte) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendBytes(b, v) }
}
func mpBool(v bool) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendBool(b, v) }
}
func mpRaw(raw ...byte) func([]byte) []byte {
	return func(b []byte) []byte { return append(b, raw...) }
}

var mpNil = func(b []byte) []byte { return msgp.AppendNil(b) }

// jsonCases convert both ways: JSON → msgpack gives msgpack, and msgpack →
// JSON gives back (the canonical) json.
var jsonCases = []struct {
	name    string
	json    string
	msgpack []byte
}{
	{"zero", `0`, mp(mpUint(0))},
	{"small int", `42`, mp(mpUint(42))},
	{"negative int", `-5`, mp(mpInt(-5))},
	{"big int", `1000000`, mp(mpUint(1000000))},
	{"max int64", `9223372036854775807`, mp(mpUint(math.MaxInt64))},
	{"min int64", `-9223372036854775808`, mp(mpInt(math.MinInt64))},
	{"max uint64", `18446744073709551615`, mp(mpUint(math.MaxUint64))},
	{"float", `1.5`, mp(mpF64(1.5))},
	{"integral float", `2.0`, mp(mpF64(2))},
	{"negative zero", `-0.0`, mp(mpF64(math.Copysign(0, -1)))},
	{"small float", `1e-7`, mp(mpF64(1e-7))},
	{"huge float", `1e+300`, mp(mpF64(1e300))},
	{"beyond uint64", `18446744073709552000.0`, mp(mpF64(18446744073709551616))},
	{"true", `true`, mp(mpBool(true))},
	{"false", `false`, mp(mpBool(false))},
	{"null", `null`, mp(mpNil)},
	{"string", `"hello"`, mp(mpStr("hello"))},
	{"empty string", `""`, mp(mpStr(""))},
	{"escapes", `"a\"b\\c\nd\u0001é"`, mp(mpStr("a\"b\\c\nd\x01é"))},
	{"no html escaping", `"<a&b>"`, mp(mpStr("<a&b>"))},
	{"array", `[1,"a",null,[]]`, mp(mpArr(4), mpUint(1), mpStr("a"), mpNil, mpArr(0))},
	{"object sorted", `{"a":1,"b":{"c":[true]}}`, mp(mpMap(2), mpStr("a"), mpUint(1), mpStr("b"), mpMap(1), mpStr("c"), mpArr(1), mpBool(true))},
	{"empty object", `{}`, mp(mpMap(0))},
}

func TestJSONToMsgpack(t *testing.T) {
	for _, tc := range jsonCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := JSONToMsgpack([]byte(tc.json))
			if err != nil {
				t.Fatalf("JSONToMsgpack(%s): %v", tc.json, err)
			}
			if !bytes.Equal(got, tc.msgpack) {
				t.Errorf("JSONToMsgpack(%s) = %x, want %x", tc.json, got, tc.msgpack)
			}
		})
	}
}

func TestMsgpackToJSON(t *testing.T) {
	for _, tc := range jsonCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MsgpackToJSON(tc.msgpack)
			if err != nil {
				t.Fatalf("MsgpackToJSON(%x): %v", tc.msgpack, err)
			}
			if string(got) != tc.json {
				t.Errorf("MsgpackToJSON(%x) = %s, want %s", tc.msgpack, got, tc.json)
			}
		})
	}
}

func TestJSONToMsgpackNormalises(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{` { "b" : 2 , "a" : 1 } `, `{"a":1,"b":2}`}, // whitespace, key order
		{`1E2`, `100.0`},
		{`-0`, `0`},
		{`1e-400`, `0.0`}, // underflow
		{`123456789012345678901234567890`, `1.2345678901234568e+29`},
		{`"\ud83d\ude00"`, `"😀"`},
	} {
		m, err := JSONToMsgpack([]byte(tc.in))
		if err != nil {
			t.Fatalf("JSONToMsgpack(%s): %v", tc.in, err)
		}
		got, err := MsgpackToJSON(m)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s → %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestJSONToMsgpackErrors(t *testing.T) {
	deep := strings.Repeat("[", 101) + strings.Repeat("]", 101)
	for _, tc := range []struct {
		name, in string
		notJSON  bool // a syntax error (the payload is then a string)
	}{
		{"empty", ``, true},
		{"word", `hello`, true},
		{"trailing", `1 2`, true},
		{"trailing garbage", `{"a":1}x`, true},
		{"truncated", `{"a":`, true},
		{"number junk", `12abc`, true},
		{"trailing comma", `[1,]`, true},
		{"single quotes", `{'a':1}`, true},
		{"invalid UTF-8", "\"a\xffb\"", false},
		{"duplicate key", `{"a":1,"a":2}`, false},
		{"too deep", deep, false},
		{"overflow", `1e400`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := JSONToMsgpack([]byte(tc.in))
			if !errors.Is(err, tree.ErrInvalidValue) {
				t.Fatalf("JSONToMsgpack(%q) = %v, want ErrInvalidValue", tc.in, err)
			}
			if got := errors.Is(err, errNotJSON); got != tc.notJSON {
				t.Errorf("JSONToMsgpack(%q): not-JSON = %v, want %v (%v)", tc.in, got, tc.notJSON, err)
			}
		})
	}
	ok := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	if _, err := JSONToMsgpack([]byte(ok)); err != nil {
		t.Errorf("100 levels: %v", err)
	}
}

func TestPayloadValue(t *testing.T) {
	for _, tc := range []struct {
		name, payload string
		want          []byte
		wantErr       bool
	}{
		{"empty deletes", "", nil, false},
		{"json number", "21.5", mp(mpF64(21.5)), false},
		{"json int", "7", mp(mpUint(7)), false},
		{"json object", `{"on":true}`, mp(mpMap(1), mpStr("on"), mpBool(true)), false},
		{"json string", `"on"`, mp(mpStr("on")), false},
		{"plain string", "on", mp(mpStr("on")), false},
		{"almost json", `{"a":`, mp(mpStr(`{"a":`)), false},
		{"space", " ", mp(mpStr(" ")), false},
		{"invalid UTF-8", "o\xffn", nil, true},
		{"duplicate keys", `{"a":1,"a":1}`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := payloadValue([]byte(tc.payload))
			if tc.wantErr {
				if !errors.Is(err, tree.ErrInvalidValue) {
					t.Fatalf("payloadValue(%q) = %x, %v; want ErrInvalidValue", tc.payload, got, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("payloadValue(%q) = %x, %v; want %x", tc.payload, got, err, tc.want)
			}
		})
	}
}

func TestMsgpackToJSONSpecial(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msgpack []byte
		want    string
	}{
		{"bin", mp(mpBin([]byte{1, 2, 3})), `"AQID"`},
		{"empty bin", mp(mpBin(nil)), `""`},
		{"float32", mp(mpF32(1.5)), `1.5`},
		{"float32 integral", mp(mpF32(3)), `3.0`},
		{"NaN", mp(mpF64(math.NaN())), `"NaN"`},
		{"+Inf", mp(mpF64(math.Inf(1))), `"Infinity"`},
		{"-Inf", mp(mpF64(math.Inf(-1))), `"-Infinity"`},
		{"int keys", mp(mpMap(2), mpUint(1), mpStr("a"), mpInt(-2), mpStr("b")), `{"1":"a","-2":"b"}`},
		{"odd keys", mp(mpMap(4), mpNil, mpUint(0), mpBool(true), mpUint(1), mpBin([]byte{0xff}), mpUint(2), mpArr(1), mpStr("x"), mpUint(3)),
			`{"null":0,"true":1,"/w==":2,"[\"x\"]":3}`},
		{"float key", mp(mpMap(1), mpF64(1), mpNil), `{"1.0":null}`},
		{"fixext path", mp(mpRaw(0xd4, 3, 0x01)), `{"$ext":3,"data":"AQ=="}`},
		{"ext8", mp(mpRaw(0xc7, 3, 0x05, 'a', 'b', 'c')), `{"$ext":5,"data":"YWJj"}`},
		{"timestamp", mp(mpRaw(0xd6, 0xff, 0, 0, 0, 1)), `{"$ext":-1,"data":"AAAAAQ=="}`},
		{"ext key", mp(mpMap(1), mpRaw(0xd4, 3, 0x01), mpNil), `{"{\"$ext\":3,\"data\":\"AQ==\"}":null}`},
		{"int8", mp(mpRaw(0xd0, 0x80)), `-128`},
		{"int16", mp(mpRaw(0xd1, 0xff, 0x00)), `-256`},
		{"uint8", mp(mpRaw(0xcc, 0xff)), `255`},
		{"negative fixint", mp(mpRaw(0xff)), `-1`},
		{"str8", mp(mpRaw(0xd9, 2, 'h', 'i')), `"hi"`},
		{"invalid UTF-8 string", mp(mpRaw(0xa3, 'a', 0xff, 'b')), `"a` + "\ufffd" + `b"`},
		{"control chars", mp(mpStr("\x00\t\x7f")), `"\u0000\t\u007f"`},
		{"big float", mp(mpF64(1e21)), `1e+21`},
		{"tiny float", mp(mpF64(1e-7)), `1e-7`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MsgpackToJSON(tc.msgpack)
			if err != nil || string(got) != tc.want {
				t.Fatalf("MsgpackToJSON(%x) = %s, %v; want %s", tc.msgpack, got, err, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("output %s is not valid JSON", got)
			}
		})
	}
}

func TestMsgpackToJSONErrors(t *testing.T) {
	deep := append(bytes.Repeat([]byte{0x91}, 101), 0xc0)
	if _, err := MsgpackToJSON(deep); !errors.Is(err, tree.ErrInvalidValue) {
		t.Errorf("101 levels: %v, want ErrInvalidValue", err)
	}
	if _, err := MsgpackToJSON(deep[1:]); err != nil {
		t.Errorf("100 levels: %v", err)
	}
	// Map keys that are maps, nested: each level escapes the one inside,
	// doubling its backslashes (a fuzzer find; it ran out of memory).
	keys := []byte{0xc0}
	for range 99 {
		keys = append(append([]byte{0x81}, keys...), 0xc0)
	}
	start := time.Now()
	if _, err := MsgpackToJSON(keys); !errors.Is(err, tree.ErrInvalidValue) {
		t.Errorf("nested container keys: %v, want ErrInvalidValue", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("nested container keys took %v", d)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"reserved byte", []byte{0xc1}},
		{"trailing", []byte{0x01, 0x02}},
		{"truncated str", []byte{0xa3, 'a'}},
		{"truncated array", []byte{0x92, 0x01}},
		{"truncated map", []byte{0x81, 0x01}},
		{"huge array", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"huge map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
		{"huge str", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}},
		{"truncated float", []byte{0xcb, 0, 0}},
		{"truncated ext", []byte{0xc7, 5, 3, 1}},
		{"ext without type", []byte{0xd4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := MsgpackToJSON(tc.in); !errors.Is(err, tree.ErrInvalidValue) {
				t.Fatalf("MsgpackToJSON(%x) = %s, %v; want ErrInvalidValue", tc.in, got, err)
			}
		})
	}
}

// FuzzJSONToMsgpack: never panics; what converts is one valid msgpack
// value that converts back to JSON and then to the same msgpack.
func FuzzJSONToMsgpack(f *testing.F) {
	for _, tc := range jsonCases {
		f.Add([]byte(tc.json))
	}
	f.Add([]byte(`{"b":[1,2.5,{"c":null}],"a":"x"}`))
	f.Add([]byte(`hello`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := JSONToMsgpack(in)
		if err != nil {
			if !errors.Is(err, tree.ErrInvalidValue) {
				t.Fatalf("JSONToMsgpack(%q): %v does not wrap ErrInvalidValue", in, err)
			}
			if errors.Is(err, errNotJSON) && json.Valid(in) {
				t.Fatalf("JSONToMsgpack(%q) calls valid JSON not JSON: %v", in, err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("JSONToMsgpack accepted invalid JSON %q", in)
		}
		if err := tree.ValidValue(m); err != nil {
			t.Fatalf("JSONToMsgpack(%q) = %x: %v", in, m, err)
		}
		j, err := MsgpackToJSON(m)
		if err != nil {
			t.Fatalf("MsgpackToJSON(JSONToMsgpack(%q) = %x): %v", in, m, err)
		}
		m2, err := JSONToMsgpack(j)
		if err != nil || !bytes.Equal(m, m2) {
			t.Fatalf("%q → %x → %s → %x, %v", in, m, j, m2, err)
		}
	})
}

// FuzzJSONScalar: what the fast path for scalar payloads takes, it
// converts exactly as the decoder does (value, or error text).
func FuzzJSONScalar(f *testing.F) {
	for _, s := range []string{"0", "-0", "21.5", " 7 \n", "1e400", "-1.5E-3", "123456789012345678901234567890",
		"true", "false", "null", `"abc"`, `""`, `"a\"b"`, `"\u00e9"`, "\"x\ty\"", "01", "1.", ".5", "-", "+1", `"é"`, "nul"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fast, ok, ferr := jsonScalar(in)
		if !ok {
			return
		}
		slow, serr := jsonDecode(in)
		if (ferr == nil) != (serr == nil) || (ferr != nil && ferr.Error() != serr.Error()) || !bytes.Equal(fast, slow) {
			t.Fatalf("%q: fast path %x, %v; decoder %x, %v", in, fast, ferr, slow, serr)
		}
	})
}

// FuzzMsgpackToJSON: never panics; what converts is valid UTF-8 JSON.
func FuzzMsgpackToJSON(f *testing.F) {
	for _, tc := range jsonCases {
		f.Add(tc.msgpack)
	}
	f.Add(mp(mpMap(2), mpUint(1), mpBin([]byte{1}), mpRaw(0xd4, 3, 1), mpF32(2.5)))
	f.Fuzz(func(t *testing.T, in []byte) {
		j, err := MsgpackToJSON(in)
		if err != nil {
			if !errors.Is(err, tree.ErrInvalidValue) {
				t.Fatalf("MsgpackToJSON(%x): %v does not wrap ErrInvalidValue", in, err)
			}
			return
		}
		if !utf8.Valid(j) || !json.Valid(j) {
			t.Fatalf("MsgpackToJSON(%x) = %q is not valid JSON", in, j)
		}
		if _, err := msgp.Skip(in); err != nil {
			t.Fatalf("MsgpackToJSON accepted %x, which msgp cannot skip: %v", in, err)
		}
	})
}
