package replica

import (
	"errors"
	"slices"
	"testing"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// infoSent returns the info messages in rd.
func infoSent(t *testing.T, rd Ready) []wire.Info {
	t.Helper()
	return infosIn(t, rd.Messages)
}

// records replays what r persisted into a fresh replica.
func restored(t *testing.T, name string, recs [][]byte) *Replica {
	t.Helper()
	r := New(Config{Node: name})
	if errs := r.Restore(nil, recs, nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	return r
}

// TestKillNode follows MoaT-KV's test_kill: foo.bar is written by n1 and
// then by n2 (chain n2→n1). Killing n2 fails: it heads the entry. Killing
// n1 works: the chain becomes n2 alone, n1 is forgotten, info{node_drop}
// goes out, and a restart keeps it forgotten. A node_drop from a peer
// drops only nodes that head nothing.
func TestKillNode(t *testing.T) {
	n1, n2 := New(Config{Node: "n1"}), New(Config{Node: "n2"})
	me := New(Config{Node: "me"})
	p := newPair(t, n1, n2)
	n1.LinkUp(1)
	n2.LinkUp(1)
	p.pump(t)
	if _, _, err := n1.Set(path("foo.bar"), str("1"), tree.Cond{}); err != nil {
		t.Fatal(err)
	}
	p.pump(t)
	if _, _, err := n2.Set(path("foo.bar"), str("2"), tree.Cond{}); err != nil {
		t.Fatal(err)
	}
	p.pump(t)
	var recs [][]byte
	me.LinkUp(1)
	keep := func() {
		rd := me.Ready()
		recs = append(recs, rd.Records...)
	}
	keep()
	e := n2.Tree().Get(path("foo.bar"))
	ev := e.Event(0)
	// me learns the entry with its two-link chain.
	if err := me.Step(1, wire.KindUpdate, wire.AppendUpdate(nil, ev)); err != nil {
		t.Fatal(err)
	}
	keep()
	if got := me.Tree().Get(path("foo.bar")).Chain().String(); got != "n2:1→n1:1" {
		t.Fatalf("chain %s", got)
	}
	if err := me.KillNode("n2"); !errors.Is(err, tree.ErrConflict) {
		t.Fatalf("kill n2: %v, want a conflict (it heads foo.bar)", err)
	}
	if err := me.KillNode("me"); !errors.Is(err, tree.ErrConflict) {
		t.Fatalf("kill self: %v", err)
	}
	if err := me.KillNode("ghost"); !errors.Is(err, tree.ErrNotFound) {
		t.Fatalf("kill ghost: %v", err)
	}
	if err := me.KillNode("n1"); err != nil {
		t.Fatal(err)
	}
	rd := me.Ready()
	recs = append(recs, rd.Records...)
	if got := me.Tree().Get(path("foo.bar")).Chain().String(); got != "n2:1" {
		t.Errorf("chain after kill %s, want n2:1", got)
	}
	if me.Tree().LookupNode("n1") != nil {
		t.Error("n1 still known")
	}
	ins := infoSent(t, rd)
	if len(ins) != 1 || !slices.Equal(ins[0].NodeDrop, []string{"n1"}) || ins[0].Node != "me" {
		t.Errorf("sent %+v, want one info{node_drop: [n1]}", ins)
	}
	r2 := restored(t, "me", recs)
	if r2.Tree().LookupNode("n1") != nil || r2.Tree().Get(path("foo.bar")).Chain().String() != "n2:1" {
		t.Errorf("after restore: n1 %v, chain %s", r2.Tree().LookupNode("n1") != nil, r2.Tree().Get(path("foo.bar")).Chain())
	}

	// node_drop from a peer: n2 heads foo.bar and stays; "gone" heads
	// nothing and goes.
	if err := me.Step(1, wire.KindInfo, wire.AppendInfo(nil, wire.Info{Node: "x", Ticks: map[string]uint64{"gone": 3}})); err != nil {
		t.Fatal(err)
	}
	if err := me.Step(1, wire.KindInfo, wire.AppendInfo(nil, wire.Info{Node: "x", NodeDrop: []string{"n2", "gone"}})); err != nil {
		t.Fatal(err)
	}
	if me.Tree().LookupNode("n2") == nil || me.Tree().LookupNode("gone") != nil {
		t.Errorf("after node_drop [n2, gone]: n2 known %v, gone known %v", me.Tree().LookupNode("n2") != nil, me.Tree().LookupNode("gone") != nil)
	}
}

// TestDeletedAndCheckDeleted: check_deleted reports, of the ticks asked
// about, those known here but on no entry (superseded or purged), never
// ticks this node has not seen; info{deleted} from a peer drops an entry
// whose head it names (and only then), persistently, and marks the ticks
// known.
func TestDeletedAndCheckDeleted(t *testing.T) {
	a := New(Config{Node: "a"})
	a.LinkUp(1)
	for _, v := range []string{"1", "2"} {
		if _, _, err := a.Set(path("x"), str(v), tree.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.Set(path("y"), str("3"), tree.Cond{}); err != nil {
		t.Fatal(err)
	}
	a.Ready()
	// a:1 superseded, a:2 heads x, a:3 heads y; a:4..9 never made.
	got := a.CheckDeleted(map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 1, End: 10}), "nobody": rs(1)})
	if len(got) != 1 || !got["a"].Equal(rs(1)) {
		t.Errorf("CheckDeleted = %v, want a: [1]", got)
	}
	ins := infoSent(t, a.Ready())
	if len(ins) != 1 || !ins[0].Deleted["a"].Equal(rs(1)) {
		t.Errorf("sent %+v", ins)
	}

	b := New(Config{Node: "b"})
	b.LinkUp(1)
	for _, p := range []string{"x", "y"} {
		if err := b.Step(1, wire.KindUpdate, wire.AppendUpdate(nil, a.Tree().Get(path(p)).Event(0))); err != nil {
			t.Fatal(err)
		}
	}
	var recs [][]byte
	recs = append(recs, b.Ready().Records...)
	// A peer says a:3 (y's head) and a:7 were deleted.
	if err := b.Step(1, wire.KindInfo, wire.AppendInfo(nil, wire.Info{Node: "ref1", Deleted: map[string]tree.RangeSet{"a": rs(3, 7)}})); err != nil {
		t.Fatal(err)
	}
	rd := b.Ready()
	recs = append(recs, rd.Records...)
	if e := b.Tree().Get(path("y")); e != nil && e.HasValue() {
		t.Error("y kept its value")
	}
	if e := b.Tree().Get(path("x")); e == nil || !e.HasValue() {
		t.Error("x lost its value")
	}
	if !b.Tree().Node("a").Known().Contains(7) {
		t.Error("a:7 not known after info{deleted}")
	}
	if len(rd.Changes) != 1 || !rd.Changes[0].Purged || rd.Changes[0].Path.String() != "y" {
		t.Errorf("changes %+v", rd.Changes)
	}
	r2 := restored(t, "b", recs)
	if e := r2.Tree().Get(path("y")); e != nil && e.HasValue() {
		t.Error("y back after a restart")
	}
	// A late copy of y's old version does not bring it back.
	r2.LinkUp(1)
	if err := r2.Step(1, wire.KindUpdate, wire.AppendUpdate(nil, a.Tree().Get(path("y")).Event(0))); err != nil {
		t.Fatal(err)
	}
	if e := r2.Tree().Get(path("y")); e != nil && e.HasValue() {
		t.Error("a late copy of y's deleted version brought it back")
	}
}

// TestDroppedNodeComesBack: this node killed n1, but a peer that still has
// it (it was away when node_drop went out) brings n1 back with its
// digest. The peer's copy of the entry is a duplicate here (its head is
// known), yet its chain's n1 link must count as seen: otherwise this node
// asks for n1's tick forever.
func TestDroppedNodeComesBack(t *testing.T) {
	me, p := New(Config{Node: "me"}), New(Config{Node: "p"})
	for _, r := range []*Replica{me, p} {
		r.LinkUp(1)
		for _, ev := range []tree.Event{
			{Path: path("foo.bar"), Value: str("1"), Chain: tree.Chain{{Node: "n1", Tick: 1}}, Tock: 10},
			{Path: path("foo.bar"), Value: str("2"), Chain: tree.Chain{{Node: "n2", Tick: 1}, {Node: "n1", Tick: 1}}, Tock: 20},
		} {
			if err := r.Step(1, wire.KindUpdate, wire.AppendUpdate(nil, ev)); err != nil {
				t.Fatal(err)
			}
		}
		r.Ready()
		r.LinkDown(1)
	}
	if err := me.KillNode("n1"); err != nil {
		t.Fatal(err)
	}
	me.Ready()
	pr := newPair(t, me, p)
	me.LinkUp(1)
	p.LinkUp(1)
	pr.pump(t)
	for range 50 {
		me.Tick()
		p.Tick()
		pr.pump(t)
	}
	if m := me.Missing(); len(m) != 0 {
		t.Errorf("still missing %v after the peer brought n1 back", m)
	}
	if got := me.Tree().Get(path("foo.bar")).Chain().String(); got != "n2:1" {
		t.Errorf("chain %s", got)
	}
}
