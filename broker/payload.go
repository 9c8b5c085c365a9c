package broker

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// maxValueDepth is how deeply containers may nest in a converted value.
const maxValueDepth = wire.MaxValueDepth

// errNotJSON marks a payload that is not JSON text at all (as opposed to
// JSON that cannot be stored); payloadValue then takes it as a string.
var errNotJSON = errors.New("not JSON")

// JSONToMsgpack converts one JSON value (surrounding whitespace allowed) to
// msgpack:
//
//   - objects become maps with their keys sorted bytewise (so equal objects
//     give equal bytes); a duplicate key is an error;
//   - arrays become arrays; strings, true, false and null map directly;
//   - a number without fraction or exponent becomes an integer when it fits
//     int64 or uint64 (non-negative integers use msgpack's unsigned forms,
//     as MoaT-KV's Python msgpack does); every other number becomes a
//     float64, and one outside float64's range is an error;
//   - containers nest at most 100 deep.
//
// Errors wrap tree.ErrInvalidValue. Input that is not valid UTF-8, or is
// not exactly one JSON value, is an error too.
func JSONToMsgpack(b []byte) ([]byte, error) {
	if out, ok, err := jsonScalar(b); ok {
		return out, err
	}
	return jsonDecode(b)
}

// jsonDecode is JSONToMsgpack with encoding/json's decoder, for any input.
func jsonDecode(b []byte) ([]byte, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: not valid UTF-8", tree.ErrInvalidValue)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	out, err := jsonValue(dec, nil, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: %w: data after the JSON value at byte %d", tree.ErrInvalidValue, errNotJSON, dec.InputOffset())
	}
	return out, nil
}

// jsonScalar converts the payloads most sensors send (a number, true,
// false, null, a string without escapes, with JSON white space around)
// without encoding/json's decoder, which costs several allocations even
// for "21.5". ok is false for everything else: JSONToMsgpack's decoder
// then decides, and it gives the same result for what jsonScalar takes
// (FuzzJSONScalar).
func jsonScalar(b []byte) (out []byte, ok bool, err error) {
	b = bytes.Trim(b, " \t\r\n")
	switch {
	case len(b) == 0:
		return nil, false, nil
	case string(b) == "true":
		return msgp.AppendBool(nil, true), true, nil
	case string(b) == "false":
		return msgp.AppendBool(nil, false), true, nil
	case string(b) == "null":
		return msgp.AppendNil(nil), true, nil
	case b[0] == '"':
		s := b[1:]
		if len(s) == 0 || s[len(s)-1] != '"' {
			return nil, false, nil
		}
		s = s[:len(s)-1]
		for _, c := range s {
			if c < 0x20 || c == '"' || c == '\\' {
				return nil, false, nil // escapes, or not JSON
			}
		}
		if !utf8.Valid(s) {
			return nil, false, nil
		}
		return msgp.AppendStringFromBytes(make([]byte, 0, len(s)+5), s), true, nil
	case isJSONNumber(b):
		out, err := appendJSONNumber(nil, string(b))
		return out, true, err
	}
	return nil, false, nil
}

// isJSONNumber reports whether b is exactly a JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(b []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// jsonSyntax wraps a decoder error as "not JSON".
func jsonSyntax(dec *json.Decoder, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %w: %v (byte %d)", tree.ErrInvalidValue, errNotJSON, err, dec.InputOffset())
}

