package tree

import (
	"errors"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

func val(s string) []byte { return msgp.AppendString(nil, s) }

func p(elems ...string) Path {
	out := make(Path, len(elems))
	for i, e := range elems {
		out[i] = Str(e)
	}
	return out
}

func mustSet(t *testing.T, tr *Tree, path Path, v string) Event {
	t.Helper()
	ev, changed, err := tr.Set(path, val(v), Cond{})
	if err != nil || !changed {
		t.Fatalf("Set(%v, %q) = %v, %v", path, v, changed, err)
	}
	return ev
}

func valueOf(t *testing.T, tr *Tree, path Path) (string, bool) {
	t.Helper()
	e := tr.Get(path)
	if e == nil || !e.HasValue() {
		return "", false
	}
	v, _ := e.Value()
	s, _, err := msgp.ReadStringBytes(v)
	if err != nil {
		t.Fatalf("value at %v is not a string: %v", path, err)
	}
	return s, true
}

func TestLocalWritesChainsAndTicks(t *testing.T) {
	a := New(Config{Self: "a"})
	ev1 := mustSet(t, a, p("x"), "one")
	ev2 := mustSet(t, a, p("x"), "two")
	if ev1.Chain.String() != "a:1" || ev2.Chain.String() != "a:2" {
		t.Fatalf("chains %s, %s; want a:1, a:2 (own link replaced)", ev1.Chain, ev2.Chain)
	}
	if ev2.Tock <= ev1.Tock {
		t.Fatalf("tock did not increase: %d then %d", ev1.Tock, ev2.Tock)
	}
	n := a.Node("a")
	if n.Tick() != 2 || n.Known().String() != "[[1 3]]" || n.Present().String() != "[2]" || n.Superseded().String() != "[1]" {
		t.Fatalf("node a: tick %d known %s present %s superseded %s", n.Tick(), n.Known(), n.Present(), n.Superseded())
	}
	// b builds on a's version: chain b:1→a:2.
	b := New(Config{Self: "b"})
	if _, err := b.Apply(ev2); err != nil {
		t.Fatal(err)
	}
	ev3 := mustSet(t, b, p("x"), "three")
	if ev3.Chain.String() != "b:1→a:2" {
		t.Fatalf("chain %s, want b:1→a:2", ev3.Chain)
	}
	// a applies it: causally later wins.
	if out, err := a.Apply(ev3); err != nil || out != Applied {
		t.Fatalf("Apply = %v, %v", out, err)
	}
	if v, _ := valueOf(t, a, p("x")); v != "three" {
		t.Fatalf("value %q, want three", v)
	}
	// The older event again changes nothing.
	if out, _ := a.Apply(ev1); out != Known {
		t.Fatalf("stale event: %v, want known", out)
	}
}

func TestChainBound(t *testing.T) {
	writers := []string{"a", "b", "c", "d", "e", "f", "g"}
	var last Event
	trees := map[string]*Tree{}
	for _, w := range writers {
		trees[w] = New(Config{Self: w, ChainLen: 3})
	}
	for _, w := range writers {
		tr := trees[w]
		if last.Chain != nil {
			if _, err := tr.Apply(last); err != nil {
				t.Fatal(err)
			}
		}
		last = mustSet(t, tr, p("k"), w)
	}
	if last.Chain.String() != "g:1→f:1→e:1" {
		t.Fatalf("chain %s, want g:1→f:1→e:1", last.Chain)
	}
}

func TestWinnerRuleOrderIndependent(t *testing.T) {
	// Two concurrent writes with equal tock: the higher node name wins on
	// both replicas, whatever order they arrive in.
	a, b := New(Config{Self: "a"}), New(Config{Self: "b"})
	ea := mustSet(t, a, p("k"), "from a")
	eb := mustSet(t, b, p("k"), "from b")
	if ea.Tock != eb.Tock {
		t.Fatalf("test needs equal tocks, got %d and %d", ea.Tock, eb.Tock)
	}
	if out, _ := a.Apply(eb); out != Applied {
		t.Fatalf("a applying b's write: %v, want applied", out)
	}
	if out, _ := b.Apply(ea); out != Lost {
		t.Fatalf("b applying a's write: %v, want lost", out)
	}
	for _, tr := range []*Tree{a, b} {
		if v, _ := valueOf(t, tr, p("k")); v != "from b" {
			t.Fatalf("%s has %q, want from b", tr.Self(), v)
		}
		if s := tr.Node("a").Superseded().String(); s != "[1]" {
			t.Fatalf("%s: a's superseded = %s, want [1]", tr.Self(), s)
		}
	}
}

func TestDeleteCompetesLikeValue(t *testing.T) {
	// A delete and a concurrent write, in both orders.
	for _, order := range []string{"delete first", "write first"} {
		t.Run(order, func(t *testing.T) {
			a, b, c := New(Config{Self: "a"}), New(Config{Self: "b"}), New(Config{Self: "c"})
			base := mustSet(t, a, p("k"), "base")
			for _, tr := range []*Tree{b, c} {
				tr.Apply(base)
			}
			del, err := a.Delete(p("k"), Cond{})
			if err != nil {
				t.Fatal(err)
			}
			b.SeeTock(del.Tock) // make b's write later in tock order
			wr := mustSet(t, b, p("k"), "rewrite")
			evs := []Event{del, wr}
			if order == "write first" {
				evs = []Event{wr, del}
			}
			for _, ev := range evs {
				if _, err := c.Apply(ev); err != nil {
					t.Fatal(err)
				}
			}
			if v, ok := valueOf(t, c, p("k")); !ok || v != "rewrite" {
				t.Fatalf("c has %q %v, want rewrite", v, ok)
			}
		})
	}
}

func TestConditionalWrites(t *testing.T) {
	a := New(Config{Self: "a"})
	ev := mustSet(t, a, p("k"), "v1")
	head := ev.Chain[0]
	wrong := Link{Node: "a", Tick: 99}
	tests := []struct {
		name string
		cond Cond
		want error
	}{
		{"must not exist but exists", Cond{MustNotExist: true}, ErrConflict},
		{"wrong head", Cond{Head: &wrong}, ErrConflict},
		{"right head", Cond{Head: &head}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.Tock()
			_, _, err := a.Set(p("k"), val("v2"), tc.cond)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil && a.Tock() != before {
				t.Fatalf("a failed write changed the tock")
			}
		})
	}
	if v, _ := valueOf(t, a, p("k")); v != "v2" {
		t.Fatalf("value %q, want v2", v)
	}
	if _, _, err := a.Set(p("new"), val("x"), Cond{MustNotExist: true}); err != nil {
		t.Fatalf("create with MustNotExist: %v", err)
	}
	if _, err := a.Delete(p("nothing"), Cond{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of nothing: %v, want ErrNotFound", err)
	}
	if _, changed, err := a.Set(p("k"), val("v2"), Cond{Idem: true}); err != nil || changed {
		t.Fatalf("idem set of the same value: changed=%v err=%v", changed, err)
	}
}

func TestStoredNilDiffersFromNoValue(t *testing.T) {
	a := New(Config{Self: "a"})
	if _, _, err := a.Set(p("n"), msgp.AppendNil(nil), Cond{}); err != nil {
		t.Fatal(err)
	}
	e := a.Get(p("n"))
	if v, ok := e.Value(); !ok || len(v) != 1 || v[0] != 0xc0 {
		t.Fatalf("stored nil: %x %v", v, ok)
	}
	if _, err := a.Delete(p("n"), Cond{}); err != nil {
		t.Fatal(err)
	}
	if e := a.Get(p("n")); e.HasValue() || !e.IsTombstone() {
		t.Fatalf("after delete: value %v tombstone %v", e.HasValue(), e.IsTombstone())
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	a := New(Config{Self: "a"})
	mustSet(t, a, p("k"), "v")
	tock := a.Tock()
	bad := []struct {
		name string
		ev   Event
	}{
		{"no chain", Event{Path: p("k"), Value: val("x"), Tock: 9}},
		{"tick zero", Event{Path: p("k"), Value: val("x"), Chain: Chain{{"b", 0}}, Tock: 9}},
		{"repeated node", Event{Path: p("k"), Value: val("x"), Chain: Chain{{"b", 2}, {"b", 1}}, Tock: 9}},
		{"bad value", Event{Path: p("k"), Value: []byte{0x92, 0x01}, Chain: Chain{{"b", 1}}, Tock: 9}},
		{"trailing bytes", Event{Path: p("k"), Value: []byte{0x01, 0x02}, Chain: Chain{{"b", 1}}, Tock: 9}},
		{"nil inside path", Event{Path: Path{Str("a"), Nil()}, Value: val("x"), Chain: Chain{{"b", 1}}, Tock: 9}},
		{"link on other entry", Event{Path: p("other"), Value: val("x"), Chain: Chain{{"b", 1}, {"a", 1}}, Tock: 9}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := a.Apply(tc.ev); err == nil {
				t.Fatal("no error")
			}
			if a.Tock() != tock || a.Len() != 1 || a.LookupNode("b") != nil && a.LookupNode("b").Known().Len() != 0 {
				t.Fatalf("state changed: tock %d len %d", a.Tock(), a.Len())
			}
		})
	}
}

func TestPurgeKeepsValuedParentAndBlocksRevival(t *testing.T) {
	a := New(Config{Self: "a"})
	mustSet(t, a, p("x"), "parent")
	old := mustSet(t, a, p("x", "y"), "child")
	if _, err := a.Delete(p("x", "y"), Cond{}); err != nil {
		t.Fatal(err)
	}
	if a.Purge(p("x", "y"), func(Link) bool { return false }) {
		t.Fatal("purged although not stable")
	}
	if !a.Purge(p("x", "y"), func(Link) bool { return true }) {
		t.Fatal("did not purge")
	}
	if a.Get(p("x", "y")) != nil {
		t.Fatal("tombstone still there")
	}
	if v, ok := valueOf(t, a, p("x")); !ok || v != "parent" {
		t.Fatal("purge removed the valued parent")
	}
	// A late copy of the old value cannot come back.
	b := New(Config{Self: "b"})
	b.Apply(old)
	if out, _ := a.Apply(old); out != Known {
		t.Fatalf("old event after purge: %v, want known", out)
	}
	if a.NumTombstones() != 0 {
		t.Fatal("tombstone index not updated")
	}
}

// TestSkip: skipped ticks are not missing, not known, and a copy of one
// that arrives later is applied like any other.
func TestSkip(t *testing.T) {
	a := New(Config{Self: "a"})
	for range 3 {
		mustSet(t, a, p("x"), "v")
	}
	b := New(Config{Self: "b"})
	b.RaiseTick("a", 10)
	if got := b.Node("a").Missing().String(); got != "[[1 11]]" {
		t.Fatalf("before skip: missing %s", got)
	}
	add := b.Skip("a", RangeSetOf(Range{2, 11}))
	if add.String() != "[[2 11]]" {
		t.Errorf("Skip returned %s", add)
	}
	if again := b.Skip("a", RangeSetOf(Range{5, 8})); !again.IsEmpty() {
		t.Errorf("skipping again returned %s, want nothing new", again)
	}
	n := b.Node("a")
	if n.Missing().String() != "[1]" || !n.Known().IsEmpty() || n.Covered().String() != "[[2 11]]" {
		t.Fatalf("after skip: missing %s known %s covered %s", n.Missing(), n.Known(), n.Covered())
	}
	// a:3 (skipped here) still arrives and counts.
	e := a.Get(p("x"))
	if out, err := b.Apply(e.Event(0)); err != nil || out != Applied {
		t.Fatalf("Apply of a skipped tick: %v, %v", out, err)
	}
	if !n.Knows(3) || n.Missing().String() != "[1]" {
		t.Errorf("after the late copy: knows 3 %v, missing %s", n.Knows(3), n.Missing())
	}
	// Skip raises the tick.
	b.Skip("c", RangeSetOf(Range{1, 5}))
	if b.Node("c").Tick() != 4 || !b.Node("c").Missing().IsEmpty() {
		t.Errorf("c: tick %d missing %s", b.Node("c").Tick(), b.Node("c").Missing())
	}
}

// TestHeadsHash: the incremental heads hash always equals the hash of the
// heads recomputed from scratch, through writes, deletes, remote events
// and purges.
func TestHeadsHash(t *testing.T) {
	a := New(Config{Self: "a"})
	b := New(Config{Self: "b"})
	recompute := func(tr *Tree, name string) uint64 {
		n := tr.Node(name)
		var h uint64
		n.Heads().All(func(tk uint64) bool { h ^= headHash(n.nameHash, tk); return true })
		return h
	}
	check := func(step string) {
		t.Helper()
		for _, tr := range []*Tree{a, b} {
			for _, name := range []string{"a", "b"} {
				if got, want := tr.Node(name).HeadsHash(), recompute(tr, name); got != want {
					t.Fatalf("%s: tree %s, node %s: heads hash %x, recomputed %x", step, tr.Self(), name, got, want)
				}
			}
		}
	}
	for i := range 30 {
		path := p("k", string(rune('a'+i%5)))
		ev := mustSet(t, a, path, "v")
		if _, err := b.Apply(ev); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			ev2, _, err := b.Set(path, val("w"), Cond{})
			if err != nil {
				t.Fatal(err)
			}
			a.Apply(ev2)
		}
		if i%4 == 0 {
			del, err := a.Delete(path, Cond{})
			if err != nil {
				t.Fatal(err)
			}
			b.Apply(del)
		}
		check("step")
	}
	if a.Node("a").HeadsHash() == 0 || a.Node("a").HeadsHash() != b.Node("a").HeadsHash() {
		t.Fatalf("same versions, different hashes: %x vs %x", a.Node("a").HeadsHash(), b.Node("a").HeadsHash())
	}
	for _, tp := range a.Tombstones() {
		a.Purge(tp, func(Link) bool { return true })
	}
	check("purge")
	if !a.Purged() || b.Purged() {
		t.Errorf("Purged: a %v b %v", a.Purged(), b.Purged())
	}
}

