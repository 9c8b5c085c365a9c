package tree

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"
)

// MaxPathLen is the largest number of elements a path may have when it is
// parsed from text or decoded from msgpack.
const MaxPathLen = 1024

// PathError reports a malformed path text: Pos is the 0-based byte offset
// in the text where the offending element, escape or character starts, Msg
// says what is wrong. It wraps ErrInvalidPath.
type PathError struct {
	Pos int
	Msg string
}

func (e *PathError) Error() string {
	return ErrInvalidPath.Error() + ": position " + strconv.Itoa(e.Pos) + ": " + e.Msg
}

// Unwrap makes errors.Is(err, ErrInvalidPath) true.
func (e *PathError) Unwrap() error { return ErrInvalidPath }

// String formats p in MoaT-KV's dotted path syntax, exactly as MoaT's
// str(Path) does:
//
//   - string elements are written bare, separated by '.', with ':' as "::",
//     '.' as ":." and ' ' as ":_"; the empty string is ":e";
//   - true, false and nil are ":t", ":f" and ":n";
//   - integers are ":" plus the decimal number (":123", ":-1");
//   - floats are ":" plus Python's repr with the dot escaped (":1:.5",
//     ":1:.0", ":1e+100"); +Inf is ":iinf" and -Inf ":-inf";
//   - bytes are ":s" plus standard base64 (":sAQI=");
//   - the empty path is ":".
//
// Non-string elements start with ':' and need no separating dot. For every
// valid path, ParsePath(p.String()) returns a path equal to p. String never
// fails; a path that Check rejects prints in a form ParsePath rejects.
func (p Path) String() string {
	if len(p) == 0 {
		return ":"
	}
	b := make([]byte, 0, 16*len(p))
	for i, e := range p {
		b = ptAppendElem(b, e, i > 0)
	}
	return string(b)
}

// ptAppendElem appends the text form of e; notFirst says whether a string
// element needs a separating dot.
func ptAppendElem(b []byte, e Elem, notFirst bool) []byte {
	switch e.Kind() {
	case KindString:
		s := e.StrVal()
		if s == "" {
			return append(b, ":e"...)
		}
		if notFirst {
			b = append(b, '.')
		}
		return ptAppendEscaped(b, s)
	case KindNil:
		return append(b, ":n"...)
	case KindBool:
		if e.BoolVal() {
			return append(b, ":t"...)
		}
		return append(b, ":f"...)
	case KindInt:
		b = append(b, ':')
		return strconv.AppendInt(b, e.IntVal(), 10)
	case KindFloat:
		f := e.FloatVal()
		switch {
		case math.IsInf(f, 1):
			return append(b, ":iinf"...)
		case math.IsInf(f, -1):
			return append(b, ":-inf"...)
		case math.IsNaN(f):
			return append(b, ":inan"...) // not parseable, as Check rejects it
		}
		b = append(b, ':')
		return ptAppendEscaped(b, pyFloatRepr(f))
	case KindBytes:
		b = append(b, ":s"...)
		return base64.StdEncoding.AppendEncode(b, []byte(e.s))
	}
	return b
}

// ptAppendEscaped appends s with ':', '.' and ' ' escaped.
func ptAppendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ':':
			b = append(b, ':', ':')
		case '.':
			b = append(b, ':', '.')
		case ' ':
			b = append(b, ':', '_')
		default:
			b = append(b, c)
		}
	}
	return b
}

// pyFloatRepr formats a finite float like Python's repr: the shortest
// digits that round-trip, in positional form when the decimal exponent is
// in [-4, 16) (always with a fractional part, "1.0"), otherwise in
// scientific form with a signed exponent of at least two digits ("1e+16",
// "1.5e-07").
func pyFloatRepr(f float64) string {
	// 'e' with precision -1 gives the shortest digits: "-d.ddde±XX".
	s := strconv.FormatFloat(f, 'e', -1, 64)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	ePos := strings.IndexByte(s, 'e')
	mant, expStr := s[:ePos], s[ePos+1:]
	exp, _ := strconv.Atoi(expStr) // always well-formed
	digits := mant[:1]
	if len(mant) > 2 {
		digits += mant[2:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	if exp < -4 || exp >= 16 {
		b.WriteString(mant)
		b.WriteByte('e')
		if exp < 0 {
			b.WriteByte('-')
			exp = -exp
		} else {
			b.WriteByte('+')
		}
		if exp < 10 {
			b.WriteByte('0')
		}
		b.WriteString(strconv.Itoa(exp))
		return b.String()
	}
	if exp < 0 {
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -exp-1))
		b.WriteString(digits)
		return b.String()
	}
	if len(digits) <= exp+1 {
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", exp+1-len(digits)))
		b.WriteString(".0")
		return b.String()
	}
	b.WriteString(digits[:exp+1])
	b.WriteByte('.')
	b.WriteString(digits[exp+1:])
	return b.String()
}

