package wire

import (
	"encoding/binary"
	"math"
	"unicode/utf8"

	"github.com/edgekv/edgekv/tree"
)

// Limits every decoder enforces.
const (
	// MaxChainLinks is the most links a decoded chain may have. Encoders
	// write at most this many links and mark a longer chain as truncated.
	MaxChainLinks = 64
	// MaxEntries bounds the declared size of any map or array (it must also
	// fit in the bytes that remain).
	MaxEntries = 1 << 20
	// MaxValueDepth is how deeply containers may nest inside a value.
	MaxValueDepth = 100
	// MaxNodeName is the longest node name, in bytes.
	MaxNodeName = 255
)

// Describe names the msgpack item at the start of b for error messages.
func Describe(b []byte) string {
	if len(b) == 0 {
		return "end of input"
	}
	if b[0] == 0xc1 {
		return "reserved byte 0xc1"
	}
	return typeNames[leadTypes[b[0]]]
}

var typeNames = [...]string{TypeNil: "nil", TypeBool: "bool", TypeInt: "int", TypeUint: "int", TypeFloat: "float",
	TypeStr: "str", TypeBin: "bin", TypeArray: "array", TypeMap: "map", TypeExt: "ext"}

// leadTypes is the type of each lead byte, from ReadHead (0xc1: 0).
var leadTypes = func() (t [256]Type) {
	for c := range 256 {
		var b [5]byte
		b[0] = byte(c)
		h, _ := ReadHead(b[:])
		t[c] = h.Type
	}
	return t
}()

// isNil reports whether b starts with msgpack nil.
func isNil(b []byte) bool { return len(b) > 0 && b[0] == 0xc0 }

// be reads an n-byte big-endian unsigned integer after the lead byte.
func be(b []byte, n int) (uint64, bool) {
	if len(b) < 1+n {
		return 0, false
	}
	switch n {
	case 1:
		return uint64(b[1]), true
	case 2:
		return uint64(binary.BigEndian.Uint16(b[1:])), true
	case 4:
		return uint64(binary.BigEndian.Uint32(b[1:])), true
	}
	return binary.BigEndian.Uint64(b[1:]), true
}

// readInt reads any msgpack integer form as a signed value; uneg reports a
// uint64 above MaxInt64 (returned in u).
func readInt(b []byte) (i int64, u uint64, big bool, rest []byte, e *Error) {
	if len(b) == 0 {
		return 0, 0, false, b, fail(b, "want integer, got end of input")
	}
	c := b[0]
	switch {
	case c <= 0x7f:
		return int64(c), 0, false, b[1:], nil
	case c >= 0xe0:
		return int64(int8(c)), 0, false, b[1:], nil
	}
	var n int
	signed := false
	switch c {
	case 0xcc:
		n = 1
	case 0xcd:
		n = 2
	case 0xce:
		n = 4
	case 0xcf:
		n = 8
	case 0xd0:
		n, signed = 1, true
	case 0xd1:
		n, signed = 2, true
	case 0xd2:
		n, signed = 4, true
	case 0xd3:
		n, signed = 8, true
	default:
		return 0, 0, false, b, fail(b, "want integer, got %s", Describe(b))
	}
	v, ok := be(b, n)
	if !ok {
		return 0, 0, false, b, fail(b, "truncated integer")
	}
	rest = b[1+n:]
	if !signed {
		if v > math.MaxInt64 {
			return 0, v, true, rest, nil
		}
		return int64(v), 0, false, rest, nil
	}
	switch n {
	case 1:
		return int64(int8(v)), 0, false, rest, nil
	case 2:
		return int64(int16(v)), 0, false, rest, nil
	case 4:
		return int64(int32(v)), 0, false, rest, nil
	}
	return int64(v), 0, false, rest, nil
}