// TestStaleSuperseded: a tick known only as superseded is applied when the
// entry holds an older version (the superseding one was lost), and, until
// the tree purges anything, when the entry is missing; never when the tick
// is on a chain, and not for a missing entry after a purge.
func TestStaleSuperseded(t *testing.T) {
	c := New(Config{Self: "c"})
	ev14 := mustSet(t, c, p("k"), "14")
	ev16 := mustSet(t, c, p("k"), "16")
	ev17 := mustSet(t, c, p("other"), "17")

	b := New(Config{Self: "b"})
	b.Apply(ev14)
	b.MarkSuperseded("c", RangeSetOf(Range{2, 3})) // told c:2 is superseded (by a version since lost)
	if out, err := b.Apply(ev16); err != nil || out != Applied {
		t.Fatalf("stale superseded over an older version: %v, %v", out, err)
	}
	if out, _ := b.Apply(ev16); out != Known {
		t.Fatalf("again: %v, want known", out)
	}
	if out, _ := b.Apply(ev14); out != Known {
		t.Fatalf("older copy: %v, want known", out)
	}
	b.MarkSuperseded("c", RangeSetOf(Range{3, 4}))
	if out, err := b.Apply(ev17); err != nil || out != Applied {
		t.Fatalf("missing entry, nothing purged: %v, %v", out, err)
	}

	d := New(Config{Self: "d"})
	d.SetPurged()
	d.MarkSuperseded("c", RangeSetOf(Range{3, 4}))
	if out, _ := d.Apply(ev17); out != Known {
		t.Fatalf("missing entry after a purge: %v, want known (a purged deletion stays)", out)
	}
}
