package wire

import (
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// State is a state record: a node's view of every node's tick and range
// sets, in MoaT-KV's state-record shape {nodes, known, deleted, node, tock}.
type State struct {
	Node  string // whose state it is
	Tock  uint64
	Epoch uint64 // edgekv's restart counter, key "epoch" (absent: 0); MoaT-KV ignores it
	// Ticks: node → highest tick ("nodes"; MoaT-KV's nil reads as 0).
	Ticks map[string]uint64
	// Known: node → superseded ticks ("known"; "superseded" is accepted).
	Known map[string]tree.RangeSet
	// Deleted: node → ticks of deleted entries ("deleted").
	Deleted map[string]tree.RangeSet
	// Skipped: node → ticks it declared skipped (edgekv's key "skipped",
	// absent when empty; MoaT-KV ignores it).
	Skipped map[string]tree.RangeSet
	// Purged: the node has purged tombstones (edgekv's key "purged",
	// absent when false).
	Purged bool
}

// AppendState appends st as {nodes, known, deleted, node, tock, epoch?,
// skipped?, purged?} in MoaT-KV's key order; nodes in ascending order,
// epoch only if not 0, skipped only if not empty, purged only if true.
func AppendState(b []byte, st State) []byte {
	n := byte(5)
	if st.Epoch != 0 {
		n++
	}
	if len(st.Skipped) > 0 {
		n++
	}
	if st.Purged {
		n++
	}
	b = append(b, 0x80|n)
	b = append(b, "\xa5nodes"...)
	b = appendTickMap(b, st.Ticks)
	b = append(b, "\xa5known"...)
	b = appendRangeSetMap(b, st.Known)
	b = append(b, "\xa7deleted"...)
	b = appendRangeSetMap(b, st.Deleted)
	b = append(b, kNode...)
	b = msgp.AppendString(b, st.Node)
	b = append(b, kTock...)
	b = msgp.AppendUint64(b, st.Tock)
	if st.Epoch != 0 {
		b = append(b, "\xa5epoch"...)
		b = msgp.AppendUint64(b, st.Epoch)
	}
	if len(st.Skipped) > 0 {
		b = append(b, "\xa7skipped"...)
		b = appendRangeSetMap(b, st.Skipped)
	}
	if st.Purged {
		b = append(b, "\xa6purged\xc3"...)
	}
	return b
}

// DecodeState decodes a state record; node and tock are required, the maps
// are optional. The input must hold exactly one record.
func DecodeState(b []byte) (State, error) {
	st, rest, e := readState(b)
	if e == nil {
		e = noTrailing(rest)
	}
	if e != nil {
		return State{}, e.finish("state", len(b))
	}
	return st, nil
}

func readState(b []byte) (State, []byte, *Error) {
	var st State
	var sup map[string]tree.RangeSet
	rest, e := decodeFlatIn(b, []flatKey{
		{"node", true, nameInto(&st.Node)},
		{"tock", true, uintInto(&st.Tock)},
		{"epoch", false, uintInto(&st.Epoch)},
		{"nodes", false, func(v []byte) (rest []byte, e *Error) {
			st.Ticks, rest, e = readTickMap(v, true)
			return rest, e
		}},
		{"known", false, rangeSetMapInto(&st.Known)},
		{"superseded", false, rangeSetMapInto(&sup)},
		{"deleted", false, rangeSetMapInto(&st.Deleted)},
		{"skipped", false, rangeSetMapInto(&st.Skipped)},
		{"purged", false, boolInto(&st.Purged)},
	})
	if e != nil {
		return State{}, b, e
	}
	st.Known = unionMaps(st.Known, sup)
	return st, rest, nil
}

// AppendEntry appends ev as a snapshot-entry record {value?, chain, tock,
// path}: MoaT-KV's serialized entry, with the whole chain (up to
// MaxChainLinks links). A tombstone (ev.Value nil) has no value key; an
// empty chain is written as nil.
func AppendEntry(b []byte, ev tree.Event) []byte {
	if ev.Value != nil {
		b = append(b, 0x84)
		b = append(b, kValue...)
		b = append(b, ev.Value...)
	} else {
		b = append(b, 0x83)
	}
	b = append(b, kChain...)
	b = AppendChain(b, ev.Chain, MaxChainLinks)
	b = append(b, kTock...)
	b = msgp.AppendUint64(b, ev.Tock)
	b = append(b, kPath...)
	return tree.AppendPath(b, ev.Path)
}

// DecodeEntry decodes a snapshot-entry record {value?, chain, tock, path}
// (other keys, such as a .dkv record's depth, are ignored; the path must be
// complete). ev.Value aliases b. The input must hold exactly one record.
func DecodeEntry(b []byte) (tree.Event, error) {
	var m evMap
	rest, e := m.read(b)
	if e == nil {
		e = noTrailing(rest)
	}
	var ev tree.Event
	if e == nil {
		ev, e = m.entry(b)
	}
	if e != nil {
		return tree.Event{}, e.finish("entry", len(b))
	}
	return ev, nil
}

// Record kinds, as RecordKind reports them.
const (
	RecordState = "state" // {nodes, known, deleted, node, tock}
	RecordEntry = "entry" // {value?, chain, tock, path}
	RecordEvent = "event" // {node, tick, prev, path, value?, tock}
	RecordInfo  = "info"  // {info: {…}}, or a bare info message
)

// RecordKind tells the kinds of store and .dkv records apart by their keys
// (not their order): a map with an "info" key is an info record; with
// "chain" an entry; with "path" (but no chain) an event, whether or not it
// has a value — a log deletion has none and must not be taken for a state
// record; with a "nodes" map a state record; with a ticks, missing, known,
// superseded or deleted map or a node_drop list a bare info message. Anything else, such
// as MoaT-KV's actor messages {t, node, …}, is an error.
func RecordKind(b []byte) (string, error) {
	k, e := recordKind(b)
	if e != nil {
		return "", e.finish("record", len(b))
	}
	return k, nil
}

func recordKind(b []byte) (string, *Error) {
	n, rest, e := readMapHeader(b)
	if e != nil {
		return "", e
	}
	const (
		fInfo = 1 << iota
		fChain
		fPath
		fNodes
		fInfoKeys
	)
	var f int
	for range n {
		k, ok, r, e := readKey(rest)
		if e != nil {
			return "", e
		}
		if ok {
			switch string(k) {
			case "info":
				f |= fInfo
			case "chain":
				f |= fChain
			case "path":
				f |= fPath
			case "nodes":
				if Describe(r) == "map" {
					f |= fNodes
				}
			case "ticks", "missing", "known", "superseded", "deleted":
				if Describe(r) == "map" {
					f |= fInfoKeys
				}
			case "node_drop":
				if Describe(r) == "array" {
					f |= fInfoKeys
				}
			}
		}
		if rest, e = skipValue(r, 0); e != nil {
			if ok {
				return "", e.inKey(string(k))
			}
			return "", e
		}
	}
	switch {
	case f&fInfo != 0:
		return RecordInfo, nil
	case f&fChain != 0:
		return RecordEntry, nil
	case f&fPath != 0:
		return RecordEvent, nil
	case f&fNodes != 0:
		return RecordState, nil
	case f&fInfoKeys != 0:
		return RecordInfo, nil
	}
	return "", fail(b, "unknown record: no info, chain, path, nodes or info keys")
}

func rangeSetMapInto(dst *map[string]tree.RangeSet) func([]byte) ([]byte, *Error) {
	return func(v []byte) (rest []byte, e *Error) {
		*dst, rest, e = readRangeSetMap(v)
		return rest, e
	}
}
