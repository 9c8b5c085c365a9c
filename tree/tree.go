package tree

import (
	"fmt"
	"slices"

	"github.com/tinylib/msgp/msgp"
)

// Event is one change of one entry: a set (Value non-nil) or a deletion
// (Value nil), with the chain of its writers (newest first) and its tock.
// It is what an `update` message carries.
type Event struct {
	Path  Path
	Value []byte // msgpack-encoded; nil = deletion
	Chain Chain
	Tock  uint64
}

// IsDelete reports whether the event deletes the entry.
func (ev Event) IsDelete() bool { return ev.Value == nil }

// Version returns the event's version for the winner rule.
func (ev Event) Version() Version {
	h, _ := ev.Chain.Head()
	return Version{Tock: ev.Tock, Head: h}
}

// Outcome says what applying an event did.
type Outcome uint8

// Outcomes of Apply.
const (
	// Known: the event (its head link) was seen before; nothing changed.
	Known Outcome = iota
	// Applied: the event won and is now the entry's version.
	Applied
	// Lost: the event was new but lost to the current version; its links
	// are recorded as superseded.
	Lost
)

func (o Outcome) String() string {
	return [...]string{"known", "applied", "lost"}[o]
}

// Changed reports whether the outcome changed local state.
func (o Outcome) Changed() bool { return o != Known }

// Config configures a Tree.
type Config struct {
	// Self is this node's name; local writes are made as this node.
	Self string
	// ChainLen bounds every stored and sent chain (default DefaultChainLen).
	ChainLen int
	// HashSeed seeds the hash that finds an entry's children by name.
	// Give each process a random one, so that path elements chosen to
	// collide cannot slow the tree down.
	HashSeed uint64
}

// Node is what a tree knows of one node (a writer): its highest known tick,
// the ticks it has seen (present on some chain, or superseded), the ticks
// it declared skipped, and the entries whose chains hold its links.
//
// Skipped ticks are those a node restarted above after a crash: it may have
// used some of them before the crash without keeping them, or never used
// them. Nobody waits for a skipped tick (it is not missing), but a copy
// that a peer holds is still accepted and passed on like any other, and
// then becomes known.
type Node struct {
	name     string
	nameHash uint64
	tick     uint64
	known    RangeSet
	skipped  RangeSet
	entries  tickIndex
	heads    uint64 // XOR of headHash over the ticks that head an entry
}

