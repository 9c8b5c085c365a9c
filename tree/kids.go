package tree

// kidSet holds a level's children: an open-addressing hash set of the
// child entries themselves, found by their names (linear probing, at most
// 3/4 full, deletion by shifting back: no tombstones).
//
// A Go map[Elem]*Entry keeps each name a second time beside the pointer
// (40 bytes a slot, a map header and 8-slot groups even for one child):
// about 60 bytes a child for a large level and over 300 for a small one.
// The set keeps only the pointer, 8 bytes a slot: 11–21 bytes a child.
//
// The hash is seeded (Config.HashSeed, passed down from the root), so that
// names chosen to collide cannot make a level slow without knowing it.
type kidSet struct {
	slots []*Entry // length a power of two; nil: free
	n     int
	seed  uint64
}

// hashElem hashes el as == compares it (a float's bits, -0 and 0 apart).
func (k *kidSet) hashElem(el Elem) uint64 {
	h := k.seed ^ uint64(el.kind)<<56
	if el.kind != KindString && el.kind != KindBytes {
		return mix64(h ^ el.n)
	}
	s := el.s
	h ^= uint64(len(s)) * 0x9e3779b97f4a7c15
	for len(s) >= 8 {
		h = mix64(h ^ (uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56))
		s = s[8:]
	}
	var t uint64
	for i := range len(s) {
		t |= uint64(s[i]) << (8 * i)
	}
	return mix64(h ^ t)
}

// mix64 is splitmix64's finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (k *kidSet) len() int {
	if k == nil {
		return 0
	}
	return k.n
}

// get returns the child named el, or nil.
func (k *kidSet) get(el Elem) *Entry {
	if k == nil {
		return nil
	}
	mask := uint64(len(k.slots) - 1)
	for i := k.hashElem(el) & mask; ; i = (i + 1) & mask {
		if c := k.slots[i]; c == nil || c.name == el {
			return c
		}
	}
}

// add adds c, whose name is not in k yet.
func (k *kidSet) add(c *Entry) {
	if (k.n+1)*4 > len(k.slots)*3 {
		k.resize(max(2, len(k.slots)*2))
	}
	k.place(c)
	k.n++
}

func (k *kidSet) place(c *Entry) {
	mask := uint64(len(k.slots) - 1)
	i := k.hashElem(c.name) & mask
	for k.slots[i] != nil {
		i = (i + 1) & mask
	}
	k.slots[i] = c
}

func (k *kidSet) resize(size int) {
	old := k.slots
	k.slots = make([]*Entry, size)
	for _, c := range old {
		if c != nil {
			k.place(c)
		}
	}
}

// remove removes the child named el, if there is one.
func (k *kidSet) remove(el Elem) {
	if k == nil {
		return
	}
	mask := uint64(len(k.slots) - 1)
	i := k.hashElem(el) & mask
	for {
		c := k.slots[i]
		if c == nil {
			return
		}
		if c.name == el {
			break
		}
		i = (i + 1) & mask
	}
	k.slots[i] = nil
	k.n--
	// Shift back the entries after the hole that would not be found
	// across it: those whose home slot is not in (hole, j].
	for j := (i + 1) & mask; k.slots[j] != nil; j = (j + 1) & mask {
		h := k.hashElem(k.slots[j].name) & mask
		if (j-h)&mask >= (j-i)&mask {
			k.slots[i], k.slots[j] = k.slots[j], nil
			i = j
		}
	}
	if len(k.slots) > 8 && k.n*8 < len(k.slots) {
		k.resize(len(k.slots) / 4)
	}
}

// each calls fn for every child, in no particular order.
func (k *kidSet) each(fn func(*Entry)) {
	if k == nil {
		return
	}
	for _, c := range k.slots {
		if c != nil {
			fn(c)
		}
	}
}