// jsonValue appends the msgpack form of the next JSON value to out.
func jsonValue(dec *json.Decoder, out []byte, depth int) ([]byte, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonSyntax(dec, err)
	}
	switch t := tok.(type) {
	case nil:
		return msgp.AppendNil(out), nil
	case bool:
		return msgp.AppendBool(out, t), nil
	case string:
		return msgp.AppendString(out, t), nil
	case json.Number:
		return appendJSONNumber(out, string(t))
	case json.Delim:
		if depth >= maxValueDepth {
			return nil, fmt.Errorf("%w: containers nest more than %d deep (byte %d)", tree.ErrInvalidValue, maxValueDepth, dec.InputOffset())
		}
		switch t {
		case '[':
			var items []byte
			n := uint32(0)
			for dec.More() {
				if items, err = jsonValue(dec, items, depth+1); err != nil {
					return nil, err
				}
				n++
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, jsonSyntax(dec, err)
			}
			out = msgp.AppendArrayHeader(out, n)
			return append(out, items...), nil
		case '{':
			type member struct {
				key string
				val []byte
			}
			var members []member
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, jsonSyntax(dec, err)
				}
				key, _ := kt.(string) // the decoder guarantees a string key
				val, err := jsonValue(dec, nil, depth+1)
				if err != nil {
					return nil, err
				}
				members = append(members, member{key, val})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, jsonSyntax(dec, err)
			}
			slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
			for i := 1; i < len(members); i++ {
				if members[i].key == members[i-1].key {
					return nil, fmt.Errorf("%w: duplicate object key %q", tree.ErrInvalidValue, members[i].key)
				}
			}
			out = msgp.AppendMapHeader(out, uint32(len(members)))
			for _, m := range members {
				out = msgp.AppendString(out, m.key)
				out = append(out, m.val...)
			}
			return out, nil
		}
	}
	return nil, jsonSyntax(dec, fmt.Errorf("unexpected token %v", tok))
}

// appendJSONNumber appends a JSON number literal as an integer or float64.
func appendJSONNumber(out []byte, s string) ([]byte, error) {
	if !strings.ContainsAny(s, ".eE") {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			if v >= 0 {
				return msgp.AppendUint64(out, uint64(v)), nil
			}
			return msgp.AppendInt64(out, v), nil
		}
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			return msgp.AppendUint64(out, v), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: number %s is out of range", tree.ErrInvalidValue, s)
	}
	return msgp.AppendFloat64(out, f), nil
}

// payloadValue turns an MQTT payload on a KV topic into the msgpack value
// to write: nil for an empty payload (delete); the converted value for
// JSON; otherwise the payload as a msgpack string. Payloads that are not
// valid UTF-8, and JSON that cannot be stored (too deep, duplicate keys,
// numbers out of range), are errors wrapping tree.ErrInvalidValue.
func payloadValue(payload []byte) ([]byte, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	v, err := JSONToMsgpack(payload)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, errNotJSON) || !utf8.Valid(payload) {
		return nil, err
	}
	return msgp.AppendStringFromBytes(make([]byte, 0, len(payload)+5), payload), nil
}

// MsgpackToJSON converts exactly one msgpack value to compact JSON:
//
//   - nil, bool, integers and strings map directly (invalid UTF-8 in a
//     string becomes U+FFFD);
//   - floats are written so that they read back as floats ("1.0", not
//     "1"); NaN, +Inf and -Inf become the strings "NaN", "Infinity" and
//     "-Infinity";
//   - bin becomes a standard base64 string;
//   - maps become objects; a key that is not a string is written as the
//     string of its JSON form (1 → "1", true → "true", bin → its base64);
//   - extension types (any type number, including MoaT-KV's paths and
//     msgpack timestamps) become {"$ext": type, "data": "<base64>"}.
//
// Malformed or truncated input, trailing bytes, nesting deeper than 100,
// and JSON more than 8 times the size of the input (which takes map keys
// that are containers nested in each other) are errors wrapping
// tree.ErrInvalidValue.
func MsgpackToJSON(b []byte) ([]byte, error) {
	d := mpDecoder{b: b, limit: maxJSONGrowth*len(b) + 64}
	out, err := d.value(make([]byte, 0, len(b)+len(b)/2+8), 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", tree.ErrInvalidValue, err)
	}
	if d.pos != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes after the msgpack value", tree.ErrInvalidValue, len(b)-d.pos)
	}
	return out, nil
}

