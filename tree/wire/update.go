package wire

import (
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// Update is a decoded update message.
type Update struct {
	// Event is the change. Event.Value aliases the input (see the package
	// documentation); nil means deletion.
	Event tree.Event
	// Sender and SenderTick name the node that sent the message and its
	// tick at the time. In the originator shape they are the chain head; in
	// MoaT-KV's recovery shape they are the re-sending node's own name and
	// current tick (empty and 0 if the message omits them).
	Sender     string
	SenderTick uint64
	// Recovery reports the recovery shape {value?, chain, tock, path, node,
	// tick} (MoaT-KV's re-send of an entry) rather than the originator shape.
	Recovery bool
	// Via lists nodes that this update has already been sent to (edgekv's
	// optional "via" key, ignored by MoaT-KV): a relay skips them.
	Via []string
}

// MaxVia bounds the "via" list of an update.
const MaxVia = 64

// AppendUpdateVia is AppendUpdate with edgekv's "via" key appended: the
// nodes the update has already been sent to (at most MaxVia are written).
// With no names it is exactly AppendUpdate.
func AppendUpdateVia(b []byte, ev tree.Event, via []string) []byte {
	if len(via) == 0 {
		return AppendUpdate(b, ev)
	}
	start := len(b)
	b = AppendUpdate(b, ev)
	b[start]++ // one more key in the fixmap header (5 or 6 keys before)
	b = append(b, kVia...)
	via = via[:min(len(via), MaxVia)]
	b = msgp.AppendArrayHeader(b, uint32(len(via)))
	for _, v := range via {
		b = msgp.AppendString(b, v)
	}
	return b
}

var kVia = []byte("\xa3via")

// AppendUpdate appends ev as an update message in the originator shape
// {node, tick, prev, path, value?, tock}: node and tick are the chain head,
// prev the rest of the chain as nested {node, tick, prev} maps (nil at the
// end), path is extension type 3, and a deletion (ev.Value nil) has no value
// key. The key order is MoaT-KV's, so a MoaT-KV update re-encodes byte for
// byte. At most MaxChainLinks links are written; a longer chain is marked
// truncated. ev.Value must be one msgpack value; it is not checked.
//
// ev.Chain must not be empty: an event without a version cannot be sent,
// and AppendUpdate panics (a programmer error).
func AppendUpdate(b []byte, ev tree.Event) []byte {
	if len(ev.Chain) == 0 {
		panic("wire: AppendUpdate: event for " + ev.Path.String() + " has no chain")
	}
	if ev.Value != nil {
		b = append(b, 0x86)
	} else {
		b = append(b, 0x85)
	}
	head := ev.Chain[0]
	b = append(b, kNode...)
	b = msgp.AppendString(b, head.Node)
	b = append(b, kTick...)
	b = msgp.AppendUint64(b, head.Tick)
	b = append(b, kPrev...)
	b = AppendChain(b, ev.Chain[1:], MaxChainLinks-1)
	b = append(b, kPath...)
	b = tree.AppendPath(b, ev.Path)
	if ev.Value != nil {
		b = append(b, kValue...)
		b = append(b, ev.Value...)
	}
	b = append(b, kTock...)
	return msgp.AppendUint64(b, ev.Tock)
}

// DecodeUpdate decodes an update message of either shape: the originator
// shape {node, tick, prev, path, value?, tock} or the recovery shape
// {value?, chain, tock, path, node, tick}. A message with a chain key is
// read in the recovery shape. The input must hold exactly one message.
func DecodeUpdate(b []byte) (Update, error) {
	u, e := decodeUpdate(b)
	if e != nil {
		return Update{}, e.finish("update", len(b))
	}
	return u, nil
}

func decodeUpdate(b []byte) (Update, *Error) {
	var m evMap
	rest, e := m.read(b)
	if e != nil {
		return Update{}, e
	}
	if e := noTrailing(rest); e != nil {
		return Update{}, e
	}
	return m.update(b)
}

// noTrailing rejects bytes after a message.
func noTrailing(rest []byte) *Error {
	if len(rest) != 0 {
		return fail(rest, "%d trailing bytes after the message", len(rest))
	}
	return nil
}

// Which keys an event-like map had.
const (
	hasNode = 1 << iota
	hasTick
	hasPrev
	hasChain
	hasPath
	hasValue
	hasTock
	hasDepth
	hasVia
)

// evMap is what an event-like map holds: an update of either shape, a
// snapshot entry, or a .dkv event or entry record.
type evMap struct {
	has   uint16
	node  string
	tick  uint64
	prev  tree.Chain // from "prev": links 1… (link 0 is the head)
	chain tree.Chain // from "chain"
	path  tree.Path
	value []byte
	tock  uint64
	depth uint64

	via []string

	tickAt, prevAt, chainAt []byte // where those values started
}

// read decodes the map at the start of b into m.
func (m *evMap) read(b []byte) ([]byte, *Error) {
	n, rest, e := readMapHeader(b)
	if e != nil {
		return b, e
	}
	for range n {
		at := rest
		k, ok, r, e := readKey(rest)
		if e != nil {
			return b, e
		}
		rest = r
		if !ok {
			if rest, e = skipValue(rest, 0); e != nil {
				return b, e.in("value of a non-string key")
			}
			continue
		}
		bit := keyBit(k)
		if bit != 0 {
			if m.has&bit != 0 {
				return b, fail(at, "duplicate key %q", k)
			}
			m.has |= bit
		}
		switch bit {
		case hasNode:
			m.node, rest, e = readName(rest)
		case hasTick:
			m.tickAt = rest
			m.tick, rest, e = readUintOrNil(rest)
		case hasPrev:
			m.prevAt = rest
			if !isNil(rest) {
				m.prev = make(tree.Chain, 1, 4)
				rest, e = readChain(rest, &m.prev, 1)
			} else {
				rest = rest[1:]
			}
		case hasChain:
			m.chainAt = rest
			if !isNil(rest) {
				m.chain = make(tree.Chain, 0, 2)
			}
			rest, e = readChain(rest, &m.chain, 0)
		case hasPath:
			var err error
			var r []byte
			m.path, r, err = tree.ReadPath(rest)
			if err != nil {
				e = failCause(rest, err, "%v", err)
			} else {
				rest = r
			}
		case hasValue:
			start := rest
			if rest, e = skipValue(rest, 0); e == nil {
				m.value = start[:len(start)-len(rest)]
			}
		case hasTock:
			m.tock, rest, e = readUint(rest)
		case hasDepth:
			m.depth, rest, e = readUint(rest)
		case hasVia:
			m.via, rest, e = readVia(rest)
		default:
			rest, e = skipValue(rest, 0)
		}
		if e != nil {
			return b, e.inKey(string(k))
		}
	}
	return rest, nil
}

func keyBit(k []byte) uint16 {
	switch string(k) {
	case "node":
		return hasNode
	case "tick":
		return hasTick
	case "prev":
		return hasPrev
	case "chain":
		return hasChain
	case "path":
		return hasPath
	case "value":
		return hasValue
	case "tock":
		return hasTock
	case "depth":
		return hasDepth
	case "via":
		return hasVia
	}
	return 0
}

// readVia reads the "via" list: an array of at most MaxVia node names.
func readVia(b []byte) ([]string, []byte, *Error) {
	n, rest, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return nil, b, fail(b, "want an array of node names: %v", err)
	}
	if n > MaxVia {
		return nil, b, fail(b, "%d names, at most %d", n, MaxVia)
	}
	out := make([]string, 0, n)
	for i := range n {
		var name string
		var e *Error
		if name, rest, e = readName(rest); e != nil {
			return nil, b, e.in("name %d", i)
		}
		out = append(out, name)
	}
	return out, rest, nil
}

