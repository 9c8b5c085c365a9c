//go:build invariants

package tree

import "fmt"

// invariants is true in builds with the invariants tag (CI turns it on).
const invariants = true

// checkEntry panics if e's bookkeeping is inconsistent: every link of its
// chain must be known and must point back to e, and a tombstone must be in
// the tombstone index.
func (t *Tree) checkEntry(e *Entry) {
	for _, l := range e.chain {
		n := t.nodes[l.Node]
		if n == nil || !n.known.Contains(l.Tick) || n.entries.get(l.Tick) != e {
			panic(fmt.Sprintf("tree invariant: link %s of %s is not indexed", l, e.Path()))
		}
		if l.Tick > n.tick {
			panic(fmt.Sprintf("tree invariant: link %s above node tick %d", l, n.tick))
		}
	}
	if _, ok := t.tombs[e]; ok != e.IsTombstone() {
		panic(fmt.Sprintf("tree invariant: tombstone index wrong for %s", e.Path()))
	}
	if err := e.chain.Check(); err != nil {
		panic(fmt.Sprintf("tree invariant: %s: %v", e.Path(), err))
	}
}