// Element kinds while parsing.
const (
	ptNone   = iota // no open element
	ptString        // bare string
	ptLit           // ":<literal>" or ":i<literal>"
	ptHex           // ":x"
	ptBin           // ":b"
	ptHexB          // ":y" bytes in hex
	ptASCII         // ":v" bytes as ASCII
	ptB64           // ":s" bytes in base64
)

// Parser states, following MoaT's from_str.
const (
	ptsStart    = iota // nothing yet
	ptsAfterDot        // after '.', a string must follow
	ptsOpen            // an element is open and accepts text
	ptsClosed          // after :t :f :n :e, only '.' or ':' may follow
)

type ptParser struct {
	s     string
	res   Path
	kind  int    // kind of the open element
	start int    // position of the open element
	buf   []byte // text of the open element
}

func (ps *ptParser) fail(pos int, msg string) error {
	return &PathError{Pos: pos, Msg: msg}
}

// ParsePath parses MoaT-KV's dotted path syntax (see Path.String).
//
// Besides what String produces it accepts: ":x<hex>" and ":b<binary>"
// integers; ":y<hex>", ":v<ascii>" and ":s<base64>" bytes; ":<literal>" or
// ":i<literal>" where the literal is a Python int (decimal, 0x, 0o, 0b,
// underscores), float, True, False or None, or the extension inf / +inf /
// -inf; ":t"/":f"/":n"/":e" followed directly by "::", ":." or ":_"
// (which start a new string element, as in MoaT). The empty string and ":"
// are the empty path.
//
// It rejects, with a *PathError naming the byte position: marks (":m"),
// tuples, string literals, expressions, unknown escapes, empty elements, a
// leading or trailing '.', an escape-started element right after '.'
// (MoaT accepts "a.:x1f"; edgekv does not), nil anywhere but first,
// integers outside int64, and more than MaxPathLen elements.
func ParsePath(s string) (Path, error) {
	if s == "" || s == ":" {
		return Path{}, nil
	}
	ps := ptParser{s: s}
	state := ptsStart
	i := 0
	for i < len(s) {
		c := s[i]
		switch c {
		case '.':
			switch state {
			case ptsStart:
				return nil, ps.fail(i, "path starts with '.'")
			case ptsAfterDot:
				return nil, ps.fail(i, "empty element")
			case ptsOpen:
				if err := ps.finish(); err != nil {
					return nil, err
				}
			}
			state = ptsAfterDot
			i++
		case ':':
			if i+1 == len(s) {
				return nil, ps.fail(i, "path ends with ':'")
			}
			n := s[i+1]
			if n == ':' || n == '.' || n == '_' {
				ch := n
				if n == '_' {
					ch = ' '
				}
				if state != ptsOpen {
					// At the start, after '.', or after :t/:f/:n/:e this
					// starts a new string element.
					if err := ps.open(ptString, i, ""); err != nil {
						return nil, err
					}
					state = ptsOpen
				}
				ps.buf = append(ps.buf, ch)
				i += 2
				continue
			}
			if state == ptsAfterDot {
				return nil, ps.fail(i, "escape "+strconv.Quote(ptToken(s, i))+" cannot follow '.'")
			}
			if state == ptsOpen {
				if err := ps.finish(); err != nil {
					return nil, err
				}
			}
			tok := ptToken(s, i)
			next := i + len(tok)
			body := tok[1:]
			var err error
			state = ptsOpen
			switch t := body[0]; {
			case len(body) == 1 && (t == 't' || t == 'f' || t == 'n' || t == 'e'):
				var e Elem
				switch t {
				case 't':
					e = Bool(true)
				case 'f':
					e = Bool(false)
				case 'e':
					e = Str("")
				}
				err = ps.add(e, i)
				state = ptsClosed
			case t == 'm':
				return nil, ps.fail(i, "marks (\":m\") are not supported")
			case t == 'i':
				err = ps.open(ptLit, i, body[1:])
			case t == 'x':
				err = ps.open(ptHex, i, body[1:])
			case t == 'b':
				err = ps.open(ptBin, i, body[1:])
			case t == 'y':
				err = ps.open(ptHexB, i, body[1:])
			case t == 'v':
				err = ps.open(ptASCII, i, body[1:])
			case t == 's':
				err = ps.open(ptB64, i, body[1:])
			case t >= 'a' && t <= 'z':
				return nil, ps.fail(i, "unknown escape "+strconv.Quote(tok))
			default:
				err = ps.open(ptLit, i, body)
			}
			if err != nil {
				return nil, err
			}
			i = next
		default:
			switch state {
			case ptsClosed:
				return nil, ps.fail(i, "expected '.' or ':' after "+strconv.Quote(s[ps.start:i]))
			case ptsStart, ptsAfterDot:
				if err := ps.open(ptString, i, ""); err != nil {
					return nil, err
				}
				state = ptsOpen
			}
			j := i
			for j < len(s) && s[j] != ':' && s[j] != '.' {
				j++
			}
			ps.buf = append(ps.buf, s[i:j]...)
			i = j
		}
	}
	switch state {
	case ptsAfterDot:
		return nil, ps.fail(len(s), "path ends with '.'")
	case ptsOpen:
		if err := ps.finish(); err != nil {
			return nil, err
		}
	}
	return ps.res, nil
}

