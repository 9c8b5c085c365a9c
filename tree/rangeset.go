package tree

import (
	"fmt"
	"slices"
	"strings"
)

// Range is the half-open tick interval [Start, End).
type Range struct{ Start, End uint64 }

// RangeSet is a set of ticks kept as sorted, disjoint, non-adjacent
// half-open ranges. The zero value is the empty set. Methods with a pointer
// receiver modify the set in place.
type RangeSet struct{ r []Range }

// RangeSetOf builds a set from ranges in any order (overlaps are merged).
func RangeSetOf(rs ...Range) RangeSet {
	var s RangeSet
	for _, r := range rs {
		s.AddRange(r.Start, r.End)
	}
	return s
}

// Ranges returns the ranges in ascending order (shared; do not modify).
func (s RangeSet) Ranges() []Range { return s.r }

// IsEmpty reports whether the set holds no tick.
func (s RangeSet) IsEmpty() bool { return len(s.r) == 0 }

// Len returns the number of ticks in the set.
func (s RangeSet) Len() uint64 {
	var n uint64
	for _, r := range s.r {
		n += r.End - r.Start
	}
	return n
}

// Clone returns an independent copy.
func (s RangeSet) Clone() RangeSet { return RangeSet{r: slices.Clone(s.r)} }

// Equal reports whether both sets hold the same ticks.
func (s RangeSet) Equal(o RangeSet) bool { return slices.Equal(s.r, o.r) }

// search returns the index of the first range whose End > t.
func (s RangeSet) search(t uint64) int {
	lo, hi := 0, len(s.r)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.r[m].End <= t {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Contains reports whether t is in the set.
func (s RangeSet) Contains(t uint64) bool {
	i := s.search(t)
	return i < len(s.r) && s.r[i].Start <= t
}

// Add adds one tick.
func (s *RangeSet) Add(t uint64) {
	if t == ^uint64(0) {
		return // not representable half-open; ticks never get there
	}
	// Fast path: appending at the end, the common case for ticks.
	if n := len(s.r); n > 0 && s.r[n-1].End == t {
		s.r[n-1].End++
		return
	}
	s.AddRange(t, t+1)
}

// AddRange adds every tick in [start, end).
func (s *RangeSet) AddRange(start, end uint64) {
	if start >= end {
		return
	}
	// first range that ends at or after start (touching ranges merge)
	i := s.search(start)
	if i > 0 && s.r[i-1].End == start {
		i--
	}
	j := i
	for j < len(s.r) && s.r[j].Start <= end {
		start = min(start, s.r[j].Start)
		end = max(end, s.r[j].End)
		j++
	}
	s.r = slices.Replace(s.r, i, j, Range{start, end})
}

// Remove removes one tick.
func (s *RangeSet) Remove(t uint64) {
	if t == ^uint64(0) {
		return
	}
	s.RemoveRange(t, t+1)
}

// RemoveRange removes every tick in [start, end).
func (s *RangeSet) RemoveRange(start, end uint64) {
	if start >= end {
		return
	}
	i := s.search(start)
	j := i
	var keep []Range
	for j < len(s.r) && s.r[j].Start < end {
		r := s.r[j]
		if r.Start < start {
			keep = append(keep, Range{r.Start, start})
		}
		if r.End > end {
			keep = append(keep, Range{end, r.End})
		}
		j++
	}
	if i == j {
		return
	}
	s.r = slices.Replace(s.r, i, j, keep...)
}

// AddSet adds every tick of o.
func (s *RangeSet) AddSet(o RangeSet) {
	for _, r := range o.r {
		s.AddRange(r.Start, r.End)
	}
}

// RemoveSet removes every tick of o.
func (s *RangeSet) RemoveSet(o RangeSet) {
	for _, r := range o.r {
		s.RemoveRange(r.Start, r.End)
	}
}

// Union returns s ∪ o.
func (s RangeSet) Union(o RangeSet) RangeSet {
	u := s.Clone()
	u.AddSet(o)
	return u
}

// Minus returns s \ o.
func (s RangeSet) Minus(o RangeSet) RangeSet {
	d := s.Clone()
	d.RemoveSet(o)
	return d
}

// Intersect returns s ∩ o.
func (s RangeSet) Intersect(o RangeSet) RangeSet {
	var out RangeSet
	i, j := 0, 0
	for i < len(s.r) && j < len(o.r) {
		a, b := s.r[i], o.r[j]
		lo, hi := max(a.Start, b.Start), min(a.End, b.End)
		if lo < hi {
			out.r = append(out.r, Range{lo, hi})
		}
		if a.End < b.End {
			i++
		} else {
			j++
		}
	}
	return out
}

// Through returns the largest k such that every tick in [1, k] is in the
// set (0 if tick 1 is missing).
func (s RangeSet) Through() uint64 {
	if len(s.r) == 0 || s.r[0].Start > 1 {
		return 0
	}
	return s.r[0].End - 1
}

// ThroughWith returns the largest k such that every tick in [1, k] is in s
// or in o: the Through of their union, without building it.
func (s RangeSet) ThroughWith(o RangeSet) uint64 {
	var t uint64 // [1, t] covered so far
	for {
		next := t
		for _, x := range [2]RangeSet{s, o} {
			if i := x.search(t + 1); i < len(x.r) && x.r[i].Start <= t+1 {
				next = max(next, x.r[i].End-1)
			}
		}
		if next == t {
			return t
		}
		t = next
	}
}

// Max returns the largest tick in the set, or 0 if it is empty.
func (s RangeSet) Max() uint64 {
	if len(s.r) == 0 {
		return 0
	}
	return s.r[len(s.r)-1].End - 1
}

// All calls yield for every tick in ascending order until it returns false.
func (s RangeSet) All(yield func(uint64) bool) {
	for _, r := range s.r {
		for t := r.Start; t < r.End; t++ {
			if !yield(t) {
				return
			}
		}
	}
}

// String prints the set in MoaT-KV's notation: single ticks as numbers,
// longer runs as [start,end) pairs, e.g. "[2 [4 7]]".
func (s RangeSet) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range s.r {
		if i > 0 {
			b.WriteByte(' ')
		}
		if r.End == r.Start+1 {
			fmt.Fprintf(&b, "%d", r.Start)
		} else {
			fmt.Fprintf(&b, "[%d %d]", r.Start, r.End)
		}
	}
	b.WriteByte(']')
	return b.String()
}
