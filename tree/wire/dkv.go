package wire

import (
	"fmt"
	"io"

	"github.com/edgekv/edgekv/tree"
)

// Record is one record of a MoaT-KV save file (.dkv).
type Record struct {
	Kind   string // RecordState, RecordEntry, RecordEvent or RecordInfo
	Offset int    // where the record starts in the stream
	Raw    []byte // the record's bytes (aliasing the stream)
	State  State  // RecordState
	// Event is the entry (RecordEntry) or the change (RecordEvent), with its
	// full path restored. Event.Value aliases the stream; nil is a
	// deletion event.
	Event tree.Event
	Info  Info // RecordInfo (the content of {info: {…}}, or a bare info map)
}

// DKVReader reads a MoaT-KV save file: a stream of concatenated msgpack
// maps with no header or framing. It classifies each record (see
// RecordKind) and un-shortens paths: a record's depth is the number of
// leading elements it shares with the previous record's full path, and its
// path is the rest — an ext-3 path when depth is 0, otherwise a plain array
// (possibly empty). Records without a path leave the previous path as it
// is.
//
// A DKVReader is not safe for concurrent use.
type DKVReader struct {
	b    []byte
	off  int
	n    int
	prev tree.Path
	err  error
}

// NewDKVReader returns a reader over the whole stream b, which it does not
// modify.
func NewDKVReader(b []byte) *DKVReader { return &DKVReader{b: b} }

// Next returns the next record, or io.EOF after the last one. A malformed
// record returns an *Error (with the offset in the stream) and so does every
// later call: the stream has no framing to resynchronise on.
func (r *DKVReader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	if r.off >= len(r.b) {
		return Record{}, io.EOF
	}
	b := r.b[r.off:]
	rec, e := r.next(b)
	if e != nil {
		e.finish(fmt.Sprintf("dkv: record %d", r.n), len(b))
		e.Offset += r.off
		r.err = e
		return Record{}, e
	}
	rec.Offset = r.off
	r.off += len(rec.Raw)
	r.n++
	return rec, nil
}

func (r *DKVReader) next(b []byte) (Record, *Error) {
	rest, e := skipValue(b, -1) // the record map itself does not count as value nesting
	if e != nil {
		return Record{}, e
	}
	raw := b[:len(b)-len(rest)]
	kind, e := recordKind(raw)
	if e != nil {
		return Record{}, e
	}
	rec := Record{Kind: kind, Raw: raw}
	switch kind {
	case RecordState:
		rec.State, _, e = readState(raw)
	case RecordInfo:
		rec.Info, e = readInfoRecord(raw)
	case RecordEntry, RecordEvent:
		var m evMap
		if _, e = m.read(raw); e != nil {
			break
		}
		if e = m.require(raw, hasPath|hasTock); e != nil {
			break
		}
		var p tree.Path
		if p, e = r.fullPath(&m, raw); e != nil {
			break
		}
		m.path = p
		if kind == RecordEntry {
			rec.Event, e = m.entry(raw)
		} else {
			var c tree.Chain
			if c, e = m.originatorChain(raw); e == nil {
				rec.Event = tree.Event{Path: m.path, Value: m.value, Chain: c, Tock: m.tock}
			}
		}
	}
	if e != nil {
		return Record{}, e.in("%s", kind)
	}
	return rec, nil
}

// fullPath restores the full path of m from the previous one and its depth.
func (r *DKVReader) fullPath(m *evMap, at []byte) (tree.Path, *Error) {
	p := m.path
	if m.depth > 0 {
		if m.depth > uint64(len(r.prev)) {
			return nil, fail(at, "depth %d but the previous path %s has only %d elements", m.depth, r.prev, len(r.prev)).inKey("depth")
		}
		d := int(m.depth)
		p = make(tree.Path, d+len(m.path))
		copy(p, r.prev[:d])
		copy(p[d:], m.path)
		if err := p.Check(); err != nil {
			return nil, failCause(at, err, "%v", err).inKey("path")
		}
	}
	r.prev = p
	return p, nil
}

// readInfoRecord reads {info: {…}} or a bare info map; node is optional.
func readInfoRecord(b []byte) (Info, *Error) {
	var in Info
	wrapped := false
	_, e := decodeFlatIn(b, []flatKey{
		{"info", false, func(v []byte) ([]byte, *Error) {
			wrapped = true
			var e *Error
			in, v, e = readInfo(v, false)
			return v, e
		}},
	})
	if e != nil || wrapped {
		return in, e
	}
	in, _, e = readInfo(b, false)
	return in, e
}
