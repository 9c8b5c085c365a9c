package tree

import (
	"slices"
)

// Entry is one node of the tree. An entry may hold a value, be a tombstone
// (no value, but a chain: the deletion's version) or be a plain interior
// node (no value, no chain). Entries are owned by their Tree; callers must
// not modify what the accessors return.
type Entry struct {
	name     Elem
	parent   *Entry
	children *kidSet // nil: none
	value    []byte  // msgpack-encoded; nil = no value
	chain    Chain
	tock     uint64
}

// Name returns the entry's last path element.
func (e *Entry) Name() Elem { return e.name }

// Path returns the entry's full path (a new slice).
func (e *Entry) Path() Path {
	n := 0
	for x := e; x.parent != nil; x = x.parent {
		n++
	}
	p := make(Path, n)
	for x := e; x.parent != nil; x = x.parent {
		n--
		p[n] = x.name
	}
	return p
}

// Value returns the msgpack-encoded value and whether there is one. A stored
// nil is the one-byte encoding 0xc0, which is distinct from "no value".
func (e *Entry) Value() ([]byte, bool) { return e.value, e.value != nil }

// HasValue reports whether the entry holds a value.
func (e *Entry) HasValue() bool { return e.value != nil }

// IsTombstone reports whether the entry is a deletion record.
func (e *Entry) IsTombstone() bool { return e.value == nil && len(e.chain) > 0 }

// Chain returns the entry's chain, newest writer first.
func (e *Entry) Chain() Chain { return e.chain }

// Tock returns the tock of the entry's last change.
func (e *Entry) Tock() uint64 { return e.tock }

// Version returns the entry's version for the winner rule.
func (e *Entry) Version() Version {
	h, _ := e.chain.Head()
	return Version{Tock: e.tock, Head: h}
}

// NumChildren returns the number of children.
func (e *Entry) NumChildren() int { return e.children.len() }

// Child returns the child named el, or nil.
func (e *Entry) Child(el Elem) *Entry { return e.children.get(el) }

// AppendChildren appends the children to dst in no particular order: for
// walks that sort them some other way.
func (e *Entry) AppendChildren(dst []*Entry) []*Entry {
	e.children.each(func(c *Entry) { dst = append(dst, c) })
	return dst
}

// Children returns the children in canonical order.
func (e *Entry) Children() []*Entry {
	out := e.AppendChildren(make([]*Entry, 0, e.children.len()))
	slices.SortFunc(out, func(a, b *Entry) int { return a.name.Compare(b.name) })
	return out
}

// Event returns the entry's current version as an event (for sending it).
// The chain is bounded to maxLen links (≤ 0: all).
func (e *Entry) Event(maxLen int) Event {
	return Event{Path: e.Path(), Value: e.value, Chain: e.chain.Truncate(maxLen), Tock: e.tock}
}

// child returns the child named el, made if create; seed is the tree's
// Config.HashSeed.
func (e *Entry) child(el Elem, create bool, seed uint64) *Entry {
	if c := e.children.get(el); c != nil || !create {
		return c
	}
	if e.children == nil {
		e.children = &kidSet{seed: seed}
	}
	c := &Entry{name: el, parent: e}
	e.children.add(c)
	return c
}

// empty reports whether the entry carries nothing and can be cut out.
func (e *Entry) empty() bool {
	return e.value == nil && len(e.chain) == 0 && e.children.len() == 0
}
