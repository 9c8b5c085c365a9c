package wire

import (
	"cmp"
	"math"
	"slices"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// AppendRangeSet appends s as MoaT-KV encodes a range set: a list whose
// elements are an integer for a single tick or a [start, end) pair (end
// exclusive) for a longer run, in ascending order. {2,4,5,6} is [2,[4,7]].
func AppendRangeSet(b []byte, s tree.RangeSet) []byte {
	rs := s.Ranges()
	b = msgp.AppendArrayHeader(b, uint32(len(rs)))
	for _, r := range rs {
		if r.End == r.Start+1 {
			b = msgp.AppendUint64(b, r.Start)
			continue
		}
		b = append(b, 0x92)
		b = msgp.AppendUint64(b, r.Start)
		b = msgp.AppendUint64(b, r.End)
	}
	return b
}

// ReadRangeSet decodes a range set at the start of b and returns the rest.
// It accepts elements in any order and overlapping ones, and rejects a pair
// with start ≥ end, negative ticks and anything but integers and pairs.
func ReadRangeSet(b []byte) (tree.RangeSet, []byte, error) {
	s, rest, e := readRangeSet(b)
	if e != nil {
		return tree.RangeSet{}, b, e.finish("range set", len(b))
	}
	return s, rest, nil
}

func readRangeSet(b []byte) (tree.RangeSet, []byte, *Error) {
	n, rest, e := readArrayHeader(b)
	if e != nil {
		return tree.RangeSet{}, b, e
	}
	if n == 0 {
		return tree.RangeSet{}, rest, nil
	}
	rs := make([]tree.Range, 0, n)
	sorted := true
	for i := range n {
		at := rest
		var r tree.Range
		switch Describe(rest) {
		case "int":
			var t uint64
			if t, rest, e = readUint(rest); e != nil {
				return tree.RangeSet{}, b, e.in("element %d", i)
			}
			if t == math.MaxUint64 {
				return tree.RangeSet{}, b, fail(at, "tick %d out of range", t).in("element %d", i)
			}
			r = tree.Range{Start: t, End: t + 1}
		case "array":
			var m int
			if m, rest, e = readArrayHeader(rest); e != nil {
				return tree.RangeSet{}, b, e.in("element %d", i)
			}
			if m != 2 {
				return tree.RangeSet{}, b, fail(at, "want [start, end) pair, got array of %d", m).in("element %d", i)
			}
			if r.Start, rest, e = readUint(rest); e != nil {
				return tree.RangeSet{}, b, e.in("start").in("element %d", i)
			}
			if r.End, rest, e = readUint(rest); e != nil {
				return tree.RangeSet{}, b, e.in("end").in("element %d", i)
			}
			if r.Start >= r.End {
				return tree.RangeSet{}, b, fail(at, "empty range [%d, %d): start must be below end", r.Start, r.End).in("element %d", i)
			}
		default:
			return tree.RangeSet{}, b, fail(at, "want integer or [start, end) pair, got %s", Describe(at)).in("element %d", i)
		}
		if len(rs) > 0 && rs[len(rs)-1].Start > r.Start {
			sorted = false
		}
		rs = append(rs, r)
	}
	if !sorted {
		slices.SortFunc(rs, func(x, y tree.Range) int { return cmp.Compare(x.Start, y.Start) })
	}
	return tree.RangeSetOf(rs...), rest, nil
}
