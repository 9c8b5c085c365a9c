package tree

import (
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