// mpDecoder walks msgpack bytes by lead byte. It does not use msgp's
// generic readers, which turn extension types 3, 4 and 5 into complex and
// time values (DESIGN.md §10).
type mpDecoder struct {
	b     []byte
	pos   int
	limit int // largest output allowed
}

// maxJSONGrowth bounds the JSON output at this many times the msgpack
// input (plus a little). Plain values grow at most about 6× (a control
// character becomes "\u0001"); only map keys that are themselves maps or
// arrays, nested in each other, grow further, as each level escapes the
// quotes and backslashes of the one inside, doubling them.
const maxJSONGrowth = 8

func (d *mpDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("byte %d: %s", d.pos, fmt.Sprintf(format, args...))
}

// take returns the next n bytes.
func (d *mpDecoder) take(n uint64) ([]byte, error) {
	if n > uint64(len(d.b)-d.pos) {
		return nil, d.errorf("truncated: need %d bytes, have %d", n, len(d.b)-d.pos)
	}
	s := d.b[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return s, nil
}

// value appends the JSON form of the next msgpack value. Its header is
// read by wire.ReadHead, the one msgpack header reader of edgekv.
func (d *mpDecoder) value(out []byte, depth int) ([]byte, error) {
	if d.pos >= len(d.b) {
		return nil, d.errorf("truncated: value expected")
	}
	c := d.b[d.pos]
	switch {
	case c <= 0x7f: // fast paths: positive fixint, fixstr
		d.pos++
		return strconv.AppendUint(out, uint64(c), 10), nil
	case c&0xe0 == 0xa0:
		d.pos++
		s, err := d.take(uint64(c & 0x1f))
		if err != nil {
			return nil, err
		}
		return appendJSONString(out, s), nil
	}
	h, err := wire.ReadHead(d.b[d.pos:])
	switch err {
	case nil:
	case wire.ErrReserved:
		return nil, d.errorf("invalid msgpack lead byte 0x%02x", c)
	default:
		return nil, d.errorf("truncated %s header", wire.Describe(d.b[d.pos:]))
	}
	d.pos += h.Len
	switch h.Type {
	case wire.TypeMap:
		return d.object(out, h.N, depth)
	case wire.TypeArray:
		return d.array(out, h.N, depth)
	case wire.TypeNil:
		return append(out, "null"...), nil
	case wire.TypeBool:
		if c == 0xc3 {
			return append(out, "true"...), nil
		}
		return append(out, "false"...), nil
	}
	data, err := d.take(h.Size)
	if err != nil {
		return nil, err
	}
	switch h.Type {
	case wire.TypeStr:
		return appendJSONString(out, data), nil
	case wire.TypeBin:
		return appendBase64String(out, data), nil
	case wire.TypeExt:
		return d.ext(out, data), nil
	case wire.TypeFloat:
		if len(data) == 4 {
			return appendJSONFloat(out, float64(math.Float32frombits(binary.BigEndian.Uint32(data))), 32), nil
		}
		return appendJSONFloat(out, math.Float64frombits(binary.BigEndian.Uint64(data)), 64), nil
	case wire.TypeUint:
		if len(data) == 0 { // positive fixint
			return strconv.AppendUint(out, uint64(c), 10), nil
		}
		return strconv.AppendUint(out, bigEndian(data), 10), nil
	}
	// wire.TypeInt
	if len(data) == 0 { // negative fixint
		return strconv.AppendInt(out, int64(int8(c)), 10), nil
	}
	// Sign-extend from len(data) bytes.
	shift := 64 - 8*len(data)
	return strconv.AppendInt(out, int64(bigEndian(data)<<shift)>>shift, 10), nil
}

// bigEndian reads 1, 2, 4 or 8 bytes as an unsigned integer.
func bigEndian(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// enter checks nesting and that n items (at least one byte each) can fit.
func (d *mpDecoder) enter(n uint64, perItem uint64, depth int) error {
	if depth >= maxValueDepth {
		return d.errorf("containers nest more than %d deep", maxValueDepth)
	}
	if n > uint64(len(d.b)-d.pos)/perItem {
		return d.errorf("truncated: %d items declared, %d bytes left", n, len(d.b)-d.pos)
	}
	return nil
}

func (d *mpDecoder) array(out []byte, n uint64, depth int) ([]byte, error) {
	if err := d.enter(n, 1, depth); err != nil {
		return nil, err
	}
	out = append(out, '[')
	for i := uint64(0); i < n; i++ {
		if i > 0 {
			out = append(out, ',')
		}
		var err error
		if out, err = d.value(out, depth+1); err != nil {
			return nil, err
		}
	}
	return append(out, ']'), nil
}

func (d *mpDecoder) object(out []byte, n uint64, depth int) ([]byte, error) {
	if err := d.enter(n, 2, depth); err != nil {
		return nil, err
	}
	out = append(out, '{')
	for i := uint64(0); i < n; i++ {
		if i > 0 {
			out = append(out, ',')
		}
		var err error
		if out, err = d.key(out, depth+1); err != nil {
			return nil, err
		}
		out = append(out, ':')
		if out, err = d.value(out, depth+1); err != nil {
			return nil, err
		}
	}
	return append(out, '}'), nil
}

// key appends a map key as a JSON string: strings as they are, any other
// value as the string of its JSON text.
func (d *mpDecoder) key(out []byte, depth int) ([]byte, error) {
	if d.pos < len(d.b) {
		if c := d.b[d.pos]; (c >= 0xa0 && c <= 0xbf) || c == 0xd9 || c == 0xda || c == 0xdb {
			return d.value(out, depth)
		}
	}
	txt, err := d.value(nil, depth)
	if err != nil {
		return nil, err
	}
	if len(txt) > 0 && txt[0] == '"' {
		return append(out, txt...), nil // bin (base64), NaN, Infinity
	}
	out = appendJSONString(out, txt)
	if len(out) > d.limit {
		return nil, d.errorf("JSON form too large (map keys that are containers, nested)")
	}
	return out, nil
}

// ext appends {"$ext": type, "data": base64} for an extension: its type
// byte, then its data.
func (d *mpDecoder) ext(out []byte, ext []byte) []byte {
	out = append(out, `{"$ext":`...)
	out = strconv.AppendInt(out, int64(int8(ext[0])), 10)
	out = append(out, `,"data":`...)
	out = appendBase64String(out, ext[1:])
	return append(out, '}')
}

// appendJSONFloat writes f so that JSON readers see a float: like
// encoding/json, plus ".0" when the text would read as an integer.
func appendJSONFloat(out []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(out, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(out, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(out, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(out)
	out = strconv.AppendFloat(out, f, format, -1, bits)
	if format == 'e' {
		// "1e-07" → "1e-7", as encoding/json writes it.
		if n := len(out); n-start >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out[n-2] = out[n-1]
			out = out[:n-1]
		}
		return out
	}
	if !bytes.ContainsAny(out[start:], ".e") {
		out = append(out, ".0"...)
	}
	return out
}

func appendBase64String(out, data []byte) []byte {
	out = append(out, '"')
	out = base64.StdEncoding.AppendEncode(out, data)
	return append(out, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD; '"', '\\' and control characters are escaped; nothing else is
// (no HTML escaping).
func appendJSONString(out, s []byte) []byte {
	out = append(out, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				out = append(out, '\\', c)
			case c == '\n':
				out = append(out, '\\', 'n')
			case c == '\r':
				out = append(out, '\\', 'r')
			case c == '\t':
				out = append(out, '\\', 't')
			case c < 0x20 || c == 0x7f:
				out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				out = append(out, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			out = append(out, "\ufffd"...)
		} else {
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	return append(out, '"')
}
