package tree

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestKidSet: random adds and removes of every kind of element, checked
// against a map after each step (lookups of present and absent names,
// the count, and one visit per child).
func TestKidSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	elem := func() Elem {
		switch rng.IntN(5) {
		case 0:
			return Str(string(rune('a' + rng.IntN(40))))
		case 1:
			return Bytes([]byte{byte(rng.IntN(40))})
		case 2:
			return Float([]float64{0, math.Copysign(0, -1), 1.5, -2}[rng.IntN(4)])
		case 3:
			return Bool(rng.IntN(2) == 1)
		default:
			return Int(int64(rng.IntN(400)) - 200)
		}
	}
	var k *kidSet
	want := map[Elem]*Entry{}
	maxLen, minAfter := 0, 1<<30
	defer func() {
		if maxLen < 300 || minAfter > 20 {
			t.Errorf("the set held up to %d children, and down to %d later: resizes not covered", maxLen, minAfter)
		}
	}()
	for step := range 20000 {
		if step <= 10000 {
			maxLen = max(maxLen, len(want))
		} else if step > 12000 {
			minAfter = min(minAfter, len(want))
		}
		el := elem()
		// Mostly adds to hundreds of children, then mostly removes
		// down to a few: both resizes.
		if rng.IntN(8) == 0 || (step > 10000 && rng.IntN(6) < 5) {
			for x := range want {
				if step > 10000 && rng.IntN(2) == 0 {
					k.remove(x)
					delete(want, x)
				}
				break
			}
			k.remove(el)
			delete(want, el)
		} else if want[el] == nil {
			if k == nil {
				k = &kidSet{seed: 42}
			}
			c := &Entry{name: el}
			k.add(c)
			want[el] = c
		}
		if k.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, k.len(), len(want))
		}
		if got := k.get(el); got != want[el] {
			t.Fatalf("step %d: get(%v) = %v, want %v", step, el, got, want[el])
		}
		if step%500 == 0 {
			seen := 0
			k.each(func(c *Entry) {
				if want[c.name] != c {
					t.Fatalf("step %d: visits %v, not in the set", step, c.name)
				}
				seen++
			})
			for el, c := range want {
				if k.get(el) != c {
					t.Fatalf("step %d: lost %v", step, el)
				}
			}
			if seen != len(want) {
				t.Fatalf("step %d: %d visited, want %d", step, seen, len(want))
			}
			if k != nil && len(k.slots) > 8 && k.n*8 < len(k.slots) {
				t.Fatalf("step %d: %d children in %d slots: not shrunk", step, k.n, len(k.slots))
			}
		}
	}
}

// TestTickIndex: random sets and removes of entries whose chains hold one
// node's ticks, checked against a map (lookups, the count, the visit).
func TestTickIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := tickIndex{node: "a", seed: 7}
	want := map[uint64]*Entry{}
	for step := range 30000 {
		tick := uint64(rng.IntN(2000)) + 1
		if rng.IntN(3) == 0 || (step > 15000 && rng.IntN(4) < 3) {
			e := want[tick]
			if e == nil {
				e = &Entry{chain: Chain{{Node: "a", Tick: tick}}} // not the indexed one: ignored
			}
			x.remove(tick, e)
			delete(want, tick)
		} else {
			e := &Entry{chain: Chain{{Node: "b", Tick: 9}, {Node: "a", Tick: tick}}}
			x.set(tick, e) // in place of the one that held tick, if any
			want[tick] = e
		}
		if x.n != len(want) {
			t.Fatalf("step %d: %d ticks, want %d", step, x.n, len(want))
		}
		if got := x.get(tick); got != want[tick] {
			t.Fatalf("step %d: get(%d) = %p, want %p", step, tick, got, want[tick])
		}
		if step%1000 == 0 {
			seen := 0
			x.each(func(tk uint64, e *Entry) {
				if want[tk] != e {
					t.Fatalf("step %d: visits tick %d, not in the index", step, tk)
				}
				seen++
			})
			if seen != len(want) {
				t.Fatalf("step %d: visited %d, want %d", step, seen, len(want))
			}
		}
	}
	// An entry that does not hold the tick is not removed in its place.
	e := &Entry{chain: Chain{{Node: "a", Tick: 5}}}
	x.set(5, e)
	x.remove(5, &Entry{chain: Chain{{Node: "a", Tick: 5}}})
	if x.get(5) != e {
		t.Fatal("remove of tick 5 by an entry that does not hold it removed the one that does")
	}
}