// headHash mixes a node's name hash and a tick (splitmix64's finaliser).
func headHash(nameHash, tick uint64) uint64 {
	z := nameHash ^ (tick * 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// HeadsHash is a hash of the set of this node's ticks that head some
// entry (a value or a tombstone): two trees that hold the same versions
// have equal hashes for every node.
func (n *Node) HeadsHash() uint64 { return n.heads }

// Heads returns this node's ticks that head some entry.
func (n *Node) Heads() RangeSet {
	return n.ticksWhere(func(e *Entry) bool { return e.chain[0].Node == n.name })
}

// flipHead adds or removes link l as the head of an entry.
func (t *Tree) flipHead(l Link) {
	n := t.Node(l.Node)
	n.heads ^= headHash(n.nameHash, l.Tick)
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// Tick returns the highest tick known for the node.
func (n *Node) Tick() uint64 { return n.tick }

// Known returns the ticks seen: present ∪ superseded (shared; do not modify).
func (n *Node) Known() RangeSet { return n.known }

// Knows reports whether tick t was seen.
func (n *Node) Knows(t uint64) bool { return n.known.Contains(t) }

// Skipped returns the ticks the node declared skipped (shared; do not
// modify). It may overlap Known: a skipped tick that arrived later.
func (n *Node) Skipped() RangeSet { return n.skipped }

// Covered returns the ticks that nobody needs to wait for: known or
// skipped (a new set).
func (n *Node) Covered() RangeSet { return n.known.Union(n.skipped) }

// CoveredThrough returns Covered().Through() without building the set.
func (n *Node) CoveredThrough() uint64 { return n.known.ThroughWith(n.skipped) }

// Missing returns [1, tick] minus the known and the skipped ticks.
func (n *Node) Missing() RangeSet {
	all := RangeSetOf(Range{1, n.tick + 1})
	return all.Minus(n.known).Minus(n.skipped)
}

// Present returns the ticks that are on some current chain.
func (n *Node) Present() RangeSet {
	return n.ticksWhere(func(*Entry) bool { return true })
}

// ticksWhere returns the ticks whose entries satisfy keep.
func (n *Node) ticksWhere(keep func(*Entry) bool) RangeSet {
	ticks := make([]uint64, 0, n.entries.n)
	n.entries.each(func(t uint64, e *Entry) {
		if keep(e) {
			ticks = append(ticks, t)
		}
	})
	slices.Sort(ticks)
	var s RangeSet
	for _, t := range ticks {
		s.Add(t)
	}
	return s
}

// Superseded returns the ticks seen once but no longer on any chain.
func (n *Node) Superseded() RangeSet { return n.known.Minus(n.Present()) }

// Deleted returns the ticks on chains of tombstones (pending purge).
func (n *Node) Deleted() RangeSet { return n.ticksWhere((*Entry).IsTombstone) }

// Entry returns the entry whose chain holds this node's tick t, or nil.
func (n *Node) Entry(t uint64) *Entry { return n.entries.get(t) }

// Tree is one replica's copy of the key-value tree plus its knowledge of all
// nodes' ticks. It applies local writes and remote events with edgekv's
// order-independent winner rule (see Version). Not safe for concurrent use.
type Tree struct {
	self     string
	chainLen int
	seed     uint64 // Config.HashSeed
	root     *Entry
	nodes    map[string]*Node
	tock     uint64
	values   int
	tombs    map[*Entry]struct{}
	purged   bool // a tombstone was purged here (ever: see SetPurged)

	// sorted holds the children of walked entries in canonical order,
	// built on demand and dropped (never changed) when a child is added
	// or removed: the walks of a large level share one copy and one sort.
	sorted map[*Entry][]*Entry
}

// Purged reports whether this tree has ever purged a tombstone (as far as
// its store remembers: SetPurged restores it).
func (t *Tree) Purged() bool { return t.purged }

// SetPurged records that the tree purged tombstones before (from a
// snapshot).
func (t *Tree) SetPurged() { t.purged = true }

// New returns an empty tree.
func New(cfg Config) *Tree {
	if cfg.ChainLen <= 0 {
		cfg.ChainLen = DefaultChainLen
	}
	return &Tree{
		self:     cfg.Self,
		chainLen: cfg.ChainLen,
		seed:     cfg.HashSeed,
		root:     &Entry{},
		nodes:    make(map[string]*Node),
		tombs:    make(map[*Entry]struct{}),
		sorted:   make(map[*Entry][]*Entry),
	}
}

// kids returns e's children in canonical order; the slice may be shared
// (see Tree.sorted) and must not be modified. Only levels of at least
// sharedKids children are kept: small ones cost less to sort again than
// to remember for every interior entry a walk has passed.
func (t *Tree) kids(e *Entry) []*Entry {
	if e.children.len() < sharedKids {
		return e.Children()
	}
	k, ok := t.sorted[e]
	if !ok {
		k = e.Children()
		t.sorted[e] = k
	}
	return k
}

// sharedKids is the smallest level whose sorted children are kept.
const sharedKids = 64

// Self returns the local node's name.
func (t *Tree) Self() string { return t.self }

// ChainLen returns the chain bound.
func (t *Tree) ChainLen() int { return t.chainLen }

// Tock returns the current tock.
func (t *Tree) Tock() uint64 { return t.tock }

// SeeTock raises the tock to at least tock (every message seen does this).
func (t *Tree) SeeTock(tock uint64) {
	if tock > t.tock {
		t.tock = tock
	}
}

// Len returns the number of entries that hold a value.
func (t *Tree) Len() int { return t.values }

// Root returns the root entry.
func (t *Tree) Root() *Entry { return t.root }

// Node returns what is known of node name, creating the record if needed.
func (t *Tree) Node(name string) *Node {
	n := t.nodes[name]
	if n == nil {
		n = &Node{name: name, nameHash: nameHash(name), entries: tickIndex{node: name, seed: t.seed}}
		t.nodes[name] = n
	}
	return n
}

// nameHash is FNV-1a of name.
func nameHash(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return h
}

// LookupNode returns the record of node name, or nil.
func (t *Tree) LookupNode(name string) *Node { return t.nodes[name] }

// Nodes returns every known node, sorted by name.
func (t *Tree) Nodes() []*Node {
	out := make([]*Node, 0, len(t.nodes))
	for _, n := range t.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *Node) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	return out
}

// RaiseTick records that node name has made at least tick changes.
func (t *Tree) RaiseTick(name string, tick uint64) {
	n := t.Node(name)
	if tick > n.tick {
		n.tick = tick
	}
}

// MarkSuperseded records ticks of node name as seen and superseded (what an
// `info{known}` message reports). Ticks that are present stay present.
func (t *Tree) MarkSuperseded(name string, ticks RangeSet) {
	n := t.Node(name)
	n.known.AddSet(ticks)
	if m := ticks.Max(); m > n.tick {
		n.tick = m
	}
}

// Skip records ticks of node name as skipped (see Node) and returns the
// ticks that were not skipped before. It raises the node's tick to the
// highest of them.
func (t *Tree) Skip(name string, ticks RangeSet) RangeSet {
	n := t.Node(name)
	add := ticks.Minus(n.skipped)
	if add.IsEmpty() {
		return add
	}
	n.skipped.AddSet(add)
	if m := add.Max(); m > n.tick {
		n.tick = m
	}
	return add
}

// Get returns the entry at path p, or nil. It may be a tombstone or an
// interior entry; check HasValue.
func (t *Tree) Get(p Path) *Entry {
	e := t.root
	for _, el := range p {
		e = e.children.get(el)
		if e == nil {
			return nil
		}
	}
	return e
}

// ValidValue checks that b is exactly one well-formed msgpack value, nested
// at most maxValueDepth deep.
func ValidValue(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty value", ErrInvalidValue)
	}
	rest, err := msgp.Skip(b)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidValue, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after the value", ErrInvalidValue, len(rest))
	}
	return nil
}

