package tree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/tinylib/msgp/msgp"
)

// PathExtType is the msgpack extension type MoaT-KV uses for a Path: the
// payload is the concatenated msgpack encodings of the elements.
const PathExtType = 3

// AppendElem appends e as a plain msgpack value: nil, bool, int, float64,
// str or bin. Integers use the smallest form, unsigned for non-negative
// values, as Python's msgpack does. It does not validate e.
func AppendElem(b []byte, e Elem) []byte {
	switch e.Kind() {
	case KindNil:
		return msgp.AppendNil(b)
	case KindBool:
		return msgp.AppendBool(b, e.BoolVal())
	case KindInt:
		if v := e.IntVal(); v < 0 {
			return msgp.AppendInt64(b, v)
		}
		return msgp.AppendUint64(b, uint64(e.IntVal()))
	case KindFloat:
		return msgp.AppendFloat64(b, e.FloatVal())
	case KindString:
		return msgp.AppendString(b, e.s)
	case KindBytes:
		b = msgp.AppendBytesHeader(b, uint32(len(e.s)))
		return append(b, e.s...)
	}
	return b
}

// pcElemSize is the exact size of AppendElem's output.
func pcElemSize(e Elem) int {
	switch e.Kind() {
	case KindNil, KindBool:
		return 1
	case KindInt:
		v := e.IntVal()
		switch {
		case v >= -32 && v <= 127:
			return 1
		case v >= 0 && v <= math.MaxUint8, v < 0 && v >= math.MinInt8:
			return 2
		case v >= 0 && v <= math.MaxUint16, v < 0 && v >= math.MinInt16:
			return 3
		case v >= 0 && v <= math.MaxUint32, v < 0 && v >= math.MinInt32:
			return 5
		}
		return 9
	case KindFloat:
		return 9
	case KindString:
		n := len(e.s)
		switch {
		case n <= 31:
			return 1 + n
		case n <= math.MaxUint8:
			return 2 + n
		case n <= math.MaxUint16:
			return 3 + n
		}
		return 5 + n
	case KindBytes:
		n := len(e.s)
		switch {
		case n <= math.MaxUint8:
			return 2 + n
		case n <= math.MaxUint16:
			return 3 + n
		}
		return 5 + n
	}
	return 0
}

func pcPayloadSize(p Path) int {
	n := 0
	for _, e := range p {
		n += pcElemSize(e)
	}
	return n
}

func pcExtHeaderSize(n int) int {
	switch {
	case n == 1 || n == 2 || n == 4 || n == 8 || n == 16:
		return 2
	case n <= math.MaxUint8:
		return 3
	case n <= math.MaxUint16:
		return 4
	}
	return 6
}

// PathSize returns the size of AppendPath's encoding of p (an upper bound
// suitable for preallocation).
func PathSize(p Path) int {
	n := pcPayloadSize(p)
	return pcExtHeaderSize(n) + n
}

// AppendPath appends p as msgpack extension type 3. The header is chosen by
// payload size exactly as the msgpack spec (and Python's msgpack) does:
// fixext1/2/4/8/16 for those sizes, otherwise ext8, ext16 or ext32. The
// empty path is c7 00 03. It does not validate p (see Path.Check).
func AppendPath(b []byte, p Path) []byte {
	n := pcPayloadSize(p)
	switch {
	case n == 1:
		b = append(b, 0xd4, PathExtType)
	case n == 2:
		b = append(b, 0xd5, PathExtType)
	case n == 4:
		b = append(b, 0xd6, PathExtType)
	case n == 8:
		b = append(b, 0xd7, PathExtType)
	case n == 16:
		b = append(b, 0xd8, PathExtType)
	case n <= math.MaxUint8:
		b = append(b, 0xc7, byte(n), PathExtType)
	case n <= math.MaxUint16:
		b = append(b, 0xc8, byte(n>>8), byte(n), PathExtType)
	default:
		b = append(b, 0xc9, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), PathExtType)
	}
	b = slices.Grow(b, n)
	for _, e := range p {
		b = AppendElem(b, e)
	}
	return b
}

// AppendPathArray appends p as a plain msgpack array of its elements (the
// form MoaT uses for shortened paths in .dkv files).
func AppendPathArray(b []byte, p Path) []byte {
	b = msgp.AppendArrayHeader(b, uint32(len(p)))
	for _, e := range p {
		b = AppendElem(b, e)
	}
	return b
}

