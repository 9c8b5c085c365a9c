package tree

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIterMatchesWalk: walked a few entries at a time, Iter visits what
// Walk visits, in the same order, for any chunk size.
func TestIterMatchesWalk(t *testing.T) {
	tr := New(Config{Self: "a"})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		p := Path{Str(string(rune('a' + rng.IntN(5))))}
		for range rng.IntN(4) {
			p = append(p, Int(int64(rng.IntN(20))))
		}
		if _, _, err := tr.Set(p, []byte{0x01}, Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, root := range []Path{nil, {Str("c")}, {Str("zz")}} {
		var want []string
		tr.Walk(root, func(e *Entry) bool { want = append(want, e.Path().String()); return true })
		for _, n := range []int{1, 2, 7, 512, 1 << 20} {
			var got []string
			it := tr.Iter(root)
			for turns := 0; ; turns++ {
				more := it.Next(n, func(e *Entry) { got = append(got, e.Path().String()) })
				if !more {
					break
				}
				if turns > len(want)+1 {
					t.Fatalf("root %v n %d: the walk does not end", root, n)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("root %v n %d: %d entries, want %d (first difference matters)", root, n, len(got), len(want))
			}
		}
	}
}

// TestIterDepth: IterDepth visits what Walk visits down to the depth
// asked for, in the same order, and nothing deeper.
func TestIterDepth(t *testing.T) {
	tr := New(Config{Self: "a"})
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		p := Path{Str(string(rune('a' + rng.IntN(3))))}
		for range rng.IntN(5) {
			p = append(p, Int(int64(rng.IntN(6))))
		}
		if _, _, err := tr.Set(p, []byte{0x01}, Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, root := range []Path{nil, {Str("b")}, {Str("b"), Int(2)}} {
		for depth := range 5 {
			var want []string
			tr.Walk(root, func(e *Entry) bool {
				if len(e.Path())-len(root) <= depth {
					want = append(want, e.Path().String())
				}
				return true
			})
			for _, n := range []int{1, 3, 1 << 20} {
				var got []string
				it := tr.IterDepth(root, depth)
				for it.Next(n, func(e *Entry) { got = append(got, e.Path().String()) }) {
				}
				if !slices.Equal(got, want) {
					t.Fatalf("root %v depth %d n %d: got %d entries, want %d", root, depth, n, len(got), len(want))
				}
			}
		}
	}
}

// TestIterByTock: IterByTock visits what Walk visits, each once, parents
// before their children, and the children of a level in tock order.
func TestIterByTock(t *testing.T) {
	tr := New(Config{Self: "a"})
	rng := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		p := Path{Str(string(rune('a' + rng.IntN(4))))}
		for range rng.IntN(4) {
			p = append(p, Int(int64(rng.IntN(90))))
		}
		if _, _, err := tr.Set(p, []byte{0x01}, Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	tr.Walk(nil, func(e *Entry) bool { want = append(want, e.Path().String()); return true })
	slices.Sort(want)
	for _, n := range []int{1, 5, 1 << 20} {
		seen := map[string]bool{}
		lastTock := map[string]uint64{} // by parent: the tock of its last child visited
		var got []string
		it := tr.IterByTock(nil)
		for it.Next(n, func(e *Entry) {
			p := e.Path()
			if len(p) > 0 {
				parent := p[:len(p)-1].String()
				if !seen[parent] {
					t.Fatalf("n %d: %s before its parent", n, p)
				}
				if e.Tock() < lastTock[parent] {
					t.Fatalf("n %d: %s (tock %d) after a sibling of tock %d", n, p, e.Tock(), lastTock[parent])
				}
				lastTock[parent] = e.Tock()
			}
			seen[p.String()] = true
			got = append(got, p.String())
		}) {
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("n %d: %d entries visited, want %d", n, len(got), len(want))
		}
	}
}

// TestSortByTock: the radix sort agrees with a comparison sort.
func TestSortByTock(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 63, 64, 1000, 70000} {
		for _, spread := range []uint64{1, 1 << 10, 1 << 40, ^uint64(0)} {
			es := make([]*Entry, n)
			for i := range es {
				es[i] = &Entry{tock: 1<<33 + rng.Uint64N(spread)}
			}
			want := slices.Clone(es)
			slices.SortStableFunc(want, func(a, b *Entry) int { return cmp.Compare(a.tock, b.tock) })
			sortByTock(es)
			for i := range es {
				if es[i].tock != want[i].tock {
					t.Fatalf("n %d spread %d: position %d has tock %d, want %d", n, spread, i, es[i].tock, want[i].tock)
				}
			}
		}
	}
}

// TestIterUnderWrites: entries present throughout a walk are visited once
// each, whatever is written, deleted and purged between its turns.
func TestIterUnderWrites(t *testing.T) {
	tr := New(Config{Self: "a"})
	for i := range 1000 {
		if _, _, err := tr.Set(Path{Str("s"), Int(int64(i))}, []byte{0x01}, Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	it := tr.Iter(nil)
	seen := map[string]int{}
	for it.Next(10, func(e *Entry) {
		if e.HasValue() {
			seen[e.Path().String()]++
		}
	}) {
		// Churn only entries 500 and up, and new ones.
		i := 500 + rng.IntN(500)
		p := Path{Str("s"), Int(int64(i))}
		if e := tr.Get(p); e != nil && e.HasValue() && rng.IntN(2) == 0 {
			if _, err := tr.Delete(p, Cond{}); err != nil {
				t.Fatal(err)
			}
			tr.Purge(p, func(Link) bool { return true })
		} else if _, _, err := tr.Set(p, []byte{0x02}, Cond{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tr.Set(Path{Str("n"), Int(int64(rng.IntN(1000)))}, []byte{0x03}, Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 500 {
		if k := (Path{Str("s"), Int(int64(i))}).String(); seen[k] != 1 {
			t.Fatalf("%s visited %d times", k, seen[k])
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s visited %d times", k, n)
		}
	}
}
