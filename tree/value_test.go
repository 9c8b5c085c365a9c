package tree

import (
	"bytes"
	"errors"
	"math/big"
	"reflect"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// TestDecodeValueExtensions: MoaT-KV's extension types decode to their own
// types (not msgp's complex numbers), and AppendValue writes each back byte
// for byte.
func TestDecodeValueExtensions(t *testing.T) {
	code := Path{Str("thermo"), Int(2)}
	pathBytes := AppendPath(nil, code)
	big1 := new(big.Int).Lsh(big.NewInt(1), 70)
	cases := []struct {
		name string
		raw  []byte
		want any
	}{
		{"path", pathBytes, code},
		{"empty path", AppendPath(nil, Path{}), Path{}},
		{"big int", append([]byte{0xc7, 9, 2}, big1.Bytes()...), big1},
		{"marked path", append([]byte{0xc7, 5, 6}, append(msgp.AppendString(nil, "r"), AppendElem(AppendElem(nil, Str("a")), Int(1))...)...), MarkedPath{Mark: "r", Path: Path{Str("a"), Int(1)}}},
		{"proxy", []byte{0xd5, 4, 0xa1, 'x'}, Ext{Type: 4, Data: []byte{0xa1, 'x'}}},
		{"unknown", []byte{0xc7, 3, 42, 1, 2, 3}, Ext{Type: 42, Data: []byte{1, 2, 3}}},
		{"timestamp", []byte{0xd6, 0xff, 0, 0, 0, 1}, Ext{Type: -1, Data: []byte{0, 0, 0, 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := DecodeValue(c.raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v, c.want) {
				t.Fatalf("DecodeValue = %#v, want %#v", v, c.want)
			}
			back, err := AppendValue(nil, v)
			if err != nil || !bytes.Equal(back, c.raw) {
				t.Errorf("AppendValue = % x, %v; want % x", back, err, c.raw)
			}
		})
	}
}

// TestDecodeValueJobRecord: a MoaT-KV job entry (its code a Path inside a
// map) decodes with the Path in place, and a map with a non-string key
// keeps its keys and order.
func TestDecodeValueJobRecord(t *testing.T) {
	b := msgp.AppendMapHeader(nil, 3)
	b = AppendPath(msgp.AppendString(b, "code"), Path{Str("thermo")})
	b = msgp.AppendFloat64(msgp.AppendString(b, "target"), 1.5)
	b = msgp.AppendMapHeader(msgp.AppendString(b, "data"), 2)
	b = msgp.AppendString(msgp.AppendUint64(b, 1), "one")
	b = msgp.AppendInt64(msgp.AppendString(b, "two"), -2)
	v, err := DecodeValue(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"code": Path{Str("thermo")}, "target": 1.5, "data": Map{{int64(1), "one"}, {"two", int64(-2)}}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("got %#v", v)
	}
	back, err := AppendValue(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := DecodeValue(back); !reflect.DeepEqual(again, want) {
		t.Errorf("round trip: %#v", again)
	}
}

// TestDecodeValueMalformed: bad input is an error wrapping ErrMalformed,
// never a panic.
func TestDecodeValueMalformed(t *testing.T) {
	deep := bytes.Repeat([]byte{0x91}, MaxValueNesting+2)
	for name, raw := range map[string][]byte{
		"empty":           {},
		"truncated str":   {0xa5, 'a'},
		"truncated ext":   {0xc7, 9, 2, 1},
		"huge array":      {0xdd, 0xff, 0xff, 0xff, 0xff},
		"bad path":        {0xd4, 3, 0xc1},
		"trailing":        {0x01, 0x02},
		"too deep":        append(deep, 0xc0),
		"never used byte": {0xc1},
		"bad mark":        {0xd4, 6, 0x01},
	} {
		if _, err := DecodeValue(raw); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalidPath) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeValue(f *testing.F) {
	f.Add(AppendPath(nil, Path{Str("a"), Int(-3)}))
	f.Add([]byte{0xc7, 9, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x82, 0xa1, 'a', 0x01, 0x01, 0xd4, 4, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			return
		}
		enc, err := AppendValue(nil, v)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", v, err)
		}
		again, err := DecodeValue(enc)
		if err != nil {
			t.Fatalf("re-encoded % x does not decode: %v", enc, err)
		}
		if !reflect.DeepEqual(normal(again), normal(v)) {
			t.Fatalf("round trip changed %#v into %#v", v, again)
		}
	})
}

// normal makes values comparable after a round trip: NaN floats compare
// unequal to themselves, so they are replaced.
func normal(v any) any {
	switch x := v.(type) {
	case float64:
		if x != x {
			return "NaN"
		}
	case *big.Int: // an ext 2 that did not need to be one comes back as an integer
		if x.IsInt64() {
			return x.Int64()
		}
		if x.IsUint64() {
			return x.Uint64()
		}
	case []any:
		for i := range x {
			x[i] = normal(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normal(x[k])
		}
	case Map:
		for i := range x {
			x[i].Key, x[i].Value = normal(x[i].Key), normal(x[i].Value)
		}
	}
	return v
}