// Cond is a condition on a local write.
type Cond struct {
	// MustNotExist: the entry must not hold a value.
	MustNotExist bool
	// Head, if set: the entry's current chain head must be this link.
	Head *Link
	// Idem: a set that would store the value already stored changes nothing.
	Idem bool
}

// Set writes value (msgpack-encoded) at p as the local node and returns the
// event to send. With Cond.Idem and an equal value it returns changed=false
// and no event.
func (t *Tree) Set(p Path, value []byte, c Cond) (ev Event, changed bool, err error) {
	if err := ValidValue(value); err != nil {
		return Event{}, false, err
	}
	return t.write(p, value, c)
}

// Delete deletes the value at p as the local node and returns the event to
// send. Deleting an entry that holds no value fails with ErrNotFound.
func (t *Tree) Delete(p Path, c Cond) (Event, error) {
	ev, _, err := t.write(p, nil, c)
	return ev, err
}

func (t *Tree) write(p Path, value []byte, c Cond) (Event, bool, error) {
	if t.self == "" {
		return Event{}, false, fmt.Errorf("%w: tree has no local node name", ErrInternal)
	}
	if err := p.Check(); err != nil {
		return Event{}, false, err
	}
	e := t.Get(p)
	var cur Chain
	hasValue := false
	if e != nil {
		cur, hasValue = e.chain, e.value != nil
	}
	if c.MustNotExist && hasValue {
		return Event{}, false, fmt.Errorf("%w: %s exists (chain %s)", ErrConflict, p, cur)
	}
	if c.Head != nil {
		h, ok := cur.Head()
		if !ok || h != *c.Head {
			return Event{}, false, fmt.Errorf("%w: %s has version %q, expected %s", ErrConflict, p, cur.String(), c.Head)
		}
	}
	if value == nil && !hasValue {
		return Event{}, false, fmt.Errorf("%w: %s has no value to delete", ErrNotFound, p)
	}
	if c.Idem && value != nil && hasValue && string(e.value) == string(value) {
		return Event{}, false, nil
	}
	self := t.Node(t.self)
	tick := self.tick + 1
	t.tock++
	ev := Event{
		Path:  p,
		Value: value,
		Chain: cur.Extend(Link{Node: t.self, Tick: tick}, t.chainLen),
		Tock:  t.tock,
	}
	if out := t.applyAt(ev, e, true); out != Applied {
		// Cannot happen: a fresh tick with the highest tock always wins.
		return Event{}, false, fmt.Errorf("%w: local write %s was %s", ErrInternal, ev.Chain, out)
	}
	return ev, true, nil
}

// CheckEvent validates an incoming event without applying it.
func (t *Tree) CheckEvent(ev Event) error {
	if err := ev.Path.Check(); err != nil {
		return err
	}
	if len(ev.Chain) == 0 {
		return fmt.Errorf("%w: update for %s has no chain", ErrMalformed, ev.Path)
	}
	if err := ev.Chain.Check(); err != nil {
		return err
	}
	if ev.Value != nil {
		if err := ValidValue(ev.Value); err != nil {
			return err
		}
	}
	// A link identifies one change of one entry: it must not already be
	// present on a different entry.
	for _, l := range ev.Chain {
		if n := t.nodes[l.Node]; n != nil {
			if e := n.entries.get(l.Tick); e != nil && !e.pathEqual(ev.Path) {
				return fmt.Errorf("%w: link %s of %s is already present on %s", ErrMalformed, l, ev.Path, e.Path())
			}
		}
	}
	return nil
}

