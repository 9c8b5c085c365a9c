package wire

import (
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// Proto is the version of edgekv's own sync messages, sent in Hello.
const Proto = 1

// Hello is sent once when a link comes up: {proto, node, tick, tock}.
type Hello struct {
	Proto uint64 // protocol version (Proto)
	Node  string
	Tick  uint64
	Tock  uint64
}

// Digest summarises what a node has seen, per node: {node, tick, tock,
// nodes: {name: {tick, known}}}. The receiver sends what the digest lacks.
type Digest struct {
	Node  string
	Tick  uint64
	Tock  uint64
	Nodes map[string]NodeDigest
}

// NodeDigest is one node's line in a Digest: the highest tick known for it,
// every tick of it seen (present or superseded), the ticks it declared
// skipped (key "skipped", omitted when empty), and a hash of its ticks that
// head an entry (key "heads", tree.Node.HeadsHash; omitted when 0).
type NodeDigest struct {
	Tick    uint64
	Known   tree.RangeSet
	Skipped tree.RangeSet
	Heads   uint64
}

// Heads lists, per node, the ticks that head an entry at the sender: {node,
// reply, nodes: {name: ranges}}. A node sends it when a peer's digest
// agrees with it on every tick seen but not on the heads hashes; the peer
// then sends the entries it heads that the list lacks. Reply marks the
// answer to a Heads message, which is not answered again.
type Heads struct {
	Node  string
	Reply bool
	Nodes map[string]tree.RangeSet
}

// AppendHeads appends h as {node, reply, nodes}.
func AppendHeads(b []byte, h Heads) []byte {
	b = append(b, 0x83)
	b = append(b, kNode...)
	b = msgp.AppendString(b, h.Node)
	b = append(b, "\xa5reply"...)
	b = msgp.AppendBool(b, h.Reply)
	b = append(b, "\xa5nodes"...)
	return appendRangeSetMap(b, h.Nodes)
}

// DecodeHeads decodes a heads message; every key is required.
func DecodeHeads(b []byte) (Heads, error) {
	var h Heads
	e := decodeFlat(b, []flatKey{
		{"node", true, nameInto(&h.Node)},
		{"reply", true, boolInto(&h.Reply)},
		{"nodes", true, rangeSetMapInto(&h.Nodes)},
	})
	if e != nil {
		return Heads{}, e.finish("heads", len(b))
	}
	return h, nil
}

// Heartbeat is sent periodically and relayed: {node, tick, tock, seq,
// through?: {name: tick}, seen?: {name: ranges}, skipped?}. Through gives,
// per node, the tick up to which the sender has seen every change
// (contiguous from 1); Seen, for nodes with gaps, ticks above that which
// the sender has seen too (its newest ranges). Skipped is the sender's own
// skipped ticks (its newest ranges).
type Heartbeat struct {
	Node    string
	Tick    uint64
	Tock    uint64
	Seq     uint64
	Through map[string]uint64
	Seen    map[string]tree.RangeSet
	Skipped tree.RangeSet
}

// Reservation is a node's durable reservation record {node, epoch, tick,
// tock}: the node has started Epoch times and issues no tick above Tick
// and no tock above Tock before it has saved a higher reservation.
type Reservation struct {
	Node  string
	Epoch uint64
	Tick  uint64
	Tock  uint64
}

// AppendReservation appends r as {node, tick, tock, epoch}.
func AppendReservation(b []byte, r Reservation) []byte {
	b = append(b, 0x84)
	b = appendNodeTickTock(b, r.Node, r.Tick, r.Tock)
	b = append(b, "\xa5epoch"...)
	return msgp.AppendUint64(b, r.Epoch)
}

// DecodeReservation decodes a reservation record; every key is required.
func DecodeReservation(b []byte) (Reservation, error) {
	var r Reservation
	e := decodeFlat(b, []flatKey{
		{"node", true, nameInto(&r.Node)},
		{"tick", true, uintInto(&r.Tick)},
		{"tock", true, uintInto(&r.Tock)},
		{"epoch", true, uintInto(&r.Epoch)},
	})
	if e != nil {
		return Reservation{}, e.finish("reservation", len(b))
	}
	return r, nil
}

// AppendHello appends h as {proto, node, tick, tock}.
func AppendHello(b []byte, h Hello) []byte {
	b = append(b, 0x84, 0xa5, 'p', 'r', 'o', 't', 'o')
	b = msgp.AppendUint64(b, h.Proto)
	b = appendNodeTickTock(b, h.Node, h.Tick, h.Tock)
	return b
}

func appendNodeTickTock(b []byte, node string, tick, tock uint64) []byte {
	b = append(b, kNode...)
	b = msgp.AppendString(b, node)
	b = append(b, kTick...)
	b = msgp.AppendUint64(b, tick)
	b = append(b, kTock...)
	return msgp.AppendUint64(b, tock)
}

// DecodeHello decodes a hello message; every key is required.
func DecodeHello(b []byte) (Hello, error) {
	var h Hello
	e := decodeFlat(b, []flatKey{
		{"proto", true, uintInto(&h.Proto)},
		{"node", true, nameInto(&h.Node)},
		{"tick", true, uintInto(&h.Tick)},
		{"tock", true, uintInto(&h.Tock)},
	})
	if e != nil {
		return Hello{}, e.finish("hello", len(b))
	}
	return h, nil
}

// AppendDigest appends d as {node, tick, tock, nodes: {name: {tick,
// known}}}, nodes in ascending order.
func AppendDigest(b []byte, d Digest) []byte {
	b = append(b, 0x84)
	b = appendNodeTickTock(b, d.Node, d.Tick, d.Tock)
	b = append(b, "\xa5nodes"...)
	b = msgp.AppendMapHeader(b, uint32(len(d.Nodes)))
	var buf [16]string
	for _, k := range sortedNames(d.Nodes, buf[:]) {
		nd := d.Nodes[k]
		b = msgp.AppendString(b, k)
		n := byte(2)
		if !nd.Skipped.IsEmpty() {
			n++
		}
		if nd.Heads != 0 {
			n++
		}
		b = append(b, 0x80|n)
		b = append(b, kTick...)
		b = msgp.AppendUint64(b, nd.Tick)
		b = append(b, "\xa5known"...)
		b = AppendRangeSet(b, nd.Known)
		if !nd.Skipped.IsEmpty() {
			b = append(b, "\xa7skipped"...)
			b = AppendRangeSet(b, nd.Skipped)
		}
		if nd.Heads != 0 {
			b = append(b, "\xa5heads"...)
			b = msgp.AppendUint64(b, nd.Heads)
		}
	}
	return b
}

// DecodeDigest decodes a digest message; node, tick, tock and nodes are
// required, and in each node's line tick is (known may be missing).
func DecodeDigest(b []byte) (Digest, error) {
	var d Digest
	e := decodeFlat(b, []flatKey{
		{"node", true, nameInto(&d.Node)},
		{"tick", true, uintInto(&d.Tick)},
		{"tock", true, uintInto(&d.Tock)},
		{"nodes", true, func(v []byte) (rest []byte, e *Error) {
			d.Nodes, rest, e = readNameMap(v, readNodeDigest)
			return rest, e
		}},
	})
	if e != nil {
		return Digest{}, e.finish("digest", len(b))
	}
	return d, nil
}

func readNodeDigest(b []byte) (NodeDigest, []byte, *Error) {
	var nd NodeDigest
	n, rest, e := readMapHeader(b)
	if e != nil {
		return nd, b, e
	}
	var seen uint8
	for range n {
		at := rest
		k, ok, r, e := readKey(rest)
		if e != nil {
			return nd, b, e
		}
		rest = r
		var bit uint8
		switch {
		case ok && string(k) == "tick":
			bit = 1
			nd.Tick, rest, e = readUint(rest)
		case ok && string(k) == "known":
			bit = 2
			nd.Known, rest, e = readRangeSet(rest)
		case ok && string(k) == "skipped":
			bit = 4
			nd.Skipped, rest, e = readRangeSet(rest)
		case ok && string(k) == "heads":
			bit = 8
			nd.Heads, rest, e = readUint64Any(rest)
		default:
			rest, e = skipValue(rest, 0)
		}
		if bit != 0 {
			if seen&bit != 0 {
				return nd, b, fail(at, "duplicate key %q", k)
			}
			seen |= bit
		}
		if e != nil {
			if ok {
				return nd, b, e.inKey(string(k))
			}
			return nd, b, e
		}
	}
	if seen&1 == 0 {
		return nd, b, fail(b, "missing key \"tick\"")
	}
	return nd, rest, nil
}

// AppendHeartbeat appends hb as {node, tick, tock, seq, through?, seen?,
// skipped?}; the optional keys are omitted when empty, nodes in ascending
// order.
func AppendHeartbeat(b []byte, hb Heartbeat) []byte {
	n := byte(4)
	for _, l := range [...]int{len(hb.Through), len(hb.Seen), len(hb.Skipped.Ranges())} {
		if l > 0 {
			n++
		}
	}
	b = append(b, 0x80|n)
	b = appendNodeTickTock(b, hb.Node, hb.Tick, hb.Tock)
	b = append(b, 0xa3, 's', 'e', 'q')
	b = msgp.AppendUint64(b, hb.Seq)
	if len(hb.Through) > 0 {
		b = append(b, "\xa7through"...)
		b = appendTickMap(b, hb.Through)
	}
	if len(hb.Seen) > 0 {
		b = append(b, "\xa4seen"...)
		b = appendRangeSetMap(b, hb.Seen)
	}
	if !hb.Skipped.IsEmpty() {
		b = append(b, "\xa7skipped"...)
		b = AppendRangeSet(b, hb.Skipped)
	}
	return b
}

// DecodeHeartbeat decodes a heartbeat message; node, tick, tock and seq are
// required.
func DecodeHeartbeat(b []byte) (Heartbeat, error) {
	var hb Heartbeat
	e := decodeFlat(b, []flatKey{
		{"node", true, nameInto(&hb.Node)},
		{"tick", true, uintInto(&hb.Tick)},
		{"tock", true, uintInto(&hb.Tock)},
		{"seq", true, uintInto(&hb.Seq)},
		{"through", false, func(v []byte) (rest []byte, e *Error) {
			hb.Through, rest, e = readTickMap(v, false)
			return rest, e
		}},
		{"seen", false, rangeSetMapInto(&hb.Seen)},
		{"skipped", false, func(v []byte) (rest []byte, e *Error) {
			hb.Skipped, rest, e = readRangeSet(v)
			return rest, e
		}},
	})
	if e != nil {
		return Heartbeat{}, e.finish("heartbeat", len(b))
	}
	return hb, nil
}

// AppendBatch appends a batch message {updates: [u, u, …]} whose elements
// are the given encoded updates (as AppendUpdate writes them), embedded as
// msgpack maps, not wrapped in bin: each element is exactly the bytes of
// one update message. Each must be one well-formed msgpack map; that is not
// checked here.
func AppendBatch(b []byte, updates [][]byte) []byte {
	b = append(b, 0x81, 0xa7, 'u', 'p', 'd', 'a', 't', 'e', 's')
	b = msgp.AppendArrayHeader(b, uint32(len(updates)))
	for _, u := range updates {
		b = append(b, u...)
	}
	return b
}

// DecodeBatch splits a batch message into its elements, each the bytes of
// one update message (aliasing b) for DecodeUpdate. It checks that every
// element is a well-formed map but does not decode it.
func DecodeBatch(b []byte) ([][]byte, error) {
	var out [][]byte
	e := decodeFlat(b, []flatKey{
		{"updates", true, func(v []byte) ([]byte, *Error) {
			n, rest, e := readArrayHeader(v)
			if e != nil {
				return v, e
			}
			out = make([][]byte, 0, n)
			for i := range n {
				start := rest
				if len(rest) == 0 || Describe(rest) != "map" {
					return v, fail(rest, "want update map, got %s", Describe(rest)).in("element %d", i)
				}
				if rest, e = skipValue(rest, 0); e != nil {
					return v, e.in("element %d", i)
				}
				out = append(out, start[:len(start)-len(rest)])
			}
			return rest, nil
		}},
	})
	if e != nil {
		return nil, e.finish("batch", len(b))
	}
	return out, nil
}

// flatKey is one key of a map decoded by decodeFlat.
type flatKey struct {
	name     string
	required bool
	read     func([]byte) ([]byte, *Error)
}

// decodeFlat decodes a whole input holding one map with the given keys,
// skipping unknown ones; a key may appear once.
func decodeFlat(b []byte, keys []flatKey) *Error {
	rest, e := decodeFlatIn(b, keys)
	if e != nil {
		return e
	}
	return noTrailing(rest)
}

// decodeFlatIn decodes the map at the start of b and returns the rest.
func decodeFlatIn(b []byte, keys []flatKey) ([]byte, *Error) {
	n, rest, e := readMapHeader(b)
	if e != nil {
		return b, e
	}
	var seen uint64
	for range n {
		at := rest
		k, ok, r, e := readKey(rest)
		if e != nil {
			return b, e
		}
		rest = r
		idx := -1
		if ok {
			for i := range keys {
				if keys[i].name == string(k) {
					idx = i
					break
				}
			}
		}
		if idx < 0 {
			if rest, e = skipValue(rest, 0); e != nil {
				if ok {
					return b, e.inKey(string(k))
				}
				return b, e.in("value of a non-string key")
			}
			continue
		}
		if seen&(1<<idx) != 0 {
			return b, fail(at, "duplicate key %q", k)
		}
		seen |= 1 << idx
		if rest, e = keys[idx].read(rest); e != nil {
			return b, e.inKey(keys[idx].name)
		}
	}
	for i, k := range keys {
		if k.required && seen&(1<<i) == 0 {
			return b, fail(b, "missing key %q", k.name)
		}
	}
	return rest, nil
}

func boolInto(dst *bool) func([]byte) ([]byte, *Error) {
	return func(v []byte) ([]byte, *Error) {
		x, rest, err := msgp.ReadBoolBytes(v)
		if err != nil {
			return v, fail(v, "want bool, got %s", Describe(v))
		}
		*dst = x
		return rest, nil
	}
}

func uintInto(dst *uint64) func([]byte) ([]byte, *Error) {
	return func(v []byte) (rest []byte, e *Error) {
		*dst, rest, e = readUint(v)
		return rest, e
	}
}

func nameInto(dst *string) func([]byte) ([]byte, *Error) {
	return func(v []byte) (rest []byte, e *Error) {
		*dst, rest, e = readName(v)
		return rest, e
	}
}
