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
	c := b[0]
	switch {
	case c <= 0x7f || c >= 0xe0:
		return "int"
	case c <= 0x8f:
		return "map"
	case c <= 0x9f:
		return "array"
	case c <= 0xbf:
		return "str"
	}
	switch c {
	case 0xc0:
		return "nil"
	case 0xc1:
		return "reserved byte 0xc1"
	case 0xc2, 0xc3:
		return "bool"
	case 0xc4, 0xc5, 0xc6:
		return "bin"
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return "ext"
	case 0xca, 0xcb:
		return "float"
	case 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3:
		return "int"
	case 0xd9, 0xda, 0xdb:
		return "str"
	case 0xdc, 0xdd:
		return "array"
	}
	return "map" // 0xde, 0xdf
}

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
	if len(b) == 0 {
		return nil, b, fail(b, "want str, got end of input")
	}
	c := b[0]
	var n uint64
	var h int
	switch {
	case c&0xe0 == 0xa0:
		n, h = uint64(c&0x1f), 1
	case c == 0xd9 || c == 0xda || c == 0xdb:
		w := 1 << (c - 0xd9)
		v, ok := be(b, w)
		if !ok {
			return nil, b, fail(b, "truncated str header")
		}
		n, h = v, 1+w
	default:
		return nil, b, fail(b, "want str, got %s", Describe(b))
	}
	if uint64(len(b)-h) < n {
		return nil, b, fail(b, "truncated str: %d bytes declared, %d present", n, len(b)-h)
	}
	return b[h : h+int(n)], b[h+int(n):], nil
}

// readBin reads a bin and returns its bytes (aliasing b).
func readBin(b []byte) ([]byte, []byte, *Error) {
	if len(b) == 0 {
		return nil, b, fail(b, "want bin, got end of input")
	}
	c := b[0]
	if c < 0xc4 || c > 0xc6 {
		return nil, b, fail(b, "want bin, got %s", Describe(b))
	}
	w := 1 << (c - 0xc4)
	n, ok := be(b, w)
	if !ok {
		return nil, b, fail(b, "truncated bin header")
	}
	h := 1 + w
	if uint64(len(b)-h) < n {
		return nil, b, fail(b, "truncated bin: %d bytes declared, %d present", n, len(b)-h)
	}
	return b[h : h+int(n)], b[h+int(n):], nil
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
	if len(b) == 0 {
		return 0, false, 0, false
	}
	c := b[0]
	switch {
	case c&0xf0 == 0x80:
		return uint64(c & 0x0f), true, 1, true
	case c&0xf0 == 0x90:
		return uint64(c & 0x0f), false, 1, true
	}
	switch c {
	case 0xdc, 0xde:
		v, good := be(b, 2)
		return v, c == 0xde, 3, good
	case 0xdd, 0xdf:
		v, good := be(b, 4)
		return v, c == 0xdf, 5, good
	}
	return 0, false, 0, false
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
	if len(b) == 0 {
		return b, fail(b, "truncated value: want a msgpack item, got end of input")
	}
	c := b[0]
	var size uint64 // bytes after the lead byte, for scalars
	switch {
	case c <= 0x7f || c >= 0xe0:
		return b[1:], nil
	case c&0xe0 == 0xa0:
		size = uint64(c & 0x1f)
	case c <= 0x9f || c == 0xdc || c == 0xdd || c == 0xde || c == 0xdf:
		n, isMap, h, ok := containerHeader(b)
		if !ok {
			return b, fail(b, "truncated %s header", Describe(b))
		}
		if depth >= MaxValueDepth {
			return b, fail(b, "value nested deeper than %d levels", MaxValueDepth)
		}
		items := n
		if isMap {
			items = 2 * n
		}
		rest := b[h:]
		if items > uint64(len(rest)) {
			return b, fail(b, "truncated %s: %d entries cannot fit in %d bytes", Describe(b), n, len(rest))
		}
		for range items {
			var e *Error
			rest, e = skipValue(rest, depth+1)
			if e != nil {
				return b, e
			}
		}
		return rest, nil
	default:
		switch c {
		case 0xc0, 0xc2, 0xc3:
			return b[1:], nil
		case 0xc1:
			return b, fail(b, "reserved byte 0xc1")
		case 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb:
			w := 1 << (c - 0xd9)
			if c <= 0xc6 {
				w = 1 << (c - 0xc4)
			}
			n, ok := be(b, w)
			if !ok {
				return b, fail(b, "truncated %s header", Describe(b))
			}
			size = uint64(w) + n
		case 0xc7, 0xc8, 0xc9:
			w := 1 << (c - 0xc7)
			n, ok := be(b, w)
			if !ok {
				return b, fail(b, "truncated ext header")
			}
			size = uint64(w) + 1 + n
		case 0xca:
			size = 4
		case 0xcb:
			size = 8
		case 0xcc, 0xd0:
			size = 1
		case 0xcd, 0xd1:
			size = 2
		case 0xce, 0xd2:
			size = 4
		case 0xcf, 0xd3:
			size = 8
		case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
			size = 1 + 1<<(c-0xd4)
		}
	}
	if uint64(len(b)-1) < size {
		return b, fail(b, "truncated %s: %d bytes needed, %d present", Describe(b), size, len(b)-1)
	}
	return b[1+size:], nil
}
