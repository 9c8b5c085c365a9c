package node

import (
	"cmp"
	"slices"

	"github.com/edgekv/edgekv/tree"
)

// snapWalk is a snapshot's walk of the tree, taken over many turns of the
// loop (snapshotAsync). It visits parents before their children and each
// level in tock order, so that a restore sees each node's ticks nearly in
// order (its range sets then take each tick in constant time; ticks in
// random order make restoring a million entries take a minute). A level
// of more than snapBigLevel children is sorted off the loop: the loop
// copies (entry, tock) pairs, the snapshot goroutine sorts the copy, and
// the loop visits the entries from it. Entries are only ever dereferenced
// on the loop; one added under a level already copied is in the log that
// the restore replays, one removed meanwhile has no version and is
// skipped.
type snapWalk struct {
	started bool
	stack   []snapLevel
	sortMe  []tockPair // a level copied on the loop, to sort off it
}

type snapLevel struct {
	kids []tockPair
	next int
}

type tockPair struct {
	e    *tree.Entry
	tock uint64
}

// snapBigLevel is the size from which a level is sorted off the loop.
const snapBigLevel = 4096

// step runs on the loop: it writes up to n entries' records with add and
// reports whether the walk is done. It stops early when it has copied a
// big level (w.sortMe), which the caller sorts before the next step.
func (w *snapWalk) step(e *Engine, n int, add func([]byte) error) (done bool, err error) {
	if w.sortMe != nil {
		w.stack = append(w.stack, snapLevel{kids: w.sortMe})
		w.sortMe = nil
	}
	if !w.started {
		w.started = true
		if err := e.r.SnapshotHeader(add); err != nil {
			return false, err
		}
		root := e.r.Tree().Root()
		if err := e.r.SnapshotEntry(root, add); err != nil {
			return false, err
		}
		if w.push(root) {
			return false, nil
		}
	}
	for n > 0 && len(w.stack) > 0 {
		top := &w.stack[len(w.stack)-1]
		if top.next == len(top.kids) {
			w.stack = w.stack[:len(w.stack)-1]
			continue
		}
		x := top.kids[top.next].e
		top.kids[top.next] = tockPair{}
		top.next++
		n--
		if err := e.r.SnapshotEntry(x, add); err != nil {
			return false, err
		}
		if w.push(x) {
			return false, nil // a big level to sort first
		}
	}
	return len(w.stack) == 0, nil
}

// push copies x's children as the next level; a big level is left in
// w.sortMe for the caller to sort (it reports true), a small one is
// sorted here.
func (w *snapWalk) push(x *tree.Entry) (big bool) {
	if x.NumChildren() == 0 {
		return false
	}
	kids := x.AppendChildren(make([]*tree.Entry, 0, x.NumChildren()))
	pairs := make([]tockPair, len(kids))
	for i, k := range kids {
		pairs[i] = tockPair{e: k, tock: k.Tock()}
	}
	if len(pairs) > snapBigLevel {
		w.sortMe = pairs
		return true
	}
	sortPairs(pairs)
	w.stack = append(w.stack, snapLevel{kids: pairs})
	return false
}

// sortPairs sorts a level by tock; it touches only the copy, so it may
// run off the loop.
func sortPairs(p []tockPair) {
	slices.SortFunc(p, func(a, b tockPair) int { return cmp.Compare(a.tock, b.tock) })
}