// ReadPath decodes a path at the start of b and returns it with the rest of
// b. It accepts extension type 3 in any header form (fixext, ext8/16/32)
// and a plain msgpack array of elements. Errors wrap ErrMalformed (bad or
// truncated msgpack, an element of an unsupported type) or ErrInvalidPath
// (nil element other than first, NaN, integer beyond int64, more than
// MaxPathLen elements), and name the element index. On error the returned
// rest is b itself. It never panics.
func ReadPath(b []byte) (Path, []byte, error) {
	if len(b) == 0 {
		return nil, b, fmt.Errorf("%w: empty input, expected a path", ErrMalformed)
	}
	lead := b[0]
	var size uint64
	var hdr int
	switch {
	case lead >= 0xd4 && lead <= 0xd8:
		size, hdr = 1<<(lead-0xd4), 1
	case lead == 0xc7:
		if len(b) < 2 {
			return nil, b, fmt.Errorf("%w: truncated ext header", ErrMalformed)
		}
		size, hdr = uint64(b[1]), 2
	case lead == 0xc8:
		if len(b) < 3 {
			return nil, b, fmt.Errorf("%w: truncated ext header", ErrMalformed)
		}
		size, hdr = uint64(binary.BigEndian.Uint16(b[1:])), 3
	case lead == 0xc9:
		if len(b) < 5 {
			return nil, b, fmt.Errorf("%w: truncated ext header", ErrMalformed)
		}
		size, hdr = uint64(binary.BigEndian.Uint32(b[1:])), 5
	case lead&0xf0 == 0x90 || lead == 0xdc || lead == 0xdd:
		return pcReadPathArray(b)
	default:
		return nil, b, fmt.Errorf("%w: expected a path (ext 3 or array), found %s", ErrMalformed, pcDescribe(b))
	}
	if len(b) < hdr+1 {
		return nil, b, fmt.Errorf("%w: truncated ext header", ErrMalformed)
	}
	if typ := int8(b[hdr]); typ != PathExtType {
		return nil, b, fmt.Errorf("%w: expected a path (ext 3 or array), found ext type %d", ErrMalformed, typ)
	}
	body := b[hdr+1:]
	if uint64(len(body)) < size {
		return nil, b, fmt.Errorf("%w: truncated path: ext 3 of %d bytes, only %d present", ErrMalformed, size, len(body))
	}
	payload, rest := body[:size], body[size:]
	p := Path{}
	if len(payload) > 0 {
		p = make(Path, 0, min(max(len(payload)/4, 1), 16))
	}
	for i := 0; len(payload) > 0; i++ {
		if i >= MaxPathLen {
			return nil, b, fmt.Errorf("%w: path has more than %d elements", ErrInvalidPath, MaxPathLen)
		}
		var e Elem
		var err error
		e, payload, err = pcReadElem(payload, i)
		if err != nil {
			return nil, b, err
		}
		p = append(p, e)
	}
	return p, rest, nil
}

func pcReadPathArray(b []byte) (Path, []byte, error) {
	n, rest, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return nil, b, fmt.Errorf("%w: truncated array header", ErrMalformed)
	}
	if n > MaxPathLen {
		return nil, b, fmt.Errorf("%w: path has %d elements, more than %d", ErrInvalidPath, n, MaxPathLen)
	}
	if uint64(n) > uint64(len(rest)) {
		return nil, b, fmt.Errorf("%w: truncated path: array of %d elements in %d bytes", ErrMalformed, n, len(rest))
	}
	p := make(Path, 0, n)
	for i := 0; i < int(n); i++ {
		var e Elem
		e, rest, err = pcReadElem(rest, i)
		if err != nil {
			return nil, b, err
		}
		p = append(p, e)
	}
	return p, rest, nil
}

// ReadElem decodes one path element at the start of b: nil, bool, any
// integer form (an unsigned value above MaxInt64 is an error), float32
// (widened) or float64 (not NaN), str (not checked for valid UTF-8) or
// bin. It returns the rest of b; on error, b itself.
func ReadElem(b []byte) (Elem, []byte, error) {
	e, rest, err := pcReadElem(b, -1)
	if err != nil {
		return Elem{}, b, err
	}
	return e, rest, nil
}

