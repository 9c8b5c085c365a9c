package wire

import (
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// Encoded map keys, with their fixstr headers.
const (
	kNode  = "\xa4node"
	kTick  = "\xa4tick"
	kPrev  = "\xa4prev"
	kPath  = "\xa4path"
	kValue = "\xa5value"
	kTock  = "\xa4tock"
	kChain = "\xa5chain"
)

// AppendChain appends up to max links of c as MoaT-KV's nested
// {node, tick, prev} maps, newest first. The last link has prev: nil; when
// c has more than max links, the last written link has no prev key, which
// MoaT-KV reads as "truncated here". An empty chain is nil.
func AppendChain(b []byte, c tree.Chain, max int) []byte {
	if len(c) == 0 {
		return append(b, 0xc0)
	}
	n := min(len(c), max)
	truncated := len(c) > n
	for i := range n {
		last := i == n-1
		if last && truncated {
			b = append(b, 0x82)
		} else {
			b = append(b, 0x83)
		}
		b = append(b, kNode...)
		b = msgp.AppendString(b, c[i].Node)
		b = append(b, kTick...)
		b = msgp.AppendUint64(b, c[i].Tick)
		if !last {
			b = append(b, kPrev...)
		} else if !truncated {
			b = append(b, kPrev...)
			b = append(b, 0xc0)
		}
	}
	return b
}

// readChain reads a chain map (nil: no more links) and stores its links in
// *c from index i on. prev: nil and a missing prev both end the chain.
func readChain(b []byte, c *tree.Chain, i int) ([]byte, *Error) {
	if isNil(b) {
		return b[1:], nil
	}
	if i >= MaxChainLinks {
		return b, fail(b, "chain longer than %d links", MaxChainLinks)
	}
	n, rest, e := readMapHeader(b)
	if e != nil {
		return b, e.in("link %d", i)
	}
	for len(*c) <= i {
		*c = append(*c, tree.Link{})
	}
	const seenNode, seenTick, seenPrev = 1, 2, 4
	var seen uint8
	dup := func(at []byte, bit uint8, k string) *Error {
		if seen&bit != 0 {
			return fail(at, "duplicate key %q", k).in("link %d", i)
		}
		seen |= bit
		return nil
	}
	for range n {
		at := rest
		k, ok, r, e := readKey(rest)
		if e != nil {
			return b, e.in("link %d", i)
		}
		rest = r
		if !ok {
			if rest, e = skipValue(rest, 0); e != nil {
				return b, e.in("link %d", i)
			}
			continue
		}
		switch string(k) {
		case "node":
			if e := dup(at, seenNode, "node"); e != nil {
				return b, e
			}
			var name string
			if name, rest, e = readName(rest); e != nil {
				return b, e.in("node").in("link %d", i)
			}
			(*c)[i].Node = name
		case "tick":
			if e := dup(at, seenTick, "tick"); e != nil {
				return b, e
			}
			var t uint64
			at := rest
			if t, rest, e = readUint(rest); e != nil {
				return b, e.in("tick").in("link %d", i)
			}
			if t == 0 {
				return b, fail(at, "tick 0 names no change").in("tick").in("link %d", i)
			}
			(*c)[i].Tick = t
		case "prev":
			if e := dup(at, seenPrev, "prev"); e != nil {
				return b, e
			}
			if rest, e = readChain(rest, c, i+1); e != nil {
				return b, e // it names its own link
			}
		default:
			if rest, e = skipValue(rest, 0); e != nil {
				return b, e.inKey(string(k)).in("link %d", i)
			}
		}
	}
	if seen&seenNode == 0 {
		return b, fail(b, "missing key \"node\"").in("link %d", i)
	}
	if seen&seenTick == 0 {
		return b, fail(b, "missing key \"tick\"").in("link %d", i)
	}
	return rest, nil
}

// checkChain rejects a chain that names a node twice. at is where the chain
// started in the input.
func checkChain(at []byte, c tree.Chain) *Error {
	for i := 1; i < len(c); i++ {
		for j := range i {
			if c[i].Node == c[j].Node {
				return fail(at, "chain repeats node %q (links %d and %d)", c[i].Node, j, i)
			}
		}
	}
	return nil
}
