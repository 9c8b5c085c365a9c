package kvproto

import (
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// MaxSeq bounds request sequence numbers: MoaT-KV clients are Python and
// JavaScript programs, and 2^53 is where JavaScript numbers stop being
// exact.
const MaxSeq = 1<<53 - 1

// MaxChainLinks is the most links a chain in a request may have.
const MaxChainLinks = 64

// Request is one parsed client request. Fields a request did not carry keep
// their zero value; the Has* flags tell absent from zero. Value, Prev and
// Raw alias the message the request was parsed from.
type Request struct {
	Seq    uint64
	Action string
	// State is the stream state ("start", "end", "ack") for stream
	// messages; Ack is the acknowledged wseq of an "ack".
	State string
	Ack   uint64

	HasPath bool
	Path    tree.Path

	// Value is the raw msgpack value (nil: no value key).
	Value []byte

	// NChain: 0 no chain, N>0 up to N links, -1 all. A bool reads as 0/1.
	HasNChain bool
	NChain    int

	// Chain is the expected current chain (set_value/delete_value).
	// HasChain with an empty Chain means chain: None, "must not exist".
	HasChain bool
	Chain    tree.Chain

	// Prev is the expected old value, raw msgpack (nil: no prev key).
	Prev []byte

	Idem bool

	// QLen is the client's window from its reply to the greeting.
	HasQLen bool
	QLen    uint64

	// Raw is the whole message, for action handlers that need keys not
	// parsed here.
	Raw []byte
}

// RequestError is a request that cannot be served. HasSeq tells whether
// its seq could be read, so that the error can be sent as a reply.
type RequestError struct {
	Seq    uint64
	HasSeq bool
	Kind   tree.ErrorKind
	Msg    string
}

func (e *RequestError) Error() string { return "kvproto: " + e.Msg }

// Unwrap returns tree.ErrMalformed for invalid requests.
func (e *RequestError) Unwrap() error {
	if e.Kind == tree.KindInvalid {
		return tree.ErrMalformed
	}
	return nil
}

// ParseRequest parses one request map. Keys may come in any order; unknown
// keys (of any type) are ignored; a known key given twice is an error.
// seq is required, a non-negative integer ≤ MaxSeq. It never panics; an
// error is a *RequestError whose message names the key and the problem.
func ParseRequest(b []byte) (Request, error) {
	req := Request{Raw: b}
	hasSeq := false
	bad := func(format string, args ...any) (Request, error) {
		return req, &RequestError{Seq: req.Seq, HasSeq: hasSeq, Kind: tree.KindInvalid, Msg: fmt.Sprintf(format, args...)}
	}
	n, rest, err := readMapHeader(b)
	if err != "" {
		return bad("request: %s", err)
	}
	// Find seq first, so that every later error can be answered.
	if seq, ok := findSeq(rest, n); ok {
		req.Seq, hasSeq = seq, true
	}
	seqParsed := false
	var seen uint32 // requestKeys seen, by index
	for range n {
		k, isStr, r, err := readKey(rest)
		if err != "" {
			return bad("request: %s", err)
		}
		rest = r
		if !isStr {
			if rest, err = skip(rest); err != "" {
				return bad("request: value of a non-string key: %s", err)
			}
			continue
		}
		key, known := requestKey(k)
		if known >= 0 {
			if seen&(1<<known) != 0 {
				return bad("request: duplicate key %q", key)
			}
			seen |= 1 << known
		}
		val := rest
		switch key {
		case "seq":
			v, r, err := readUint(rest)
			if err != "" {
				return bad("key \"seq\": %s", err)
			}
			if v > MaxSeq {
				return bad("key \"seq\": %d is above 2^53-1", v)
			}
			req.Seq, hasSeq, seqParsed, rest = v, true, true, r
		case "action", "state":
			s, r, err := readStr(rest)
			if err != "" {
				return bad("key %q: %s", key, err)
			}
			if !utf8.Valid(s) || len(s) > 64 {
				return bad("key %q: not a short UTF-8 string", key)
			}
			if key == "action" {
				req.Action = actionName(s)
			} else {
				req.State = string(s)
			}
			rest = r
		case "ack", "qlen":
			v, r, err := readUint(rest)
			if err != "" {
				return bad("key %q: %s", key, err)
			}
			if key == "ack" {
				req.Ack = v
			} else {
				req.QLen, req.HasQLen = v, true
			}
			rest = r
		case "path":
			if msgp.NextType(rest) == msgp.StrType {
				// A file name (save, log), not a tree path: the
				// action reads it from Raw.
				r, err := msgp.Skip(rest)
				if err != nil {
					return bad("key \"path\": %v", err)
				}
				rest = r
				break
			}
			p, r, perr := tree.ReadPath(rest)
			if perr != nil {
				return bad("key \"path\": %v", perr)
			}
			req.Path, req.HasPath, rest = p, true, r
		case "value", "prev":
			r, err := skip(rest)
			if err != "" {
				return bad("key %q: %s", key, err)
			}
			v := val[:len(val)-len(r)]
			if key == "value" {
				req.Value = v
			} else {
				req.Prev = v
			}
			rest = r
		case "nchain":
			if len(rest) > 0 && (rest[0] == 0xc2 || rest[0] == 0xc3) {
				req.NChain, req.HasNChain, rest = int(rest[0]-0xc2), true, rest[1:]
				break
			}
			i, r, err := readInt(rest)
			if err != "" {
				return bad("key \"nchain\": %s (want int or bool)", err)
			}
			switch {
			case i < -1:
				return bad("key \"nchain\": %d (want -1, 0 or a positive count)", i)
			case i > MaxChainLinks:
				i = MaxChainLinks
			}
			req.NChain, req.HasNChain, rest = int(i), true, r
		case "chain":
			c, r, err := readChain(rest, 0)
			if err != "" {
				return bad("key \"chain\": %s", err)
			}
			if cerr := c.Check(); cerr != nil {
				return bad("key \"chain\": %v", cerr)
			}
			req.Chain, req.HasChain, rest = c, true, r
		case "idem":
			if len(rest) == 0 {
				return bad("key \"idem\": truncated")
			}
			switch rest[0] {
			case 0xc2, 0xc0:
				req.Idem = false
			case 0xc3:
				req.Idem = true
			default:
				return bad("key \"idem\": want bool, got %s", wire.Describe(rest))
			}
			rest = rest[1:]
		default:
			r, err := skip(rest)
			if err != "" {
				return bad("key %q: %s", key, err)
			}
			rest = r
		}
	}
	if len(rest) != 0 {
		return bad("request: %d bytes after the map", len(rest))
	}
	if !seqParsed {
		return bad("request: missing key \"seq\"")
	}
	return req, nil
}

// requestKeys are the keys a request may give once.
var requestKeys = [...]string{"seq", "action", "state", "ack", "path", "value", "nchain", "chain", "prev", "idem", "qlen"}

// requestKey returns k as a string (one of requestKeys, not a copy, if it
// is one) and its index there, or -1.
func requestKey(k []byte) (string, int) {
	for i, rk := range requestKeys {
		if string(k) == rk {
			return rk, i
		}
	}
	return string(k), -1
}

// commonActions are the actions whose names are not copied per request.
var commonActions = [...]string{"set_value", "get_value", "delete_value", "get_tree", "enum", "watch", "get_state", "auth"}

// actionName returns s as a string, without a copy for common actions.
func actionName(s []byte) string {
	for _, a := range commonActions {
		if string(s) == a {
			return a
		}
	}
	return string(s)
}

// findSeq looks for a valid seq among n map pairs at b, ignoring errors.
func findSeq(b []byte, n int) (uint64, bool) {
	for range n {
		k, isStr, r, err := readKey(b)
		if err != "" {
			return 0, false
		}
		if isStr && string(k) == "seq" {
			v, _, err := readUint(r)
			return v, err == "" && v <= MaxSeq
		}
		if b, err = skip(r); err != "" {
			return 0, false
		}
	}
	return 0, false
}

func skip(b []byte) ([]byte, string) {
	r, err := skipValue(b)
	if err != nil {
		return b, err.Msg
	}
	return r, ""
}

// readMapHeader reads a map header whose size fits the remaining bytes.
func readMapHeader(b []byte) (int, []byte, string) {
	if len(b) == 0 {
		return 0, b, "want map, got end of input"
	}
	h, err := head(b)
	if err == wire.ErrShortHead && wire.Describe(b) == "map" {
		return 0, b, "truncated map header"
	}
	if err != nil || h.Type != wire.TypeMap {
		return 0, b, "want map, got " + wire.Describe(b)
	}
	if h.Items() > uint64(len(b)-h.Len) {
		return 0, b, fmt.Sprintf("map of %d entries cannot fit in %d bytes", h.N, len(b)-h.Len)
	}
	return int(h.N), b[h.Len:], ""
}

// head reads the header of the item at the start of b (not empty).
func head(b []byte) (wire.Head, error) {
	if h := wire.Lead(b[0]); h.Len != 0 {
		return h, nil
	}
	return wire.ReadHead(b)
}

// readKey reads a map key: a str key is returned with isStr set; any other
// key is skipped.
func readKey(b []byte) ([]byte, bool, []byte, string) {
	if len(b) > 0 && (b[0]&0xe0 == 0xa0 || (b[0] >= 0xd9 && b[0] <= 0xdb)) {
		s, r, err := readStr(b)
		return s, err == "", r, err
	}
	r, err := skip(b)
	return nil, false, r, err
}

// readStr reads a msgpack str, returning its bytes (aliasing b).
func readStr(b []byte) ([]byte, []byte, string) {
	if len(b) == 0 {
		return nil, b, "want str, got end of input"
	}
	h, err := head(b)
	if err != nil && wire.Describe(b) == "str" || err == nil && h.Type == wire.TypeStr && uint64(len(b)-h.Len) < h.Size {
		return nil, b, "truncated str"
	}
	if err != nil || h.Type != wire.TypeStr {
		return nil, b, "want str, got " + wire.Describe(b)
	}
	return b[h.Len:h.End()], b[h.End():], ""
}

// readInt reads any msgpack integer as int64 (uint64 above MaxInt64 fails).
func readInt(b []byte) (int64, []byte, string) {
	if len(b) == 0 {
		return 0, b, "want integer, got end of input"
	}
	c := b[0]
	switch {
	case c <= 0x7f:
		return int64(c), b[1:], ""
	case c >= 0xe0:
		return int64(int8(c)), b[1:], ""
	case c < 0xcc || c > 0xd3:
		return 0, b, "want integer, got " + wire.Describe(b)
	}
	h, _ := wire.ReadHead(b)
	w := h.Size
	if uint64(len(b)) < 1+w {
		return 0, b, "truncated integer"
	}
	var v uint64
	for _, x := range b[1 : 1+w] {
		v = v<<8 | uint64(x)
	}
	rest := b[1+w:]
	if c <= 0xcf {
		if v > math.MaxInt64 {
			return 0, b, fmt.Sprintf("integer %d is too large", v)
		}
		return int64(v), rest, ""
	}
	switch w {
	case 1:
		return int64(int8(v)), rest, ""
	case 2:
		return int64(int16(v)), rest, ""
	case 4:
		return int64(int32(v)), rest, ""
	}
	return int64(v), rest, ""
}

// readUint reads a non-negative integer.
func readUint(b []byte) (uint64, []byte, string) {
	i, r, err := readInt(b)
	if err != "" {
		return 0, b, err
	}
	if i < 0 {
		return 0, b, fmt.Sprintf("want a non-negative integer, got %d", i)
	}
	return uint64(i), r, ""
}

// readChain reads MoaT-KV's nested {node, tick, prev} chain map (nil: no
// chain). prev: nil and a missing prev both end the chain.
func readChain(b []byte, depth int) (tree.Chain, []byte, string) {
	if len(b) > 0 && b[0] == 0xc0 {
		return nil, b[1:], ""
	}
	if depth >= MaxChainLinks {
		return nil, b, fmt.Sprintf("more than %d links", MaxChainLinks)
	}
	n, rest, err := readMapHeader(b)
	if err != "" {
		return nil, b, fmt.Sprintf("link %d: %s", depth, err)
	}
	var link tree.Link
	var tail tree.Chain
	var hasNode, hasTick bool
	for range n {
		k, isStr, r, err := readKey(rest)
		if err != "" {
			return nil, b, fmt.Sprintf("link %d: %s", depth, err)
		}
		rest = r
		switch {
		case isStr && string(k) == "node" && !hasNode:
			s, r, err := readStr(rest)
			if err != "" || len(s) == 0 || len(s) > 255 || !utf8.Valid(s) {
				return nil, b, fmt.Sprintf("link %d: node: want a non-empty UTF-8 name", depth)
			}
			link.Node, hasNode, rest = string(s), true, r
		case isStr && string(k) == "tick" && !hasTick:
			t, r, err := readUint(rest)
			if err != "" {
				return nil, b, fmt.Sprintf("link %d: tick: %s", depth, err)
			}
			link.Tick, hasTick, rest = t, true, r
		case isStr && string(k) == "prev" && tail == nil:
			t, r, err := readChain(rest, depth+1)
			if err != "" {
				return nil, b, err
			}
			if t == nil {
				t = tree.Chain{}
			}
			tail, rest = t, r
		default:
			if rest, err = skip(rest); err != "" {
				return nil, b, fmt.Sprintf("link %d: %s", depth, err)
			}
		}
	}
	if !hasNode || !hasTick {
		return nil, b, fmt.Sprintf("link %d: want keys node and tick", depth)
	}
	return append(tree.Chain{link}, tail...), rest, ""
}
