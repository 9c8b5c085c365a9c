package kvproto

import (
	"context"
	"slices"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// State is what get_state reports of a node: per known node its highest
// tick and its tick sets.
type State struct {
	Node    string
	Tock    uint64
	Ticks   map[string]uint64
	Known   map[string]tree.RangeSet // seen and superseded ("known"/"superseded")
	Present map[string]tree.RangeSet // on some current chain
	Deleted map[string]tree.RangeSet // on tombstones
	Missing map[string]tree.RangeSet // known to exist, not seen here
	Skipped map[string]tree.RangeSet // declared skipped by their nodes (edgekv)
}

// Stater is implemented by a Tree that can report its state.
type Stater interface {
	State(ctx context.Context) (State, error)
}

// getState serves get_state: {node, tock, nodes?, known?, present?,
// deleted?, missing?, skipped?, seq} with the keys the request's flags ask
// for (MoaT-KV: nodes, known/superseded, present, deleted, missing;
// edgekv adds skipped: ticks a node declared it never made; a request that
// does not ask for skipped gets them in known, where MoaT-KV looks); empty
// sets are left out.
func (s *Server) getState(ctx context.Context, req Request) ([]byte, error) {
	st, ok := s.Tree.(Stater)
	if !ok {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: "get_state is not supported by this server"}
	}
	state, err := st.State(ctx)
	if err != nil {
		return nil, err
	}
	flag := func(k string) bool { return boolKey(req.Raw, k) }
	type part struct {
		key string
		rs  map[string]tree.RangeSet
	}
	var parts []part
	if flag("known") || flag("superseded") {
		known := state.Known
		if !flag("skipped") {
			// A MoaT-KV client (a server's fetch_data) has no notion of
			// skipped ticks: without them in "known" it would take them
			// for missing and ask for them forever.
			known = make(map[string]tree.RangeSet, len(state.Known)+len(state.Skipped))
			for name, rs := range state.Known {
				known[name] = rs
			}
			for name, rs := range state.Skipped {
				known[name] = known[name].Union(rs)
			}
		}
		parts = append(parts, part{"known", known})
	}
	if flag("present") {
		parts = append(parts, part{"present", state.Present})
	}
	if flag("deleted") {
		parts = append(parts, part{"deleted", state.Deleted})
	}
	if flag("missing") {
		parts = append(parts, part{"missing", state.Missing})
	}
	if flag("skipped") {
		parts = append(parts, part{"skipped", state.Skipped})
	}
	withNodes := flag("nodes")
	n := uint32(3 + len(parts))
	if withNodes {
		n++
	}
	b := msgp.AppendMapHeader(nil, n)
	b = msgp.AppendString(appendKey(b, "node"), state.Node)
	b = msgp.AppendUint64(appendKey(b, "tock"), state.Tock)
	if withNodes {
		b = appendKey(b, "nodes")
		names := sortedNames(state.Ticks)
		b = msgp.AppendMapHeader(b, uint32(len(names)))
		for _, name := range names {
			b = msgp.AppendUint64(msgp.AppendString(b, name), state.Ticks[name])
		}
	}
	for _, p := range parts {
		b = appendKey(b, p.key)
		var names []string
		for name, rs := range p.rs {
			if !rs.IsEmpty() {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		b = msgp.AppendMapHeader(b, uint32(len(names)))
		for _, name := range names {
			b = wire.AppendRangeSet(msgp.AppendString(b, name), p.rs[name])
		}
	}
	b = appendKey(b, "seq")
	return msgp.AppendUint64(b, req.Seq), nil
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
