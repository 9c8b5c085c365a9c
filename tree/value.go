package tree

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sort"

	"github.com/tinylib/msgp/msgp"
)

// Values are raw msgpack everywhere in edgekv; DecodeValue and AppendValue
// are for those who must look inside one (the CLI's output, jobs), with
// MoaT-KV's extension types kept apart from msgp's own reading of them
// (msgp would read ext 3 as a complex number).

// Extension types MoaT-KV uses besides PathExtType.
const (
	BigIntExtType     = 2  // an unsigned integer ≥ 2^64, big-endian, minimal
	ProxyExtType      = 4  // a named proxy (an opaque reference)
	ObjectExtType     = 5  // an object made by a registered constructor
	MarkedPathExtType = 6  // a mark (str) then the path's elements
	TimestampExtType  = -1 // msgpack's timestamp
)

// MaxValueNesting bounds the nesting of maps and arrays DecodeValue reads.
const MaxValueNesting = 64

// Ext is an extension value edgekv keeps as it came: proxies (4, 5), a
// timestamp (-1) and types it does not know. AppendValue writes it back
// byte for byte.
type Ext struct {
	Type int8
	Data []byte
}

// MarkedPath is MoaT-KV's marked path (extension type 6).
type MarkedPath struct {
	Mark string
	Path Path
}

// Map is a msgpack map with a key that is not a string (MoaT-KV allows
// any key), in its encoded order. Maps whose keys are all strings decode
// to map[string]any.
type Map []MapItem

// MapItem is one key and value of a Map.
type MapItem struct{ Key, Value any }

// DecodeValue decodes one msgpack value, all of b: nil, bool, int64 (or
// uint64 above MaxInt64), float64 (float32 widened), string, []byte, []any,
// map[string]any or Map, Path (ext 3), MarkedPath (ext 6), *big.Int
// (ext 2), or Ext (any other extension). Errors wrap ErrMalformed and say
// where; it never panics.
func DecodeValue(b []byte) (any, error) {
	v, rest, err := readValue(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the value", ErrMalformed, len(rest))
	}
	return v, nil
}