func (m *evMap) require(b []byte, bits uint16) *Error {
	for _, kb := range [...]struct {
		k   string
		bit uint16
	}{{"node", hasNode}, {"tick", hasTick}, {"chain", hasChain}, {"path", hasPath}, {"tock", hasTock}} {
		if bits&kb.bit != 0 && m.has&kb.bit == 0 {
			return fail(b, "missing key %q", kb.k)
		}
	}
	return nil
}

// originatorChain builds the chain of an originator-shape event: the head
// from node/tick, then prev.
func (m *evMap) originatorChain(b []byte) (tree.Chain, *Error) {
	if e := m.require(b, hasNode|hasTick); e != nil {
		return nil, e
	}
	if m.tick == 0 {
		return nil, fail(m.tickAt, "tick 0 names no change").inKey("tick")
	}
	c := m.prev
	if c == nil {
		c = make(tree.Chain, 1)
	}
	c[0] = tree.Link{Node: m.node, Tick: m.tick}
	if e := checkChain(m.prevAt, c); e != nil {
		return nil, e.inKey("prev")
	}
	return c, nil
}

// update interprets m as an update of either shape.
func (m *evMap) update(b []byte) (Update, *Error) {
	if e := m.require(b, hasPath|hasTock); e != nil {
		return Update{}, e
	}
	u := Update{Event: tree.Event{Path: m.path, Value: m.value, Tock: m.tock}, Via: m.via}
	if m.has&hasChain != 0 {
		if len(m.chain) == 0 {
			return Update{}, fail(m.chainAt, "nil chain: an update needs a version").inKey("chain")
		}
		if e := checkChain(m.chainAt, m.chain); e != nil {
			return Update{}, e.inKey("chain")
		}
		u.Event.Chain = m.chain
		u.Sender, u.SenderTick, u.Recovery = m.node, m.tick, true
		return u, nil
	}
	c, e := m.originatorChain(b)
	if e != nil {
		return Update{}, e
	}
	u.Event.Chain = c
	u.Sender, u.SenderTick = m.node, m.tick
	return u, nil
}

// entry interprets m as a snapshot entry; nil chain reads as no chain.
func (m *evMap) entry(b []byte) (tree.Event, *Error) {
	if e := m.require(b, hasChain|hasPath|hasTock); e != nil {
		return tree.Event{}, e
	}
	if e := checkChain(m.chainAt, m.chain); e != nil {
		return tree.Event{}, e.inKey("chain")
	}
	return tree.Event{Path: m.path, Value: m.value, Chain: m.chain, Tock: m.tock}, nil
}