// ptToken returns the escape token at s[i] == ':': the colon plus the
// following run of bytes other than ':', '.' and '_'.
func ptToken(s string, i int) string {
	j := i + 1
	for j < len(s) && s[j] != ':' && s[j] != '.' && s[j] != '_' {
		j++
	}
	return s[i:j]
}

// open starts a new text-bearing element of kind k at pos.
func (ps *ptParser) open(k, pos int, text string) error {
	if len(ps.res) >= MaxPathLen {
		return ps.fail(pos, "path has more than "+strconv.Itoa(MaxPathLen)+" elements")
	}
	ps.kind = k
	ps.start = pos
	ps.buf = append(ps.buf[:0], text...)
	return nil
}

// add appends a complete element that started at pos.
func (ps *ptParser) add(e Elem, pos int) error {
	if len(ps.res) >= MaxPathLen {
		return ps.fail(pos, "path has more than "+strconv.Itoa(MaxPathLen)+" elements")
	}
	if e.IsNil() && len(ps.res) > 0 {
		return ps.fail(pos, "nil element allowed only first")
	}
	if !e.Valid() {
		return ps.fail(pos, "NaN is not a valid element")
	}
	if ps.res == nil {
		// Every element but the first starts with '.' or ':'.
		n := 1 + strings.Count(ps.s, ".") + strings.Count(ps.s, ":")
		ps.res = make(Path, 0, min(n, MaxPathLen))
	}
	ps.res = append(ps.res, e)
	ps.start = pos
	ps.kind = ptNone
	return nil
}

// finish converts the open element's text to an element.
func (ps *ptParser) finish() error {
	txt := string(ps.buf)
	pos := ps.start
	var e Elem
	switch ps.kind {
	case ptString:
		e = Str(txt)
	case ptLit:
		var msg string
		e, msg = ptLiteral(txt)
		if msg != "" {
			return ps.fail(pos, msg)
		}
	case ptHex, ptBin:
		base := 16
		if ps.kind == ptBin {
			base = 2
		}
		v, msg := ptBaseInt(txt, base)
		if msg != "" {
			return ps.fail(pos, msg)
		}
		e = Int(v)
	case ptHexB:
		b, ok := ptHexBytes(txt)
		if !ok {
			return ps.fail(pos, "invalid hex bytes "+strconv.Quote(txt))
		}
		e = Bytes(b)
	case ptASCII:
		for i := 0; i < len(txt); i++ {
			if txt[i] >= 0x80 {
				return ps.fail(pos, "non-ASCII byte in \":v\" bytes")
			}
		}
		e = Bytes(ps.buf)
	case ptB64:
		b, err := base64.StdEncoding.DecodeString(txt)
		if err != nil {
			return ps.fail(pos, "invalid base64 bytes "+strconv.Quote(txt))
		}
		e = Bytes(b)
	default:
		return ps.fail(pos, "internal parser error")
	}
	return ps.add(e, pos)
}

// ptLiteral interprets the text of a ":<literal>" element. It returns a
// message on failure.
func ptLiteral(s string) (Elem, string) {
	switch s {
	case "":
		return Elem{}, "empty literal"
	case "True":
		return Bool(true), ""
	case "False":
		return Bool(false), ""
	case "None":
		return Nil(), ""
	case "inf", "+inf":
		return Float(math.Inf(1)), ""
	case "-inf":
		return Float(math.Inf(-1)), ""
	}
	if strings.ContainsAny(s, ",()[]") {
		return Elem{}, "tuples are not supported: " + strconv.Quote(s)
	}
	if s[0] == '\'' || s[0] == '"' {
		return Elem{}, "string literals are not supported: " + strconv.Quote(s)
	}
	body := s
	if body[0] == '-' || body[0] == '+' {
		body = body[1:]
	}
	if v, msg, ok := ptPyInt(s[:len(s)-len(body)], body); ok {
		if msg != "" {
			return Elem{}, msg
		}
		return Int(v), ""
	}
	if ptPyFloat(body) {
		f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
		if err != nil && !math.IsInf(f, 0) { // Python: 1e400 is inf
			return Elem{}, "invalid float literal " + strconv.Quote(s)
		}
		return Float(f), ""
	}
	return Elem{}, "invalid literal " + strconv.Quote(s)
}

