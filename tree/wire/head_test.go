package wire

import (
	"errors"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// TestReadHeadEveryLeadByte: for every lead byte, followed by zeros (so
// every length is 0 and every contained item is the fixint 0), ReadHead's
// header, data and item count add up to exactly what msgp.Skip, the msgp
// library's reader, consumes; its type matches msgp.NextType.
func TestReadHeadEveryLeadByte(t *testing.T) {
	types := map[msgp.Type]Type{msgp.NilType: TypeNil, msgp.BoolType: TypeBool, msgp.IntType: TypeInt, msgp.UintType: TypeUint,
		msgp.Float32Type: TypeFloat, msgp.Float64Type: TypeFloat, msgp.StrType: TypeStr, msgp.BinType: TypeBin,
		msgp.ArrayType: TypeArray, msgp.MapType: TypeMap, msgp.ExtensionType: TypeExt}
	for c := range 256 {
		b := make([]byte, 65)
		b[0] = byte(c)
		h, err := ReadHead(b)
		if c == 0xc1 {
			if !errors.Is(err, ErrReserved) {
				t.Fatalf("0xc1: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("0x%02x: %v", c, err)
		}
		rest, err := msgp.Skip(b)
		if err != nil {
			t.Fatalf("0x%02x: msgp.Skip: %v", c, err)
		}
		if got, want := h.End()+h.Items(), uint64(len(b)-len(rest)); got != want {
			t.Errorf("0x%02x: header %d + data %d + items %d = %d bytes, msgp.Skip read %d", c, h.Len, h.Size, h.Items(), got, want)
		}
		nt := msgp.NextType(b)
		if nt == msgp.IntType && c <= 0x7f {
			nt = msgp.UintType // msgp calls a positive fixint an int
		}
		if nt == msgp.Complex64Type || nt == msgp.Complex128Type || nt == msgp.TimeType || nt == msgp.DurationType {
			nt = msgp.ExtensionType // msgp names some fixext types
		}
		if types[nt] != h.Type {
			t.Errorf("0x%02x: type %d, msgp says %v", c, h.Type, nt)
		}
		// Cut inside the header: short, never a wrong answer.
		for n := 0; n < h.Len; n++ {
			if _, err := ReadHead(b[:n]); !errors.Is(err, ErrShortHead) {
				t.Errorf("0x%02x cut to %d bytes: %v, want ErrShortHead", c, n, err)
			}
		}
	}
}

// TestReadHeadLengths: lengths in every width, from items the msgp library
// wrote.
func TestReadHeadLengths(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000} {
		items := []struct {
			name string
			b    []byte
			typ  Type
		}{
			{"str", msgp.AppendString(nil, string(make([]byte, n))), TypeStr},
			{"bin", msgp.AppendBytes(nil, make([]byte, n)), TypeBin},
			{"ext", appendExt(t, n), TypeExt},
			{"array", appendNils(msgp.AppendArrayHeader(nil, uint32(n)), n), TypeArray},
			{"map", appendNils(msgp.AppendMapHeader(nil, uint32(n)), 2*n), TypeMap},
		}
		for _, it := range items {
			if it.name == "ext" && n == 0 {
				continue // msgp writes no zero-length ext
			}
			h, err := ReadHead(it.b)
			if err != nil || h.Type != it.typ {
				t.Fatalf("%s of %d: %+v, %v", it.name, n, h, err)
			}
			if got := h.End() + h.Items(); got != uint64(len(it.b)) {
				t.Errorf("%s of %d: %d + %d + %d items, want %d bytes", it.name, n, h.Len, h.Size, h.Items(), len(it.b))
			}
		}
	}
	for _, v := range []int64{0, 127, 128, 255, 256, 65535, 65536, 1 << 32, -1, -32, -33, -128, -129, -32768, -32769, -1 << 31, -1<<31 - 1} {
		b := msgp.AppendInt64(nil, v)
		if h, err := ReadHead(b); err != nil || h.End() != uint64(len(b)) {
			t.Errorf("int %d: %+v, %v (%d bytes)", v, h, err, len(b))
		}
	}
}

type rawExt struct{ data []byte }

func (e *rawExt) ExtensionType() int8            { return 7 }
func (e *rawExt) Len() int                       { return len(e.data) }
func (e *rawExt) MarshalBinaryTo(b []byte) error { copy(b, e.data); return nil }
func (e *rawExt) UnmarshalBinary(b []byte) error { e.data = b; return nil }

func appendExt(t *testing.T, n int) []byte {
	b, err := msgp.AppendExtension(nil, &rawExt{data: make([]byte, n)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func appendNils(b []byte, n int) []byte {
	for range n {
		b = msgp.AppendNil(b)
	}
	return b
}