func readValue(b []byte, depth int) (any, []byte, error) {
	if depth > MaxValueNesting {
		return nil, b, fmt.Errorf("%w: value nested deeper than %d", ErrMalformed, MaxValueNesting)
	}
	if len(b) == 0 {
		return nil, b, fmt.Errorf("%w: value truncated", ErrMalformed)
	}
	switch msgp.NextType(b) {
	case msgp.NilType:
		rest, err := msgp.ReadNilBytes(b)
		return nil, rest, wrapMalformed(err)
	case msgp.BoolType:
		v, rest, err := msgp.ReadBoolBytes(b)
		return v, rest, wrapMalformed(err)
	case msgp.IntType:
		v, rest, err := msgp.ReadInt64Bytes(b)
		return v, rest, wrapMalformed(err)
	case msgp.UintType:
		v, rest, err := msgp.ReadUint64Bytes(b)
		if err == nil && v <= math.MaxInt64 {
			return int64(v), rest, nil
		}
		return v, rest, wrapMalformed(err)
	case msgp.Float32Type:
		v, rest, err := msgp.ReadFloat32Bytes(b)
		return float64(v), rest, wrapMalformed(err)
	case msgp.Float64Type:
		v, rest, err := msgp.ReadFloat64Bytes(b)
		return v, rest, wrapMalformed(err)
	case msgp.StrType:
		v, rest, err := msgp.ReadStringBytes(b)
		return v, rest, wrapMalformed(err)
	case msgp.BinType:
		v, rest, err := msgp.ReadBytesBytes(b, nil)
		return v, rest, wrapMalformed(err)
	case msgp.ArrayType:
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return nil, b, wrapMalformed(err)
		}
		if uint64(n) > uint64(len(rest)) {
			return nil, b, fmt.Errorf("%w: array of %d items in %d bytes", ErrMalformed, n, len(rest))
		}
		out := make([]any, 0, n)
		for i := range n {
			var v any
			if v, rest, err = readValue(rest, depth+1); err != nil {
				return nil, b, fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, v)
		}
		return out, rest, nil
	case msgp.MapType:
		n, rest, err := msgp.ReadMapHeaderBytes(b)
		if err != nil {
			return nil, b, wrapMalformed(err)
		}
		if 2*uint64(n) > uint64(len(rest)) {
			return nil, b, fmt.Errorf("%w: map of %d entries in %d bytes", ErrMalformed, n, len(rest))
		}
		items := make(Map, 0, n)
		allStrings := true
		for i := range n {
			var k, v any
			if k, rest, err = readValue(rest, depth+1); err != nil {
				return nil, b, fmt.Errorf("key %d: %w", i, err)
			}
			if v, rest, err = readValue(rest, depth+1); err != nil {
				return nil, b, fmt.Errorf("value of %v: %w", k, err)
			}
			_, isStr := k.(string)
			allStrings = allStrings && isStr
			items = append(items, MapItem{k, v})
		}
		if !allStrings {
			return items, rest, nil
		}
		m := make(map[string]any, len(items))
		for _, it := range items {
			m[it.Key.(string)] = it.Value
		}
		return m, rest, nil
	case msgp.ExtensionType, msgp.Complex64Type, msgp.Complex128Type, msgp.TimeType, msgp.DurationType, msgp.NumberType:
		typ, data, rest, err := readExt(b)
		if err != nil {
			return nil, b, err
		}
		switch typ {
		case PathExtType:
			p, _, err := ReadPath(b)
			return p, rest, err
		case MarkedPathExtType:
			mark, elems, err := msgp.ReadStringBytes(data)
			if err != nil {
				return nil, b, fmt.Errorf("%w: marked path: the mark: %v", ErrMalformed, err)
			}
			p, err := readElems(elems)
			if err != nil {
				return nil, b, fmt.Errorf("marked path: %w", err)
			}
			return MarkedPath{Mark: mark, Path: p}, rest, nil
		case BigIntExtType:
			return new(big.Int).SetBytes(data), rest, nil
		}
		return Ext{Type: typ, Data: slices.Clone(data)}, rest, nil
	}
	return nil, b, fmt.Errorf("%w: %s is not a msgpack value", ErrMalformed, pcDescribe(b))
}

