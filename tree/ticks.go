package tree

// tickIndex finds, for one node, the entry whose chain holds each of its
// ticks: an open-addressing set of entry pointers (linear probing, at most
// 3/4 full, deletion by shifting back), each found by the tick of the
// node's link on its chain (a chain names a node at most once). A
// map[uint64]*Entry took 16 bytes a slot and its control bytes; this takes
// 8. An entry's link of the node must not change while the entry is in the
// set: the tree removes the old link before it changes a chain. It probes
// as kidSet (kids.go) does, with another key; the two are kept apart so
// that the tree's lookups compare keys directly, with no call through a
// function value or a generic dictionary.
type tickIndex struct {
	node  string
	seed  uint64
	slots []*Entry // length a power of two; nil: free
	n     int
}

// tickOf is the tick of x's node on e's chain (0: none).
func (x *tickIndex) tickOf(e *Entry) uint64 {
	for _, l := range e.chain {
		if l.Node == x.node {
			return l.Tick
		}
	}
	return 0
}

func (x *tickIndex) home(tick uint64) uint64 {
	return mix64(x.seed^tick) & uint64(len(x.slots)-1)
}

// get returns the entry holding tick, or nil.
func (x *tickIndex) get(tick uint64) *Entry {
	if x.n == 0 {
		return nil
	}
	mask := uint64(len(x.slots) - 1)
	for i := x.home(tick); ; i = (i + 1) & mask {
		e := x.slots[i]
		if e == nil || x.tickOf(e) == tick {
			return e
		}
	}
}

// set makes e the entry holding tick (e's chain holds it), in place of
// another one that did.
func (x *tickIndex) set(tick uint64, e *Entry) {
	if len(x.slots) > 0 {
		mask := uint64(len(x.slots) - 1)
		for i := x.home(tick); x.slots[i] != nil; i = (i + 1) & mask {
			if x.slots[i] == e || x.tickOf(x.slots[i]) == tick {
				x.slots[i] = e
				return
			}
		}
	}
	if (x.n+1)*4 > len(x.slots)*3 {
		x.resize(max(8, len(x.slots)*2))
	}
	x.place(e, tick)
	x.n++
}

func (x *tickIndex) place(e *Entry, tick uint64) {
	mask := uint64(len(x.slots) - 1)
	i := x.home(tick)
	for x.slots[i] != nil {
		i = (i + 1) & mask
	}
	x.slots[i] = e
}

func (x *tickIndex) resize(size int) {
	old := x.slots
	x.slots = make([]*Entry, size)
	for _, e := range old {
		if e != nil {
			x.place(e, x.tickOf(e))
		}
	}
}

// remove forgets tick if e holds it.
func (x *tickIndex) remove(tick uint64, e *Entry) {
	if x.n == 0 {
		return
	}
	mask := uint64(len(x.slots) - 1)
	i := x.home(tick)
	for {
		c := x.slots[i]
		if c == nil {
			return
		}
		if x.tickOf(c) == tick {
			if c != e {
				return
			}
			break
		}
		i = (i + 1) & mask
	}
	x.slots[i] = nil
	x.n--
	for j := (i + 1) & mask; x.slots[j] != nil; j = (j + 1) & mask {
		if h := x.home(x.tickOf(x.slots[j])); (j-h)&mask >= (j-i)&mask {
			x.slots[i], x.slots[j] = x.slots[j], nil
			i = j
		}
	}
	if len(x.slots) > 8 && x.n*8 < len(x.slots) {
		x.resize(len(x.slots) / 4)
	}
}

// each calls fn for every tick and its entry, in no particular order.
func (x *tickIndex) each(fn func(tick uint64, e *Entry)) {
	for _, e := range x.slots {
		if e != nil {
			fn(x.tickOf(e), e)
		}
	}
}
