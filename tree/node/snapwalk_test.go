package node

import (
	"testing"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/store"
	"github.com/edgekv/edgekv/tree/wire"
)

// walkSnapshot runs a snapshot walk to its end as snapshotAsync does
// (sorting big levels between steps) with n entries per step, calling
// between after each step; it returns the entries' events in the order
// written.
func walkSnapshot(t *testing.T, e *Engine, n int, between func()) []tree.Event {
	t.Helper()
	w := &snapWalk{}
	var evs []tree.Event
	add := func(b []byte) error {
		if b[0] != 'n' { // the state record
			return nil
		}
		ev, err := wire.DecodeEntry(b[1:])
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
		return nil
	}
	for steps := 0; ; steps++ {
		if w.sortMe != nil {
			sortPairs(w.sortMe)
		}
		done, err := w.step(e, n, add)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			return evs
		}
		if between != nil {
			between()
		}
		if steps > 100_000 {
			t.Fatal("the walk does not end")
		}
	}
}

// TestSnapWalkOrder: a snapshot's walk writes every entry that has a
// version once, parents first and each level in tock order, also a level
// big enough to be sorted off the loop, and ends while writes come
// between its steps.
func TestSnapWalkOrder(t *testing.T) {
	e := open(t, store.NewMemFS(), nil)
	st, err := e.Stepper()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	set := func(p tree.Path) {
		if _, _, err := e.r.Set(p, str("v"), tree.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	// A big level written in reverse name order, so that tock order is not
	// name order, with small levels below some of its entries.
	for i := 3*snapBigLevel - 1; i >= 0; i-- {
		set(tree.Path{tree.Str("big"), tree.Int(int64(i))})
		if i%1000 == 0 {
			set(tree.Path{tree.Str("big"), tree.Int(int64(i)), tree.Str("x")})
		}
	}
	set(tree.Path{tree.Str("small")})

	extra := 0
	evs := walkSnapshot(t, e, 500, func() { // writes between the steps
		set(tree.Path{tree.Str("later"), tree.Int(int64(extra))})
		extra++
	})
	seen := map[string]bool{}
	for _, ev := range evs {
		k := ev.Path.String()
		if seen[k] {
			t.Fatalf("%s written twice", k)
		}
		seen[k] = true
	}
	for i := range 3 * snapBigLevel {
		if k := (tree.Path{tree.Str("big"), tree.Int(int64(i))}).String(); !seen[k] {
			t.Fatalf("%s, there before the walk, not written", k)
		}
	}

	evs = walkSnapshot(t, e, 7, nil)
	want := 0
	e.r.Tree().Walk(nil, func(x *tree.Entry) bool {
		if len(x.Chain()) > 0 {
			want++
		}
		return true
	})
	if len(evs) != want {
		t.Fatalf("%d entries written, %d have a version", len(evs), want)
	}
	at := map[string]int{}
	for i, ev := range evs {
		at[ev.Path.String()] = i
	}
	lastTock := map[string]uint64{}
	for i, ev := range evs {
		p := ev.Path
		if len(p) == 0 {
			continue
		}
		parent := p[:len(p)-1].String()
		if j, ok := at[parent]; ok && j > i {
			t.Fatalf("%s written before its parent", p)
		}
		if ev.Tock < lastTock[parent] {
			t.Fatalf("%s (tock %d) after a sibling of tock %d", p, ev.Tock, lastTock[parent])
		}
		lastTock[parent] = ev.Tock
	}
}