// readUint reads a non-negative integer in any msgpack integer form.
func readUint(b []byte) (uint64, []byte, *Error) {
	if len(b) > 0 && b[0] <= 0x7f { // fast path: positive fixint
		return uint64(b[0]), b[1:], nil
	}
	i, u, big, rest, e := readInt(b)
	if e != nil {
		return 0, b, e
	}
	if big {
		return 0, b, fail(b, "integer %d beyond the limit %d", u, uint64(tree.MaxCounter))
	}
	if i < 0 {
		return 0, b, fail(b, "want non-negative integer, got %d", i)
	}
	if i > tree.MaxCounter {
		return 0, b, fail(b, "integer %d beyond the limit %d", i, uint64(tree.MaxCounter))
	}
	return uint64(i), rest, nil
}

// readUint64Any reads a non-negative integer of the full uint64 range (a
// hash, not a counter).
func readUint64Any(b []byte) (uint64, []byte, *Error) {
	i, u, big, rest, e := readInt(b)
	switch {
	case e != nil:
		return 0, b, e
	case big:
		return u, rest, nil
	case i < 0:
		return 0, b, fail(b, "want non-negative integer, got %d", i)
	}
	return uint64(i), rest, nil
}

// readUintOrNil reads a non-negative integer; nil reads as 0 (MoaT-KV sends
// a nil tick before its node has data).
func readUintOrNil(b []byte) (uint64, []byte, *Error) {
	if isNil(b) {
		return 0, b[1:], nil
	}
	return readUint(b)
}

// readStr reads a str and returns its bytes (aliasing b).
func readStr(b []byte) ([]byte, []byte, *Error) {
	return readData(b, TypeStr)
}

// readBin reads a bin and returns its bytes (aliasing b).
func readBin(b []byte) ([]byte, []byte, *Error) {
	return readData(b, TypeBin)
}

// readData reads a str or a bin (t) and returns its bytes (aliasing b).
func readData(b []byte, t Type) ([]byte, []byte, *Error) {
	name := typeNames[t]
	if len(b) == 0 {
		return nil, b, fail(b, "want %s, got end of input", name)
	}
	h, err := ReadHead(b)
	if err == nil && h.Type != t || err == ErrReserved {
		return nil, b, fail(b, "want %s, got %s", name, Describe(b))
	}
	if err != nil {
		if leadTypes[b[0]] != t {
			return nil, b, fail(b, "want %s, got %s", name, Describe(b))
		}
		return nil, b, fail(b, "truncated %s header", name)
	}
	if uint64(len(b)-h.Len) < h.Size {
		return nil, b, fail(b, "truncated %s: %d bytes declared, %d present", name, h.Size, len(b)-h.Len)
	}
	return b[h.Len:h.End()], b[h.End():], nil
}

// readName reads a node name: a non-empty UTF-8 str of at most MaxNodeName
// bytes.
func readName(b []byte) (string, []byte, *Error) {
	s, rest, e := readStr(b)
	if e != nil {
		return "", b, e
	}
	if e := checkName(b, s); e != nil {
		return "", b, e
	}
	return string(s), rest, nil
}

func checkName(at []byte, s []byte) *Error {
	switch {
	case len(s) == 0:
		return fail(at, "empty node name")
	case len(s) > MaxNodeName:
		return fail(at, "node name of %d bytes, more than %d", len(s), MaxNodeName)
	case !utf8.Valid(s):
		return fail(at, "node name is not valid UTF-8")
	}
	return nil
}

// containerHeader decodes a map or array header at the start of b.
func containerHeader(b []byte) (n uint64, isMap bool, h int, ok bool) {
	hd, err := ReadHead(b)
	if err != nil || (hd.Type != TypeMap && hd.Type != TypeArray) {
		return 0, false, 0, false
	}
	return hd.N, hd.Type == TypeMap, hd.Len, true
}