func wrapMalformed(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// readExt splits an extension at the start of b into its type, data and
// the bytes after it.
func readExt(b []byte) (typ int8, data, rest []byte, err error) {
	var size uint64
	var hdr int
	switch lead := b[0]; {
	case lead >= 0xd4 && lead <= 0xd8:
		size, hdr = 1<<(lead-0xd4), 1
	case lead == 0xc7 && len(b) >= 2:
		size, hdr = uint64(b[1]), 2
	case lead == 0xc8 && len(b) >= 3:
		size, hdr = uint64(binary.BigEndian.Uint16(b[1:])), 3
	case lead == 0xc9 && len(b) >= 5:
		size, hdr = uint64(binary.BigEndian.Uint32(b[1:])), 5
	default:
		return 0, nil, b, fmt.Errorf("%w: truncated or bad extension header (%s)", ErrMalformed, pcDescribe(b))
	}
	if uint64(len(b)) < uint64(hdr)+1+size {
		return 0, nil, b, fmt.Errorf("%w: truncated extension: %d bytes of data, only %d present", ErrMalformed, size, max(len(b)-hdr-1, 0))
	}
	body := b[hdr+1:]
	return int8(b[hdr]), body[:size], body[size:], nil
}

// readElems reads a path's elements, all of b.
func readElems(b []byte) (Path, error) {
	p := Path{}
	for i := 0; len(b) > 0; i++ {
		if i >= MaxPathLen {
			return nil, fmt.Errorf("%w: path has more than %d elements", ErrInvalidPath, MaxPathLen)
		}
		e, rest, err := pcReadElem(b, i)
		if err != nil {
			return nil, err
		}
		p, b = append(p, e), rest
	}
	return p, nil
}

// AppendValue appends v, of a type DecodeValue returns (also int, int32,
// float32, []string, map[string]string, map[any]any), as msgpack: integers
// in their smallest form, unsigned when non-negative (as Python writes
// them), map[string]any with its keys sorted.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return msgp.AppendNil(b), nil
	case bool:
		return msgp.AppendBool(b, x), nil
	case int:
		return appendInt(b, int64(x)), nil
	case int32:
		return appendInt(b, int64(x)), nil
	case int64:
		return appendInt(b, x), nil
	case uint64:
		return msgp.AppendUint64(b, x), nil
	case float32:
		return msgp.AppendFloat64(b, float64(x)), nil
	case float64:
		return msgp.AppendFloat64(b, x), nil
	case string:
		return msgp.AppendString(b, x), nil
	case []byte:
		return msgp.AppendBytes(b, x), nil
	case []string:
		b = msgp.AppendArrayHeader(b, uint32(len(x)))
		for _, s := range x {
			b = msgp.AppendString(b, s)
		}
		return b, nil
	case []any:
		b = msgp.AppendArrayHeader(b, uint32(len(x)))
		for i, e := range x {
			var err error
			if b, err = AppendValue(b, e); err != nil {
				return b, fmt.Errorf("item %d: %w", i, err)
			}
		}
		return b, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = msgp.AppendMapHeader(b, uint32(len(x)))
		for _, k := range keys {
			var err error
			if b, err = AppendValue(msgp.AppendString(b, k), x[k]); err != nil {
				return b, fmt.Errorf("%q: %w", k, err)
			}
		}
		return b, nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return AppendValue(b, m)
	case Map:
		b = msgp.AppendMapHeader(b, uint32(len(x)))
		for _, it := range x {
			var err error
			if b, err = AppendValue(b, it.Key); err != nil {
				return b, err
			}
			if b, err = AppendValue(b, it.Value); err != nil {
				return b, fmt.Errorf("%v: %w", it.Key, err)
			}
		}
		return b, nil
	case Path:
		return AppendPath(b, x), nil
	case MarkedPath:
		data := msgp.AppendString(nil, x.Mark)
		for _, e := range x.Path {
			data = AppendElem(data, e)
		}
		return appendExt(b, MarkedPathExtType, data), nil
	case *big.Int:
		switch {
		case x.Sign() < 0 && x.IsInt64():
			return appendInt(b, x.Int64()), nil
		case x.Sign() < 0:
			return b, fmt.Errorf("%s: negative integers below -2^63 have no msgpack form", x)
		case x.IsUint64():
			return msgp.AppendUint64(b, x.Uint64()), nil
		}
		return appendExt(b, BigIntExtType, x.Bytes()), nil
	case Ext:
		return appendExt(b, x.Type, x.Data), nil
	}
	return b, fmt.Errorf("a %T cannot be stored", v)
}

func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return msgp.AppendInt64(b, v)
	}
	return msgp.AppendUint64(b, uint64(v))
}

// appendExt appends an extension in its smallest header.
func appendExt(b []byte, typ int8, data []byte) []byte {
	switch n := len(data); {
	case n == 1 || n == 2 || n == 4 || n == 8 || n == 16:
		lead := map[int]byte{1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8}[n]
		b = append(b, lead, byte(typ))
	case n <= math.MaxUint8:
		b = append(b, 0xc7, byte(n), byte(typ))
	case n <= math.MaxUint16:
		b = append(b, 0xc8, byte(n>>8), byte(n), byte(typ))
	default:
		b = append(b, 0xc9, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), byte(typ))
	}
	return append(b, data...)
}
