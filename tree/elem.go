package tree

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"strings"
)

// Kind is the type of one path element. Kinds are ordered by rank: children
// iterate nil < bool < int < float < string < bytes, then by value.
type Kind uint8

// Element kinds, in canonical rank order.
const (
	KindNil Kind = iota
	KindBool
	KindInt
	KindFloat
	KindString
	KindBytes
)

func (k Kind) String() string {
	switch k {
	case KindNil:
		return "nil"
	case KindBool:
		return "bool"
	case KindInt:
		return "int"
	case KindFloat:
		return "float"
	case KindString:
		return "string"
	case KindBytes:
		return "bytes"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Elem is one typed path element. The zero Elem is the nil element.
// Elems are comparable and may be used as map keys: integers and floats are
// distinct (1 != 1.0), strings and bytes are distinct.
type Elem struct {
	kind Kind
	n    uint64 // int64 bits, float64 bits, or 0/1 for bool
	s    string // string or bytes content
}

// Nil returns the nil element (legal only as the first element of a path).
func Nil() Elem { return Elem{} }

// Str returns a string element.
func Str(s string) Elem { return Elem{kind: KindString, s: s} }

// Int returns an integer element.
func Int(i int64) Elem { return Elem{kind: KindInt, n: uint64(i)} }

// Float returns a float element. NaN is not a valid element (see Valid);
// negative zero is normalised to zero.
func Float(f float64) Elem {
	if f == 0 {
		f = 0
	}
	return Elem{kind: KindFloat, n: math.Float64bits(f)}
}

// Bool returns a bool element.
func Bool(b bool) Elem {
	if b {
		return Elem{kind: KindBool, n: 1}
	}
	return Elem{kind: KindBool}
}

// Bytes returns a bytes element (the slice is copied).
func Bytes(b []byte) Elem { return Elem{kind: KindBytes, s: string(b)} }

// Kind reports the element's kind.
func (e Elem) Kind() Kind { return e.kind }

// IsNil reports whether e is the nil element.
func (e Elem) IsNil() bool { return e.kind == KindNil }

// StrVal returns the string content (string elements).
func (e Elem) StrVal() string { return e.s }

// BytesVal returns a copy of the bytes content (bytes elements).
func (e Elem) BytesVal() []byte { return []byte(e.s) }

// IntVal returns the integer value (int elements).
func (e Elem) IntVal() int64 { return int64(e.n) }

// FloatVal returns the float value (float elements).
func (e Elem) FloatVal() float64 { return math.Float64frombits(e.n) }

// BoolVal returns the bool value (bool elements).
func (e Elem) BoolVal() bool { return e.n != 0 }

// Valid reports whether e can be stored: floats must not be NaN.
func (e Elem) Valid() bool {
	return !(e.kind == KindFloat && math.IsNaN(e.FloatVal()))
}

// Compare orders elements canonically: by kind rank, then by value.
func (e Elem) Compare(o Elem) int {
	if e.kind != o.kind {
		return cmp.Compare(e.kind, o.kind)
	}
	switch e.kind {
	case KindBool:
		return cmp.Compare(e.n, o.n)
	case KindInt:
		return cmp.Compare(int64(e.n), int64(o.n))
	case KindFloat:
		return cmp.Compare(e.FloatVal(), o.FloatVal())
	case KindString:
		return strings.Compare(e.s, o.s)
	case KindBytes:
		return bytes.Compare([]byte(e.s), []byte(o.s))
	}
	return 0
}

// GoString is a debugging form such as Str("a") or Int(3).
func (e Elem) GoString() string {
	switch e.kind {
	case KindNil:
		return "Nil()"
	case KindBool:
		return fmt.Sprintf("Bool(%v)", e.BoolVal())
	case KindInt:
		return fmt.Sprintf("Int(%d)", e.IntVal())
	case KindFloat:
		return fmt.Sprintf("Float(%v)", e.FloatVal())
	case KindString:
		return fmt.Sprintf("Str(%q)", e.s)
	case KindBytes:
		return fmt.Sprintf("Bytes(%x)", e.s)
	}
	return "?"
}

// Path is a sequence of typed elements. The empty path is the root. A nil
// element is legal only first, where it selects the meta tree.
type Path []Elem

// Compare orders paths element by element; a prefix sorts first.
func (p Path) Compare(o Path) int {
	for i := 0; i < len(p) && i < len(o); i++ {
		if c := p[i].Compare(o[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(p), len(o))
}

// Equal reports whether p and o have the same elements.
func (p Path) Equal(o Path) bool {
	if len(p) != len(o) {
		return false
	}
	for i := range p {
		if p[i] != o[i] {
			return false
		}
	}
	return true
}

// IsMeta reports whether p lies in the meta tree (first element nil).
func (p Path) IsMeta() bool { return len(p) > 0 && p[0].IsNil() }

// Check returns an error if p cannot be stored: a nil element anywhere but
// first, or a NaN float.
func (p Path) Check() error {
	for i, e := range p {
		if e.IsNil() && i > 0 {
			return fmt.Errorf("%w: nil element at position %d (allowed only first)", ErrInvalidPath, i)
		}
		if !e.Valid() {
			return fmt.Errorf("%w: NaN float at position %d", ErrInvalidPath, i)
		}
	}
	return nil
}

// Clone returns a copy of p that shares no backing array.
func (p Path) Clone() Path {
	if p == nil {
		return nil
	}
	return append(Path(make([]Elem, 0, len(p))), p...)
}

// Append returns a new path p + elems (never aliasing p's array).
func (p Path) Append(elems ...Elem) Path {
	q := make(Path, 0, len(p)+len(elems))
	return append(append(q, p...), elems...)
}

// HasPrefix reports whether pre is a prefix of p.
func (p Path) HasPrefix(pre Path) bool {
	return len(pre) <= len(p) && p[:len(pre)].Equal(pre)
}