// pcReadElem reads element number idx of a path (idx < 0: standalone).
func pcReadElem(b []byte, idx int) (Elem, []byte, error) {
	where := pcWhere(idx)
	if len(b) == 0 {
		return Elem{}, b, fmt.Errorf("%w: %s: truncated input", ErrMalformed, where)
	}
	lead := b[0]
	switch {
	case lead == 0xc0:
		if idx > 0 {
			return Elem{}, b, fmt.Errorf("%w: %s: nil element allowed only first", ErrInvalidPath, where)
		}
		return Nil(), b[1:], nil
	case lead == 0xc2 || lead == 0xc3:
		return Bool(lead == 0xc3), b[1:], nil
	case lead <= 0x7f || lead >= 0xe0 || (lead >= 0xcc && lead <= 0xd3):
		v, rest, err := msgp.ReadInt64Bytes(b)
		if err != nil {
			var ov msgp.UintOverflow
			if errors.As(err, &ov) {
				return Elem{}, b, fmt.Errorf("%w: %s: integer %d out of int64 range", ErrInvalidPath, where, ov.Value)
			}
			return Elem{}, b, fmt.Errorf("%w: %s: truncated integer", ErrMalformed, where)
		}
		return Int(v), rest, nil
	case lead == 0xca || lead == 0xcb:
		f, rest, err := msgp.ReadFloat64Bytes(b)
		if err != nil {
			return Elem{}, b, fmt.Errorf("%w: %s: truncated float", ErrMalformed, where)
		}
		if math.IsNaN(f) {
			return Elem{}, b, fmt.Errorf("%w: %s: NaN is not a valid element", ErrInvalidPath, where)
		}
		return Float(f), rest, nil
	case lead&0xe0 == 0xa0 || (lead >= 0xd9 && lead <= 0xdb):
		v, rest, err := msgp.ReadStringZC(b)
		if err != nil {
			return Elem{}, b, fmt.Errorf("%w: %s: truncated string", ErrMalformed, where)
		}
		return Str(string(v)), rest, nil
	case lead >= 0xc4 && lead <= 0xc6:
		v, rest, err := msgp.ReadBytesZC(b)
		if err != nil {
			return Elem{}, b, fmt.Errorf("%w: %s: truncated bytes", ErrMalformed, where)
		}
		return Bytes(v), rest, nil
	}
	return Elem{}, b, fmt.Errorf("%w: %s: found %s, expected nil, bool, int, float, str or bin", ErrMalformed, where, pcDescribe(b))
}

// pcWhere names element idx in error messages (idx < 0: standalone).
type pcWhere int

func (w pcWhere) String() string {
	if w < 0 {
		return "path element"
	}
	return "path element " + strconv.Itoa(int(w))
}

// pcDescribe names the msgpack value starting b, for error messages.
func pcDescribe(b []byte) string {
	if len(b) == 0 {
		return "end of input"
	}
	lead := b[0]
	switch {
	case lead&0xf0 == 0x80 || lead == 0xde || lead == 0xdf:
		return "map"
	case lead&0xf0 == 0x90 || lead == 0xdc || lead == 0xdd:
		return "array (tuple elements are not supported)"
	case lead == 0xc1:
		return "reserved byte 0xc1"
	case lead >= 0xd4 && lead <= 0xd8, lead >= 0xc7 && lead <= 0xc9:
		off := 1
		switch lead {
		case 0xc7:
			off = 2
		case 0xc8:
			off = 3
		case 0xc9:
			off = 5
		}
		if len(b) <= off {
			return "truncated ext"
		}
		switch typ := int8(b[off]); typ {
		case PathExtType:
			return "ext type 3 (nested path)"
		case 2:
			return "ext type 2 (big integer)"
		case -1:
			return "ext type -1 (timestamp)"
		default:
			return fmt.Sprintf("ext type %d", typ)
		}
	case lead == 0xc0:
		return "nil"
	case lead == 0xc2 || lead == 0xc3:
		return "bool"
	case lead <= 0x7f || lead >= 0xe0 || (lead >= 0xcc && lead <= 0xd3):
		return "int"
	case lead == 0xca || lead == 0xcb:
		return "float"
	case lead&0xe0 == 0xa0 || (lead >= 0xd9 && lead <= 0xdb):
		return "str"
	case lead >= 0xc4 && lead <= 0xc6:
		return "bin"
	}
	return fmt.Sprintf("byte 0x%02x", lead)
}
