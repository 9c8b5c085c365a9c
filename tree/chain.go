package tree

import (
	"cmp"
	"fmt"
	"strings"
)

// DefaultChainLen is the default bound on chain length (MoaT-KV's
// server.change.length).
const DefaultChainLen = 5

// Link names one change: the node that made it and that node's tick.
type Link struct {
	Node string
	Tick uint64
}

func (l Link) String() string { return fmt.Sprintf("%s:%d", l.Node, l.Tick) }

// Chain lists the most recent writers of an entry, newest first; each node
// appears at most once. An empty chain means "no version".
type Chain []Link

// Head returns the newest link and whether there is one.
func (c Chain) Head() (Link, bool) {
	if len(c) == 0 {
		return Link{}, false
	}
	return c[0], true
}

// Find returns the tick of node's link in c and whether it has one.
func (c Chain) Find(node string) (uint64, bool) {
	for _, l := range c {
		if l.Node == node {
			return l.Tick, true
		}
	}
	return 0, false
}

// Contains reports whether l is one of c's links.
func (c Chain) Contains(l Link) bool {
	t, ok := c.Find(l.Node)
	return ok && t == l.Tick
}

// Descends reports whether c is based on (causally after or equal to) the
// change l: c holds a link of l's node with a tick ≥ l.Tick.
func (c Chain) Descends(l Link) bool {
	t, ok := c.Find(l.Node)
	return ok && t >= l.Tick
}

// Extend returns a new chain headed by l, followed by c without l's node,
// bounded to maxLen links (maxLen ≤ 0 means unbounded). It never modifies c.
func (c Chain) Extend(l Link, maxLen int) Chain {
	n := len(c) + 1
	if maxLen > 0 && n > maxLen {
		n = maxLen
	}
	out := make(Chain, 0, n)
	out = append(out, l)
	for _, x := range c {
		if len(out) == n {
			break
		}
		if x.Node != l.Node {
			out = append(out, x)
		}
	}
	return out
}

// Truncate returns c bounded to maxLen links (maxLen ≤ 0: unchanged).
func (c Chain) Truncate(maxLen int) Chain {
	if maxLen > 0 && len(c) > maxLen {
		return c[:maxLen]
	}
	return c
}

// MaxCounter bounds the ticks and tocks accepted from outside (sync
// messages, save files, client requests): a node counts on from the
// highest it has seen, and one absurd value would otherwise make it wrap
// to 0 and stop writing. Counting one per write, no node gets near it.
const MaxCounter = 1 << 62

// Check reports a malformed chain: empty node names, zero ticks, or a node
// that appears twice.
func (c Chain) Check() error {
	for i, l := range c {
		if l.Node == "" {
			return fmt.Errorf("%w: chain link %d has no node", ErrMalformed, i)
		}
		if l.Tick == 0 {
			return fmt.Errorf("%w: chain link %d (%s) has tick 0", ErrMalformed, i, l.Node)
		}
		for _, m := range c[:i] {
			if m.Node == l.Node {
				return fmt.Errorf("%w: chain repeats node %q at link %d", ErrMalformed, l.Node, i)
			}
		}
	}
	return nil
}

func (c Chain) String() string {
	parts := make([]string, len(c))
	for i, l := range c {
		parts[i] = l.String()
	}
	return strings.Join(parts, "→")
}

// Version identifies one version of an entry for the winner rule: the
// entry's tock and its chain head. Versions are totally ordered by
// (Tock, Node, Tick); the higher one wins. A descendant always has a higher
// tock than its ancestor (tock is a Lamport clock raised by every message
// seen), so this order is consistent with causality and every replica
// reaches the same winner whatever order updates arrive in.
type Version struct {
	Tock uint64
	Head Link
}

// Compare orders versions by (Tock, Head.Node, Head.Tick).
func (v Version) Compare(o Version) int {
	if c := cmp.Compare(v.Tock, o.Tock); c != 0 {
		return c
	}
	if c := strings.Compare(v.Head.Node, o.Head.Node); c != 0 {
		return c
	}
	return cmp.Compare(v.Head.Tick, o.Head.Tick)
}
