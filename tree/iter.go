package tree

// Iter walks the entries at or below a path in canonical order (parents
// before children), a few at a time, so that a long walk can be spread
// over many turns of the tree's owner with other work in between. It
// holds each level's children, sorted, from when it reached that level
// (the tree's shared sorted list: concurrent walks of a large level hold
// one copy):
//
//   - an entry present from the first to the last Next is visited once;
//   - an entry added under a level already reached is not visited, one
//     removed may still be (with no value: callers check HasValue);
//   - each visited entry is seen as it is at that Next, not as it was
//     when the walk began.
//
// Like the tree, an Iter is for the owner's goroutine only.
type Iter struct {
	t     *Tree
	root  *Entry
	stack []iterLevel
	depth int // levels below root to visit; -1: all
}

type iterLevel struct {
	kids []*Entry
	next int
}

// Iter returns a walk of the entries at or below p.
func (t *Tree) Iter(p Path) *Iter { return &Iter{t: t, root: t.Get(p), depth: -1} }

// IterDepth returns a walk of the entry at p and its descendants at most
// depth levels below it (0: the entry alone).
func (t *Tree) IterDepth(p Path, depth int) *Iter {
	return &Iter{t: t, root: t.Get(p), depth: max(depth, 0)}
}

// descend reports whether the walk visits the children of an entry that
// is at level (0: the root) and has some.
func (it *Iter) descend(e *Entry, level int) bool {
	return e.children.len() > 0 && (it.depth < 0 || level < it.depth)
}

// Next calls fn for up to n more entries and reports whether any are left.
func (it *Iter) Next(n int, fn func(*Entry)) (more bool) {
	if n <= 0 {
		return it.root != nil || len(it.stack) > 0
	}
	if it.root != nil {
		e := it.root
		it.root = nil
		fn(e)
		n--
		if it.descend(e, 0) {
			it.stack = append(it.stack, iterLevel{kids: it.t.kids(e)})
		}
	}
	for n > 0 && len(it.stack) > 0 {
		top := &it.stack[len(it.stack)-1]
		if top.next == len(top.kids) {
			it.stack[len(it.stack)-1] = iterLevel{}
			it.stack = it.stack[:len(it.stack)-1]
			continue
		}
		e := top.kids[top.next]
		top.next++
		fn(e)
		n--
		if it.descend(e, len(it.stack)) {
			it.stack = append(it.stack, iterLevel{kids: it.t.kids(e)})
		}
	}
	for len(it.stack) > 0 && it.stack[len(it.stack)-1].next == len(it.stack[len(it.stack)-1].kids) {
		it.stack[len(it.stack)-1] = iterLevel{}
		it.stack = it.stack[:len(it.stack)-1]
	}
	return len(it.stack) > 0
}