// ptPyInt parses body (sign removed) as a Python integer literal. ok is
// false if body is not an integer literal at all; msg is set if it is one
// but out of range.
func ptPyInt(sign, body string) (v int64, msg string, ok bool) {
	base := 10
	digits := body
	if len(body) >= 2 && body[0] == '0' {
		switch body[1] {
		case 'x', 'X':
			base = 16
		case 'o', 'O':
			base = 8
		case 'b', 'B':
			base = 2
		}
		if base != 10 {
			digits = body[2:]
			// Python allows one underscore right after the prefix.
			if len(digits) > 0 && digits[0] == '_' {
				digits = digits[1:]
			}
		}
	}
	if !ptDigitPart(digits, base) {
		return 0, "", false
	}
	if base == 10 && digits[0] == '0' && strings.Trim(digits, "0_") != "" {
		return 0, "", false // Python rejects leading zeros ("0123")
	}
	v, msg = ptSignedInt(sign, strings.ReplaceAll(digits, "_", ""), base, body)
	return v, msg, true
}

// ptSignedInt converts unsigned digits with a sign to int64.
func ptSignedInt(sign, digits string, base int, orig string) (int64, string) {
	u, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		return 0, "integer out of range: " + strconv.Quote(sign+orig)
	}
	if sign == "-" {
		if u > 1<<63 {
			return 0, "integer out of range: " + strconv.Quote(sign+orig)
		}
		return -int64(u), "" // wraps correctly for 1<<63
	}
	if u > math.MaxInt64 {
		return 0, "integer out of range: " + strconv.Quote(sign+orig)
	}
	return int64(u), ""
}

// ptBaseInt parses the text of ":x" or ":b" like Python's int(s, base):
// optional sign, optional matching prefix, digits with single underscores.
func ptBaseInt(s string, base int) (int64, string) {
	name := "hex"
	prefix := "xX"
	if base == 2 {
		name, prefix = "binary", "bB"
	}
	body := s
	sign := ""
	if body != "" && (body[0] == '-' || body[0] == '+') {
		sign, body = body[:1], body[1:]
	}
	digits := body
	if len(digits) >= 2 && digits[0] == '0' && strings.IndexByte(prefix, digits[1]) >= 0 {
		digits = digits[2:]
		if len(digits) > 0 && digits[0] == '_' {
			digits = digits[1:]
		}
	}
	if !ptDigitPart(digits, base) {
		return 0, "invalid " + name + " integer " + strconv.Quote(s)
	}
	return ptSignedInt(sign, strings.ReplaceAll(digits, "_", ""), base, body)
}

// ptDigitPart reports whether s is digit ("_"? digit)* in base.
func ptDigitPart(s string, base int) bool {
	if s == "" {
		return false
	}
	prevDigit := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			if !prevDigit {
				return false
			}
			prevDigit = false
			continue
		}
		if ptDigitVal(c) >= base {
			return false
		}
		prevDigit = true
	}
	return prevDigit
}

func ptDigitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return 99
}

// ptPyFloat reports whether s (sign removed) is a Python float literal:
// pointfloat or exponentfloat, with underscores between digits.
func ptPyFloat(s string) bool {
	mant, exp := s, ""
	hasExp := false
	if k := strings.IndexAny(s, "eE"); k >= 0 {
		mant, exp, hasExp = s[:k], s[k+1:], true
	}
	intPart, frac := mant, ""
	hasDot := false
	if k := strings.IndexByte(mant, '.'); k >= 0 {
		intPart, frac, hasDot = mant[:k], mant[k+1:], true
	}
	if !hasDot && !hasExp {
		return false
	}
	if intPart == "" && frac == "" {
		return false
	}
	if intPart != "" && !ptDigitPart(intPart, 10) {
		return false
	}
	if frac != "" && !ptDigitPart(frac, 10) {
		return false
	}
	if hasExp {
		if exp != "" && (exp[0] == '+' || exp[0] == '-') {
			exp = exp[1:]
		}
		if !ptDigitPart(exp, 10) {
			return false
		}
	}
	return true
}

// ptHexBytes decodes hex pairs, allowing ASCII whitespace between pairs
// (like Python's bytes.fromhex).
func ptHexBytes(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s)/2)
	for i := 0; i < len(s); {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' {
			i++
			continue
		}
		if i+1 >= len(s) {
			return nil, false
		}
		h, l := ptDigitVal(s[i]), ptDigitVal(s[i+1])
		if h >= 16 || l >= 16 {
			return nil, false
		}
		out = append(out, byte(h<<4|l))
		i += 2
	}
	return out, true
}