func (e *Entry) pathEqual(p Path) bool {
	x := e
	for i := len(p) - 1; i >= 0; i-- {
		if x.parent == nil || x.name != p[i] {
			return false
		}
		x = x.parent
	}
	return x.parent == nil
}

// Apply applies an event received from another node (or loaded from disk).
// Malformed events return an error and change nothing. The tree keeps
// ev.Value and ev.Chain: the caller must not modify them afterwards.
func (t *Tree) Apply(ev Event) (Outcome, error) {
	if err := t.CheckEvent(ev); err != nil {
		return Known, err
	}
	t.SeeTock(ev.Tock)
	return t.applyAt(ev, nil, false), nil
}

// deepest returns the deepest existing entry on p and how many of p's
// elements lead to it.
func (t *Tree) deepest(p Path) (*Entry, int) {
	e := t.root
	for i, el := range p {
		c := e.children.get(el)
		if c == nil {
			return e, i
		}
		e = c
	}
	return e, len(p)
}

// applyAt applies ev to e, the entry at ev.Path (nil: look it up, creating
// it if the event wins — one walk down the tree either way).
func (t *Tree) applyAt(ev Event, e *Entry, local bool) Outcome {
	head := ev.Chain[0]
	hn := t.Node(head.Node)
	if hn.known.Contains(head.Tick) && !t.staleSuperseded(hn, ev, e) {
		return Known
	}
	chain := ev.Chain
	if len(chain) > t.chainLen {
		// Links beyond the bound are older versions: seen, superseded.
		for _, l := range chain[t.chainLen:] {
			t.markSeen(l)
		}
		chain = chain[:t.chainLen:t.chainLen]
	}
	var anc *Entry
	depth := len(ev.Path)
	if e == nil {
		if anc, depth = t.deepest(ev.Path); depth == len(ev.Path) {
			e = anc
		}
	}
	if !local && e != nil && len(e.chain) > 0 && ev.Version().Compare(e.Version()) < 0 {
		// The current version wins; the event and its unseen ancestors
		// are superseded.
		for _, l := range chain {
			t.markSeen(l)
		}
		return Lost
	}
	if e == nil {
		e = anc
		if len(t.sorted) > 0 {
			delete(t.sorted, anc) // it gains a child
		}
		for _, el := range ev.Path[depth:] {
			e = e.child(el, true, t.seed)
		}
	}
	if len(e.chain) > 0 {
		t.flipHead(e.chain[0])
	}
	t.flipHead(chain[0])
	// Old links that the new chain does not carry are superseded.
	for _, l := range e.chain {
		if !chain.Contains(l) {
			if n := t.nodes[l.Node]; n != nil {
				n.entries.remove(l.Tick, e)
			}
		}
	}
	if e.value != nil {
		t.values--
	}
	if ev.Value != nil {
		t.values++
		e.value = ev.Value
	} else {
		e.value = nil
	}
	e.chain = chain // Apply and write own the chain from here on
	e.tock = ev.Tock
	if e.value == nil {
		t.tombs[e] = struct{}{}
	} else {
		delete(t.tombs, e)
	}
	for _, l := range chain {
		n := t.markSeen(l)
		n.entries.set(l.Tick, e)
	}
	if invariants {
		t.checkEntry(e)
	}
	return Applied
}

// staleSuperseded reports whether ev, whose head tick is known here, must
// still be applied: its tick is known only as superseded (not on any
// chain), yet the entry at its path holds an older version, or none. That
// happens when this node was told the tick was superseded by a version
// that a crash then lost everywhere; applying it brings the entry to what
// the nodes that hold it have (and if the newer version does exist, it
// still wins when it comes). A missing entry counts only while this tree
// has never purged a tombstone: after a purge, the known tick is what keeps
// a late copy from reviving a deletion.
func (t *Tree) staleSuperseded(hn *Node, ev Event, e *Entry) bool {
	if hn.entries.get(ev.Chain[0].Tick) != nil {
		return false // present: a true duplicate
	}
	if e == nil {
		e = t.Get(ev.Path)
	}
	if e == nil || len(e.chain) == 0 {
		return !t.purged
	}
	return ev.Version().Compare(e.Version()) > 0
}

