package wire

import (
	"strconv"

	"github.com/tinylib/msgp/msgp"
)

// Defaults for NewReassembler.
const (
	DefaultChunkSeries = 16      // pending chunk series
	DefaultChunkBytes  = 1 << 20 // bytes per series
)

// chunkOverhead is what each stored chunk costs against the byte bound on
// top of its data, so that a flood of empty chunks is bounded too.
const chunkOverhead = 64

// IsChunk reports whether b is one chunk of a MoaT-KV 0.70 chunk series: a
// map whose "_p0" key holds [node, seq, i, bytes].
func IsChunk(b []byte) bool {
	v, found, e := findP0(b)
	return e == nil && found && Describe(v) == "array"
}

// Reassembler collects MoaT-KV 0.70's legacy chunk series,
// {"_p0": [node, seq, i, bytes]} with i = 1, 2, … and the last i negated,
// and returns the concatenated message when a series is complete. It also
// reverses MoaT-KV's key-shift escape: a message whose "_p0" is "" had its
// own keys _p0…_pj-1 moved to _p1…_pj, and gets them back.
//
// It is bounded: at most maxSeries series are pending (a new series then
// drops the oldest, which Dropped counts), and a series may hold at most
// maxBytes (data plus a small per-chunk overhead; more drops it with an
// error). Pending series never expire by time: this package has no clock.
// A chunk index that a pending series already holds (the sender restarted
// its sequence numbers) starts that series afresh.
//
// A Reassembler is not safe for concurrent use.
type Reassembler struct {
	maxSeries int
	maxBytes  int
	series    map[chunkKey]*chunkSeries
	order     []chunkKey // pending series, oldest first
	dropped   int
}

type chunkKey struct {
	node string
	seq  int64
}

type chunkSeries struct {
	parts [][]byte // parts[i-1] holds chunk i; nil = not seen yet
	last  int      // number of chunks once the last one is seen, else 0
	have  int
	size  int
}

// NewReassembler returns a Reassembler with the given bounds; a bound ≤ 0
// takes its default (DefaultChunkSeries, DefaultChunkBytes).
func NewReassembler(maxSeries, maxBytes int) *Reassembler {
	if maxSeries <= 0 {
		maxSeries = DefaultChunkSeries
	}
	if maxBytes <= 0 {
		maxBytes = DefaultChunkBytes
	}
	return &Reassembler{maxSeries: maxSeries, maxBytes: maxBytes, series: make(map[chunkKey]*chunkSeries)}
}

// Dropped returns how many series were dropped unfinished: evicted by a
// newer one, restarted, over the byte bound, or inconsistent.
func (r *Reassembler) Dropped() int { return r.dropped }

// Pending returns the number of unfinished series.
func (r *Reassembler) Pending() int { return len(r.series) }

// Add takes one received message. For a chunk it returns done = false
// until its series is complete, and then the whole message (a new slice).
// A message that is not a chunk is returned as is (aliasing b) with
// done = true, or un-escaped (a new slice) if its "_p0" is "". b is not
// retained. An error leaves other series untouched.
func (r *Reassembler) Add(b []byte) (whole []byte, done bool, err error) {
	v, found, e := findP0(b)
	if e != nil {
		return nil, false, e.finish("chunk", len(b))
	}
	if !found {
		return b, true, nil
	}
	if s, _, e := readStr(v); e == nil {
		if len(s) != 0 {
			return nil, false, fail(v, "want chunk [node, seq, i, bytes] or \"\", got a non-empty str").inKey("_p0").finish("chunk", len(b))
		}
		out, e := unescapeP(b)
		if e != nil {
			return nil, false, e.finish("chunk", len(b))
		}
		return out, true, nil
	}
	whole, done, e = r.add(v)
	if e != nil {
		return nil, false, e.inKey("_p0").finish("chunk", len(b))
	}
	return whole, done, nil
}

