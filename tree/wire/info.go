package wire

import (
	"slices"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// Info is an info message: node state shared during recovery and catch-up.
// Empty maps are omitted when encoding, except Missing: an empty non-nil
// Missing is sent (MoaT-KV's recovery step 2 says "nothing missing" so).
type Info struct {
	Node string // sender
	Tick uint64 // sender's tick (MoaT-KV's nil reads as 0)
	Tock uint64
	// Ticks: node → highest tick known for it.
	Ticks map[string]uint64
	// Missing: node → ticks the sender lacks and asks for.
	Missing map[string]tree.RangeSet
	// Known: node → ticks that existed but are superseded. Decoded from
	// "known" or "superseded" (both: their union); encoded as "known".
	Known map[string]tree.RangeSet
	// Deleted: node → ticks of deleted entries.
	Deleted map[string]tree.RangeSet
	// NodeDrop: nodes to forget.
	NodeDrop []string
	// Skipped: node → ticks it declared skipped (edgekv's key "skipped",
	// which MoaT-KV ignores).
	Skipped map[string]tree.RangeSet
}

// AppendInfo appends in as an info message. Like MoaT-KV it writes the
// payload keys first (ticks, missing, known, deleted, node_drop, each only if
// not empty, nodes in ascending order) and then tock, node, tick.
func AppendInfo(b []byte, in Info) []byte {
	n := 3
	for _, l := range [...]int{len(in.Ticks), len(in.Known), len(in.Deleted), len(in.NodeDrop), len(in.Skipped)} {
		if l > 0 {
			n++
		}
	}
	if in.Missing != nil {
		n++
	}
	b = append(b, 0x80|byte(n))
	if len(in.Ticks) > 0 {
		b = append(b, "\xa5ticks"...)
		b = appendTickMap(b, in.Ticks)
	}
	if in.Missing != nil {
		b = append(b, "\xa7missing"...)
		b = appendRangeSetMap(b, in.Missing)
	}
	if len(in.Known) > 0 {
		b = append(b, "\xa5known"...)
		b = appendRangeSetMap(b, in.Known)
	}
	if len(in.Deleted) > 0 {
		b = append(b, "\xa7deleted"...)
		b = appendRangeSetMap(b, in.Deleted)
	}
	if len(in.NodeDrop) > 0 {
		b = append(b, "\xa9node_drop"...)
		b = msgp.AppendArrayHeader(b, uint32(len(in.NodeDrop)))
		for _, s := range in.NodeDrop {
			b = msgp.AppendString(b, s)
		}
	}
	if len(in.Skipped) > 0 {
		b = append(b, "\xa7skipped"...)
		b = appendRangeSetMap(b, in.Skipped)
	}
	b = append(b, kTock...)
	b = msgp.AppendUint64(b, in.Tock)
	b = append(b, kNode...)
	b = msgp.AppendString(b, in.Node)
	b = append(b, kTick...)
	return msgp.AppendUint64(b, in.Tick)
}

// DecodeInfo decodes an info message. node is required; tick and tock may
// be missing or nil (0). The input must hold exactly one message.
func DecodeInfo(b []byte) (Info, error) {
	in, rest, e := readInfo(b, true)
	if e == nil {
		e = noTrailing(rest)
	}
	if e != nil {
		return Info{}, e.finish("info", len(b))
	}
	return in, nil
}

// DecodeInfoFields decodes a map that holds info fields among others (a
// client's fake_info_send request): node may be missing.
func DecodeInfoFields(b []byte) (Info, error) {
	in, rest, e := readInfo(b, false)
	if e == nil {
		e = noTrailing(rest)
	}
	if e != nil {
		return Info{}, e.finish("info fields", len(b))
	}
	return in, nil
}

func readInfo(b []byte, needNode bool) (Info, []byte, *Error) {
	var in Info
	n, rest, e := readMapHeader(b)
	if e != nil {
		return in, b, e
	}
	var seen uint16
	for range n {
		at := rest
		k, ok, r, e := readKey(rest)
		if e != nil {
			return in, b, e
		}
		rest = r
		if !ok {
			if rest, e = skipValue(rest, 0); e != nil {
				return in, b, e.in("value of a non-string key")
			}
			continue
		}
		var bit uint16
		switch string(k) {
		case "node":
			bit = 1
			if len(rest) > 0 && rest[0] == 0xa0 {
				rest = rest[1:] // "": MoaT-KV's fake_info_send (no sender)
			} else {
				in.Node, rest, e = readName(rest)
			}
		case "tick":
			bit = 2
			in.Tick, rest, e = readUintOrNil(rest)
		case "tock":
			bit = 4
			in.Tock, rest, e = readUintOrNil(rest)
		case "ticks":
			bit = 8
			in.Ticks, rest, e = readTickMap(rest, true)
		case "missing":
			bit = 16
			in.Missing, rest, e = readRangeSetMap(rest)
		case "known", "superseded":
			bit = 32
			if k[0] == 's' {
				bit = 64
			}
			var m map[string]tree.RangeSet
			if m, rest, e = readRangeSetMap(rest); e == nil {
				in.Known = unionMaps(in.Known, m)
			}
		case "deleted":
			bit = 128
			in.Deleted, rest, e = readRangeSetMap(rest)
		case "node_drop":
			bit = 256
			in.NodeDrop, rest, e = readNameList(rest)
		case "skipped":
			bit = 512
			in.Skipped, rest, e = readRangeSetMap(rest)
		default:
			rest, e = skipValue(rest, 0)
		}
		if bit != 0 {
			if seen&bit != 0 {
				return in, b, fail(at, "duplicate key %q", k)
			}
			seen |= bit
		}
		if e != nil {
			return in, b, e.inKey(string(k))
		}
	}
	if needNode && seen&1 == 0 {
		return in, b, fail(b, "missing key \"node\"")
	}
	return in, rest, nil
}

func unionMaps(a, b map[string]tree.RangeSet) map[string]tree.RangeSet {
	if a == nil {
		return b
	}
	for k, v := range b {
		a[k] = a[k].Union(v)
	}
	return a
}

// sortedNames returns m's keys in ascending order, using buf if it is big
// enough.
func sortedNames[V any](m map[string]V, buf []string) []string {
	names := buf[:0]
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func appendTickMap(b []byte, m map[string]uint64) []byte {
	var buf [16]string
	b = msgp.AppendMapHeader(b, uint32(len(m)))
	for _, k := range sortedNames(m, buf[:]) {
		b = msgp.AppendString(b, k)
		b = msgp.AppendUint64(b, m[k])
	}
	return b
}

func appendRangeSetMap(b []byte, m map[string]tree.RangeSet) []byte {
	var buf [16]string
	b = msgp.AppendMapHeader(b, uint32(len(m)))
	for _, k := range sortedNames(m, buf[:]) {
		b = msgp.AppendString(b, k)
		b = AppendRangeSet(b, m[k])
	}
	return b
}

// readNameMap reads a map from node names to values read by val; a name
// may appear once.
func readNameMap[V any](b []byte, val func([]byte) (V, []byte, *Error)) (map[string]V, []byte, *Error) {
	n, rest, e := readMapHeader(b)
	if e != nil {
		return nil, b, e
	}
	m := make(map[string]V, n)
	for range n {
		at := rest
		var name string
		if name, rest, e = readName(rest); e != nil {
			return nil, b, e.in("node name")
		}
		if _, dup := m[name]; dup {
			return nil, b, fail(at, "duplicate node %q", name)
		}
		var v V
		if v, rest, e = val(rest); e != nil {
			return nil, b, e.in("node %q", name)
		}
		m[name] = v
	}
	return m, rest, nil
}

// readTickMap reads {name: tick}; with nilOK a nil tick reads as 0.
func readTickMap(b []byte, nilOK bool) (map[string]uint64, []byte, *Error) {
	if nilOK {
		return readNameMap(b, readUintOrNil)
	}
	return readNameMap(b, readUint)
}

// DecodeRangeSetMap decodes {node: range set}, as info messages and
// check_deleted's "nodes" carry it. The input must hold exactly one map.
func DecodeRangeSetMap(b []byte) (map[string]tree.RangeSet, error) {
	m, rest, e := readRangeSetMap(b)
	if e == nil {
		e = noTrailing(rest)
	}
	if e != nil {
		return nil, e.finish("range sets", len(b))
	}
	return m, nil
}

func readRangeSetMap(b []byte) (map[string]tree.RangeSet, []byte, *Error) {
	return readNameMap(b, readRangeSet)
}

func readNameList(b []byte) ([]string, []byte, *Error) {
	n, rest, e := readArrayHeader(b)
	if e != nil {
		return nil, b, e
	}
	out := make([]string, 0, n)
	for i := range n {
		var s string
		if s, rest, e = readName(rest); e != nil {
			return nil, b, e.in("element %d", i)
		}
		out = append(out, s)
	}
	return out, rest, nil
}
