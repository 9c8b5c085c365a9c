package tree

import (
	"math/rand/v2"
	"testing"
)

func TestRangeSetOps(t *testing.T) {
	tests := []struct {
		name string
		ops  func(*RangeSet)
		want string
		len  uint64
	}{
		{"empty", func(*RangeSet) {}, "[]", 0},
		{"append run", func(s *RangeSet) { s.Add(1); s.Add(2); s.Add(3) }, "[[1 4]]", 3},
		{"gap", func(s *RangeSet) { s.Add(2); s.AddRange(4, 7) }, "[2 [4 7]]", 4},
		{"fill gap merges", func(s *RangeSet) { s.Add(2); s.AddRange(4, 7); s.Add(3) }, "[[2 7]]", 5},
		{"overlap", func(s *RangeSet) { s.AddRange(1, 5); s.AddRange(3, 9) }, "[[1 9]]", 8},
		{"remove middle", func(s *RangeSet) { s.AddRange(1, 10); s.Remove(5) }, "[[1 5] [6 10]]", 8},
		{"remove range across", func(s *RangeSet) { s.AddRange(1, 4); s.AddRange(6, 9); s.RemoveRange(2, 7) }, "[1 [7 9]]", 3},
		{"remove absent", func(s *RangeSet) { s.AddRange(1, 4); s.Remove(9) }, "[[1 4]]", 3},
		{"out of order adds", func(s *RangeSet) { s.Add(9); s.Add(1); s.Add(5); s.Add(2) }, "[[1 3] 5 9]", 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s RangeSet
			tc.ops(&s)
			if got := s.String(); got != tc.want {
				t.Errorf("set = %s, want %s", got, tc.want)
			}
			if s.Len() != tc.len {
				t.Errorf("Len = %d, want %d", s.Len(), tc.len)
			}
		})
	}
}

// TestRangeSetModel checks every operation against a map model.
func TestRangeSetModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var a, b RangeSet
		ma, mb := map[uint64]bool{}, map[uint64]bool{}
		for i := 0; i < 40; i++ {
			s, n := rng.Uint64N(60)+1, rng.Uint64N(5)+1
			switch rng.IntN(4) {
			case 0:
				a.AddRange(s, s+n)
				for x := s; x < s+n; x++ {
					ma[x] = true
				}
			case 1:
				a.RemoveRange(s, s+n)
				for x := s; x < s+n; x++ {
					delete(ma, x)
				}
			case 2:
				b.AddRange(s, s+n)
				for x := s; x < s+n; x++ {
					mb[x] = true
				}
			case 3:
				b.Remove(s)
				delete(mb, s)
			}
		}
		u, d, in := a.Union(b), a.Minus(b), a.Intersect(b)
		through := uint64(0)
		for ma[through+1] {
			through++
		}
		if a.Through() != through {
			t.Fatalf("round %d: Through = %d, want %d (%s)", round, a.Through(), through, a)
		}
		for x := uint64(0); x < 70; x++ {
			if a.Contains(x) != ma[x] {
				t.Fatalf("round %d: Contains(%d) = %v (%s)", round, x, a.Contains(x), a)
			}
			if u.Contains(x) != (ma[x] || mb[x]) || d.Contains(x) != (ma[x] && !mb[x]) || in.Contains(x) != (ma[x] && mb[x]) {
				t.Fatalf("round %d: set algebra wrong at %d: a=%s b=%s", round, x, a, b)
			}
		}
		for i := 1; i < len(a.r); i++ {
			if a.r[i-1].End >= a.r[i].Start {
				t.Fatalf("round %d: ranges not disjoint/non-adjacent: %s", round, a)
			}
		}
	}
}

func TestThroughWith(t *testing.T) {
	rs := func(rr ...Range) RangeSet { return RangeSetOf(rr...) }
	tests := []struct {
		a, b RangeSet
		want uint64
	}{
		{rs(), rs(), 0},
		{rs(Range{1, 5}), rs(), 4},
		{rs(), rs(Range{1, 5}), 4},
		{rs(Range{1, 3}, Range{7, 9}), rs(Range{3, 7}), 8},
		{rs(Range{1, 3}, Range{8, 9}), rs(Range{3, 7}), 6},
		{rs(Range{2, 3}), rs(Range{3, 7}), 0},
		{rs(Range{1, 2}, Range{4, 6}, Range{9, 12}), rs(Range{2, 4}, Range{6, 9}, Range{12, 13}), 12},
	}
	for _, tt := range tests {
		if got, want := tt.a.ThroughWith(tt.b), tt.a.Union(tt.b).Through(); got != tt.want || want != tt.want {
			t.Errorf("%s with %s: ThroughWith %d, Union.Through %d, want %d", tt.a, tt.b, got, want, tt.want)
		}
	}
}