func (r *Reassembler) add(v []byte) ([]byte, bool, *Error) {
	n, rest, e := readArrayHeader(v)
	if e != nil {
		return nil, false, e
	}
	if n != 4 {
		return nil, false, fail(v, "want [node, seq, i, bytes], got array of %d", n)
	}
	var k chunkKey
	if k.node, rest, e = readName(rest); e != nil {
		return nil, false, e.in("node")
	}
	at := rest
	seq, _, big, rest, e := readInt(rest)
	if e == nil && big {
		e = fail(at, "sequence number out of range")
	}
	if e != nil {
		return nil, false, e.in("seq")
	}
	k.seq = seq
	at = rest
	i, _, big, rest, e := readInt(rest)
	if e == nil && (big || i == 0) {
		e = fail(at, "chunk index must be a non-zero integer of int64 range")
	}
	if e != nil {
		return nil, false, e.in("i")
	}
	data, _, e := readBin(rest)
	if e != nil {
		return nil, false, e.in("bytes")
	}
	idx, isLast := i, i < 0
	if isLast {
		idx = -i
	}
	maxParts := int64(r.maxBytes / chunkOverhead)
	if idx > maxParts {
		return nil, false, fail(at, "chunk index %d above the bound of %d chunks per series", idx, maxParts).in("i")
	}

	s := r.series[k]
	if s != nil && int(idx) <= len(s.parts) && s.parts[idx-1] != nil {
		r.forget(k) // the sender started this sequence number again
		r.dropped++
		s = nil
	}
	if s == nil {
		if len(r.series) >= r.maxSeries {
			r.forget(r.order[0])
			r.dropped++
		}
		s = &chunkSeries{}
		r.series[k] = s
		r.order = append(r.order, k)
	}
	if isLast && (s.last != 0 || int(idx) < len(s.parts)) || !isLast && s.last != 0 && int(idx) >= s.last {
		r.forget(k)
		r.dropped++
		return nil, false, fail(at, "chunk %d does not fit series %s/%d", i, k.node, k.seq).in("i")
	}
	s.size += len(data) + chunkOverhead
	if s.size > r.maxBytes {
		r.forget(k)
		r.dropped++
		return nil, false, fail(v, "chunk series %s/%d exceeds %d bytes", k.node, k.seq, r.maxBytes)
	}
	for len(s.parts) < int(idx) {
		s.parts = append(s.parts, nil)
	}
	s.parts[idx-1] = append(make([]byte, 0, len(data)+1), data...) // never nil
	s.have++
	if isLast {
		s.last = int(idx)
	}
	if s.last == 0 || s.have < s.last {
		return nil, false, nil
	}
	total := 0
	for _, p := range s.parts {
		total += len(p)
	}
	whole := make([]byte, 0, total)
	for _, p := range s.parts {
		whole = append(whole, p...)
	}
	r.forget(k)
	// MoaT-KV escaped the message before cutting it; undo that.
	if _, found, e := findP0(whole); e == nil && found {
		out, e := unescapeP(whole)
		if e != nil {
			return nil, false, e.in("reassembled message")
		}
		return out, true, nil
	}
	return whole, true, nil
}

func (r *Reassembler) forget(k chunkKey) {
	delete(r.series, k)
	for i, o := range r.order {
		if o == k {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
}

// findP0 scans the top-level map b for the key "_p0" and returns its value
// (aliasing b).
func findP0(b []byte) ([]byte, bool, *Error) {
	n, rest, e := readMapHeader(b)
	if e != nil {
		return nil, false, e
	}
	for range n {
		k, ok, r, e := readKey(rest)
		if e != nil {
			return nil, false, e
		}
		if ok && string(k) == "_p0" {
			return r, true, nil
		}
		if rest, e = skipValue(r, 0); e != nil {
			return nil, false, e
		}
	}
	return nil, false, nil
}

// pIndex returns k for a key "_p<k>" (decimal, no leading zeros), or -1.
func pIndex(key []byte) int {
	if len(key) < 3 || key[0] != '_' || key[1] != 'p' || len(key) > 9 {
		return -1
	}
	d := key[2:]
	if len(d) > 1 && d[0] == '0' {
		return -1
	}
	k := 0
	for _, c := range d {
		if c < '0' || c > '9' {
			return -1
		}
		k = k*10 + int(c-'0')
	}
	return k
}

// unescapeP reverses MoaT-KV's key shift on the map b: it drops "_p0" and
// renames _p1…_pj (the longest run present) to _p0…_pj-1, keeping the order
// of the entries.
func unescapeP(b []byte) ([]byte, *Error) {
	n, body, e := readMapHeader(b)
	if e != nil {
		return nil, e
	}
	present := make(map[int]bool)
	zeros := 0
	rest := body
	for range n {
		k, ok, r, e := readKey(rest)
		if e != nil {
			return nil, e
		}
		if ok {
			if i := pIndex(k); i >= 0 {
				present[i] = true
				if i == 0 {
					zeros++
				}
			}
		}
		if rest, e = skipValue(r, 0); e != nil {
			return nil, e
		}
	}
	j := 0
	for present[j+1] {
		j++
	}
	out := msgp.AppendMapHeader(make([]byte, 0, len(b)), uint32(n-zeros))
	rest = body
	for range n {
		start := rest
		k, ok, r, _ := readKey(rest)
		end, _ := skipValue(r, 0)
		rest = end
		i := -1
		if ok {
			i = pIndex(k)
		}
		switch {
		case i == 0:
			continue
		case i >= 1 && i <= j:
			out = msgp.AppendString(out, "_p"+strconv.Itoa(i-1))
			out = append(out, r[:len(r)-len(end)]...)
		default:
			out = append(out, start[:len(start)-len(end)]...)
		}
	}
	return out, nil
}
