package wire

import (
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// DKVWriter writes MoaT-KV save-file records: a state record (AppendState)
// then entry records with paths shortened against the previous record's:
// {value?, chain, tock, path, depth}, the path an ext-3 path when depth is
// 0 and a plain array of the remaining elements otherwise. It is not safe
// for concurrent use.
type DKVWriter struct{ prev tree.Path }

// AppendEntry appends ev as an entry record (no value key for a tombstone).
func (w *DKVWriter) AppendEntry(b []byte, ev tree.Event) []byte {
	depth := 0
	for depth < len(w.prev) && depth < len(ev.Path) && w.prev[depth] == ev.Path[depth] {
		depth++
	}
	if depth == len(ev.Path) && depth > 0 {
		depth-- // never an empty suffix for a new entry: MoaT writes the last element
	}
	n := uint32(4)
	if ev.Value != nil {
		n++
	}
	b = msgp.AppendMapHeader(b, n)
	if ev.Value != nil {
		b = append(msgp.AppendString(b, "value"), ev.Value...)
	}
	b = AppendChain(msgp.AppendString(b, "chain"), ev.Chain, MaxChainLinks)
	b = msgp.AppendUint64(msgp.AppendString(b, "tock"), ev.Tock)
	b = msgp.AppendString(b, "path")
	if depth == 0 {
		b = tree.AppendPath(b, ev.Path)
	} else {
		b = tree.AppendPathArray(b, ev.Path[depth:])
	}
	b = msgp.AppendUint64(msgp.AppendString(b, "depth"), uint64(depth))
	w.prev = ev.Path.Clone()
	return b
}