// markSeen records link l as seen and returns its node.
func (t *Tree) markSeen(l Link) *Node {
	n := t.Node(l.Node)
	n.known.Add(l.Tick)
	if l.Tick > n.tick {
		n.tick = l.Tick
	}
	return n
}

// Walk calls fn for every entry at or below p in canonical order (parents
// before children) until fn returns false. Interior entries are included;
// fn can check HasValue and IsTombstone.
func (t *Tree) Walk(p Path, fn func(*Entry) bool) {
	e := t.Get(p)
	if e == nil {
		return
	}
	t.walk(e, fn)
}

func (t *Tree) walk(e *Entry, fn func(*Entry) bool) bool {
	if !fn(e) {
		return false
	}
	if e.children.len() == 0 {
		return true
	}
	for _, c := range t.kids(e) {
		if !t.walk(c, fn) {
			return false
		}
	}
	return true
}

// Purge removes the tombstone at p if stable(head) says every node that
// matters has seen its deletion. Its links stay known (as superseded), so a
// late copy of an older version can never bring the entry back. Ancestors
// left without value, chain and children are removed too; an ancestor that
// holds a value is never removed. It reports whether it purged.
func (t *Tree) Purge(p Path, stable func(Link) bool) bool {
	e := t.Get(p)
	if e == nil || !e.IsTombstone() || !stable(e.chain[0]) {
		return false
	}
	for _, l := range e.chain {
		if n := t.nodes[l.Node]; n != nil {
			n.entries.remove(l.Tick, e)
		}
	}
	t.flipHead(e.chain[0])
	e.chain = nil
	delete(t.tombs, e)
	t.purged = true
	t.chop(e)
	return true
}

// Forget removes the entry at p whose chain is headed by head, whether it
// holds a value or is a tombstone, as Purge removes a tombstone: its links
// stay known (as superseded), ancestors left empty go too. A peer's report
// that head was deleted (MoaT-KV's info{deleted}) calls for it. It reports
// whether it removed the entry.
func (t *Tree) Forget(p Path, head Link) bool {
	e := t.Get(p)
	if e == nil || len(e.chain) == 0 || e.chain[0] != head {
		return false
	}
	for _, l := range e.chain {
		if n := t.nodes[l.Node]; n != nil {
			n.entries.remove(l.Tick, e)
		}
	}
	t.flipHead(e.chain[0])
	if e.value != nil {
		t.values--
		e.value = nil
	}
	e.chain = nil
	delete(t.tombs, e)
	t.purged = true
	t.chop(e)
	return true
}

// DropNode forgets node name (MoaT-KV's kill_node and node_drop): it must
// head no entry. Its links are cut out of every chain that holds them and
// its record goes, with its ticks. This node cannot drop itself. It returns
// an error wrapping ErrConflict naming an entry the node heads.
func (t *Tree) DropNode(name string) error {
	n := t.nodes[name]
	if n == nil {
		return nil
	}
	if name == t.self {
		return fmt.Errorf("%w: node %q is this node", ErrConflict, name)
	}
	var heads *Entry
	var held []*Entry
	n.entries.each(func(_ uint64, e *Entry) {
		if e.chain[0].Node == name && heads == nil {
			heads = e
		}
		held = append(held, e)
	})
	if heads != nil {
		return fmt.Errorf("%w: node %q heads the entry at %s", ErrConflict, name, heads.Path())
	}
	for _, e := range held {
		e.chain = slices.DeleteFunc(slices.Clone(e.chain), func(l Link) bool { return l.Node == name })
		if invariants {
			t.checkEntry(e)
		}
	}
	delete(t.nodes, name)
	return nil
}

// NumTombstones returns the number of tombstones.
func (t *Tree) NumTombstones() int { return len(t.tombs) }

// Tombstones returns the paths of all tombstones, in canonical order.
func (t *Tree) Tombstones() []Path {
	out := make([]Path, 0, len(t.tombs))
	for e := range t.tombs {
		out = append(out, e.Path())
	}
	slices.SortFunc(out, Path.Compare)
	return out
}

func (t *Tree) chop(e *Entry) {
	for e.parent != nil && e.empty() {
		p := e.parent
		p.children.remove(e.name)
		if len(t.sorted) > 0 {
			delete(t.sorted, p)
			delete(t.sorted, e)
		}
		if p.children.len() == 0 {
			p.children = nil
		}
		e = p
	}
}

// NextTick returns the tick the next local change will get.
func (t *Tree) NextTick() uint64 { return t.Node(t.self).tick + 1 }