// readMapHeader reads a map header and checks its size against MaxEntries
// and the bytes left (every entry takes at least two).
func readMapHeader(b []byte) (int, []byte, *Error) {
	n, isMap, h, ok := containerHeader(b)
	if !ok || !isMap {
		if len(b) > 0 && (b[0] == 0xde || b[0] == 0xdf) {
			return 0, b, fail(b, "truncated map header")
		}
		return 0, b, fail(b, "want map, got %s", Describe(b))
	}
	if n > MaxEntries {
		return 0, b, fail(b, "map of %d entries, more than %d", n, MaxEntries)
	}
	if 2*n > uint64(len(b)-h) {
		return 0, b, fail(b, "truncated map: %d entries cannot fit in %d bytes", n, len(b)-h)
	}
	return int(n), b[h:], nil
}

// readArrayHeader reads an array header and checks its size against
// MaxEntries and the bytes left (every element takes at least one).
func readArrayHeader(b []byte) (int, []byte, *Error) {
	n, isMap, h, ok := containerHeader(b)
	if !ok || isMap {
		if len(b) > 0 && (b[0] == 0xdc || b[0] == 0xdd) {
			return 0, b, fail(b, "truncated array header")
		}
		return 0, b, fail(b, "want array, got %s", Describe(b))
	}
	if n > MaxEntries {
		return 0, b, fail(b, "array of %d elements, more than %d", n, MaxEntries)
	}
	if n > uint64(len(b)-h) {
		return 0, b, fail(b, "truncated array: %d elements cannot fit in %d bytes", n, len(b)-h)
	}
	return int(n), b[h:], nil
}

// readKey reads a map key. A str key is returned (aliasing b) with ok set;
// any other key is skipped and ok is false, so the caller skips its value.
func readKey(b []byte) (key []byte, ok bool, rest []byte, e *Error) {
	if len(b) > 0 && b[0]&0xe0 == 0xa0 { // fast path: fixstr
		n := int(b[0] & 0x1f)
		if len(b) < 1+n {
			return nil, false, b, fail(b, "truncated key")
		}
		return b[1 : 1+n], true, b[1+n:], nil
	}
	if len(b) > 0 && (b[0] == 0xd9 || b[0] == 0xda || b[0] == 0xdb) {
		k, rest, e := readStr(b)
		return k, e == nil, rest, e
	}
	rest, e = skipValue(b, 0)
	if e != nil {
		return nil, false, b, e.in("non-string key")
	}
	return nil, false, rest, nil
}

// skipValue skips one well-formed msgpack value whose enclosing containers
// are depth deep, allowing at most MaxValueDepth levels of nesting.
func skipValue(b []byte, depth int) ([]byte, *Error) {
	if len(b) > 0 && (b[0] <= 0x7f || b[0] >= 0xe0) { // fast path: fixint
		return b[1:], nil
	}
	h, err := ReadHead(b)
	switch {
	case len(b) == 0:
		return b, fail(b, "truncated value: want a msgpack item, got end of input")
	case err == ErrReserved:
		return b, fail(b, "reserved byte 0xc1")
	case err != nil:
		return b, fail(b, "truncated %s header", Describe(b))
	}
	if h.Type == TypeMap || h.Type == TypeArray {
		if depth >= MaxValueDepth {
			return b, fail(b, "value nested deeper than %d levels", MaxValueDepth)
		}
		items := h.Items()
		rest := b[h.Len:]
		if items > uint64(len(rest)) {
			return b, fail(b, "truncated %s: %d entries cannot fit in %d bytes", Describe(b), h.N, len(rest))
		}
		for range items {
			var e *Error
			rest, e = skipValue(rest, depth+1)
			if e != nil {
				return b, e
			}
		}
		return rest, nil
	}
	if size := uint64(h.Len-1) + h.Size; uint64(len(b)-1) < size {
		return b, fail(b, "truncated %s: %d bytes needed, %d present", Describe(b), size, len(b)-1)
	}
	return b[h.End():], nil
}
