package wire

import (
	"encoding/binary"
	"errors"
)

// Type is the type of a msgpack item, as its lead byte gives it.
type Type uint8

// msgpack item types. Int is a signed form (negative fixint, int 8–64),
// Uint an unsigned one (positive fixint, uint 8–64).
const (
	TypeNil Type = iota + 1
	TypeBool
	TypeInt
	TypeUint
	TypeFloat
	TypeStr
	TypeBin
	TypeArray
	TypeMap
	TypeExt
)

// Errors of ReadHead.
var (
	// ErrShortHead: the input ends inside the item's header (or is empty).
	// A reader of a stream waits for more bytes; a reader of a whole
	// message reports a truncated item.
	ErrShortHead = errors.New("msgpack header cut short")
	// ErrReserved: the lead byte is 0xc1, which msgpack never uses.
	ErrReserved = errors.New("reserved byte 0xc1")
)

// Head is the header of one msgpack item. It is the one place where edgekv
// decodes msgpack lead bytes: this package's decoders, the client
// protocol's framing (broker/kvproto) and the MQTT payload converter
// (broker) all read items through ReadHead.
type Head struct {
	Type Type
	// Len is the header's length: the lead byte and the length bytes that
	// follow it (str 8–32, bin, ext 8–32, array 16/32, map 16/32).
	Len int
	// Size is the number of bytes after the header: a number's or a
	// string's bytes, an extension's type byte and data. 0 for containers,
	// nil, bools and fixints.
	Size uint64
	// N is a container's number of entries: elements of an array, pairs of
	// a map.
	N uint64
}

// Items returns the number of items a container holds: N for an array,
// 2N (keys and values) for a map, 0 for a scalar.
func (h Head) Items() uint64 {
	switch h.Type {
	case TypeMap:
		return 2 * h.N
	case TypeArray:
		return h.N
	}
	return 0
}

// End returns the bytes the item takes before any contained items: Len +
// Size.
func (h Head) End() uint64 { return uint64(h.Len) + h.Size }

// ReadHead decodes the header of the item at the start of b. It reads at
// most 5 bytes and never b's data: whether Size bytes or N entries follow
// is the caller's to check.
func ReadHead(b []byte) (Head, error) {
	// A lead byte that carries its whole header (fixints, fixmaps,
	// fixarrays, fixstrs, nil, bools, numbers, fixexts) is one table
	// look-up, small enough to inline.
	if len(b) > 0 {
		if h := Lead(b[0]); h.Len != 0 {
			return h, nil
		}
	}
	return readHead(b)
}

// Lead returns the header that lead byte c is on its own (fixints,
// fixmaps, fixarrays, fixstrs, nil, bools, numbers, fixexts), or a Head of
// Len 0 if a length follows c (or c is 0xc1): then call ReadHead. It is
// ReadHead's first step, small enough to inline into a hot loop.
func Lead(c byte) Head {
	l := leads[c]
	return Head{Type: l.typ, Len: int(l.len), Size: uint64(l.size), N: uint64(l.n)}
}

// lead is what a lead byte alone says of its item, in 4 bytes.
type lead struct {
	typ          Type
	len, size, n uint8 // len 0: a length follows
}

var leads = func() (t [256]lead) {
	for c := range 256 {
		if h, err := readHead([]byte{byte(c)}); err == nil {
			t[c] = lead{typ: h.Type, len: 1, size: uint8(h.Size), n: uint8(h.N)}
		}
	}
	return t
}()

// readHead is ReadHead without the table.
func readHead(b []byte) (Head, error) {
	if len(b) == 0 {
		return Head{}, ErrShortHead
	}
	c := b[0]
	switch {
	case c <= 0x7f:
		return Head{Type: TypeUint, Len: 1}, nil
	case c >= 0xe0:
		return Head{Type: TypeInt, Len: 1}, nil
	case c <= 0x8f:
		return Head{Type: TypeMap, Len: 1, N: uint64(c & 0x0f)}, nil
	case c <= 0x9f:
		return Head{Type: TypeArray, Len: 1, N: uint64(c & 0x0f)}, nil
	case c <= 0xbf:
		return Head{Type: TypeStr, Len: 1, Size: uint64(c & 0x1f)}, nil
	}
	switch c {
	case 0xc0:
		return Head{Type: TypeNil, Len: 1}, nil
	case 0xc1:
		return Head{}, ErrReserved
	case 0xc2, 0xc3:
		return Head{Type: TypeBool, Len: 1}, nil
	case 0xc4, 0xc5, 0xc6:
		return sized(b, TypeBin, 1<<(c-0xc4), 0)
	case 0xc7, 0xc8, 0xc9:
		return sized(b, TypeExt, 1<<(c-0xc7), 1) // +1: the type byte
	case 0xca:
		return Head{Type: TypeFloat, Len: 1, Size: 4}, nil
	case 0xcb:
		return Head{Type: TypeFloat, Len: 1, Size: 8}, nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		return Head{Type: TypeUint, Len: 1, Size: 1 << (c - 0xcc)}, nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		return Head{Type: TypeInt, Len: 1, Size: 1 << (c - 0xd0)}, nil
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return Head{Type: TypeExt, Len: 1, Size: 1 + 1<<(c-0xd4)}, nil
	case 0xd9, 0xda, 0xdb:
		return sized(b, TypeStr, 1<<(c-0xd9), 0)
	case 0xdc, 0xdd:
		h, err := sized(b, TypeArray, 2<<(c-0xdc), 0)
		h.N, h.Size = h.Size, 0
		return h, err
	}
	// 0xde, 0xdf
	h, err := sized(b, TypeMap, 2<<(c-0xde), 0)
	h.N, h.Size = h.Size, 0
	return h, err
}

// sized reads a header whose length follows the lead byte in w bytes
// (big-endian); extra is added to the length (an extension's type byte).
func sized(b []byte, t Type, w int, extra uint64) (Head, error) {
	if len(b) < 1+w {
		return Head{}, ErrShortHead
	}
	var n uint64
	switch w {
	case 1:
		n = uint64(b[1])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b[1:]))
	default:
		n = uint64(binary.BigEndian.Uint32(b[1:]))
	}
	return Head{Type: t, Len: 1 + w, Size: n + extra}, nil
}
