package replica

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

func str(s string) []byte { return msgp.AppendString(nil, s) }

func path(s string) tree.Path {
	p, err := tree.ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// pair wires two replicas with one link each (a's link 1 ↔ b's link 1) and
// pumps messages between them.
type pair struct {
	a, b  *Replica
	bytes int
	sent  map[wire.Kind]int
}

func newPair(t *testing.T, a, b *Replica) *pair {
	return &pair{a: a, b: b, sent: map[wire.Kind]int{}}
}

func (p *pair) pump(t *testing.T) {
	t.Helper()
	for range 1000 {
		ra, rb := p.a.Ready(), p.b.Ready()
		if len(ra.Messages) == 0 && len(rb.Messages) == 0 {
			return
		}
		for _, m := range ra.Messages {
			p.bytes += len(m.Data)
			p.sent[m.Kind]++
			if err := p.b.Step(1, m.Kind, m.Data); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range rb.Messages {
			p.bytes += len(m.Data)
			p.sent[m.Kind]++
			if err := p.a.Step(1, m.Kind, m.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatal("messages never stopped")
}

func dump(r *Replica) string {
	var b strings.Builder
	r.Tree().Walk(nil, func(e *tree.Entry) bool {
		if len(e.Chain()) > 0 {
			v, _ := e.Value()
			b.WriteString(e.Path().String() + " " + string(v) + " " + e.Chain().String() + "\n")
		}
		return true
	})
	for _, n := range r.Tree().Nodes() {
		b.WriteString(n.Name() + " " + n.Known().String() + " " + n.Present().String() + "\n")
	}
	return b.String()
}

func TestRelayOnlyNewAndNeverBack(t *testing.T) {
	a := New(Config{Node: "a"})
	b := New(Config{Node: "b"})
	for _, id := range []LinkID{1, 2, 3} {
		b.LinkUp(id)
	}
	b.Ready()
	ev, _, err := a.Set(path("x"), str("v"), tree.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	data := wire.AppendUpdate(nil, ev)
	if err := b.Step(2, wire.KindUpdate, data); err != nil {
		t.Fatal(err)
	}
	rd := b.Ready()
	var links []LinkID
	for _, m := range rd.Messages {
		if m.Kind == wire.KindUpdate {
			links = append(links, m.Link)
		}
	}
	if len(links) != 2 || links[0] != 1 || links[1] != 3 {
		t.Fatalf("relayed on links %v, want [1 3]", links)
	}
	if len(rd.Records) != 1 || len(rd.Changes) != 1 {
		t.Fatalf("records %d changes %d, want 1 and 1", len(rd.Records), len(rd.Changes))
	}
	// The same update again, on any link, is not relayed.
	if err := b.Step(3, wire.KindUpdate, data); err != nil {
		t.Fatal(err)
	}
	if rd := b.Ready(); !rd.IsEmpty() {
		t.Fatalf("duplicate produced output: %+v", rd)
	}
}

func TestDigestSendsOnlyTheDifference(t *testing.T) {
	a, b := New(Config{Node: "a"}), New(Config{Node: "b"})
	p := newPair(t, a, b)
	a.LinkUp(1)
	b.LinkUp(1)
	for i := range 50 {
		a.Set(tree.Path{tree.Str("shared"), tree.Int(int64(i))}, str("v"), tree.Cond{})
	}
	p.pump(t)
	a.LinkDown(1)
	b.LinkDown(1)
	a.Ready()
	b.Ready()
	// Diverge: 3 new on a, 2 new on b, and one conflicting key.
	for i := range 3 {
		a.Set(tree.Path{tree.Str("a"), tree.Int(int64(i))}, str("from a"), tree.Cond{})
	}
	for i := range 2 {
		b.Set(tree.Path{tree.Str("b"), tree.Int(int64(i))}, str("from b"), tree.Cond{})
	}
	ea, _, _ := a.Set(path("shared:7"), str("from a"), tree.Cond{})
	eb, _, _ := b.Set(path("shared:7"), str("from b"), tree.Cond{})
	want := str("from b")
	if ea.Version().Compare(eb.Version()) > 0 {
		want = str("from a")
	}
	a.Ready()
	b.Ready()
	p.sent = map[wire.Kind]int{}
	a.LinkUp(1)
	b.LinkUp(1)
	p.pump(t)
	if da, db := dump(a), dump(b); da != db {
		t.Fatalf("trees differ after catch-up:\n%s\nvs\n%s", da, db)
	}
	// 4 entries from a, 3 from b: the shared 50 are never re-sent.
	ups := p.sent[wire.KindUpdate]
	if p.sent[wire.KindBatch] != 2 || ups != 0 {
		t.Fatalf("sent %v, want one batch each way and no single updates", p.sent)
	}
	if v, _ := a.Tree().Get(path("shared:7")).Value(); string(v) != string(want) {
		t.Fatalf("conflict winner %q, want %q (the higher version)", v, want)
	}
}

func TestMissingTicksAreRequested(t *testing.T) {
	a, b := New(Config{Node: "a", HeartbeatTicks: 1, MissingTicks: 1}), New(Config{Node: "b", HeartbeatTicks: 1, MissingTicks: 1})
	p := newPair(t, a, b)
	a.LinkUp(1)
	b.LinkUp(1)
	p.pump(t)
	// b's update is lost on the way to a.
	b.Set(path("lost"), str("x"), tree.Cond{})
	b.Ready()
	b.Tick() // heartbeat: b's tick is 1
	p.pump(t)
	if m := a.Missing(); m["b"].String() != "[1]" {
		t.Fatalf("a's missing = %v, want b:[1]", m)
	}
	a.Tick() // asks for it
	p.pump(t)
	if e := a.Tree().Get(path("lost")); e == nil || !e.HasValue() {
		t.Fatal("a did not get the lost update")
	}
	if len(a.Missing()) != 0 {
		t.Fatalf("still missing %v", a.Missing())
	}
}

func deleterValue(nodes ...string) []byte {
	v := msgp.AppendMapHeader(nil, 1)
	v = msgp.AppendString(v, "nodes")
	v = msgp.AppendArrayHeader(v, uint32(len(nodes)))
	for _, n := range nodes {
		v = msgp.AppendString(v, n)
	}
	return v
}

// TestPurgeWaitsForConcurrentWrites: a tombstone is purged only when every
// deleter has seen it AND this node has every change those deleters had
// made by then — otherwise a concurrent write still on its way could revive
// the entry here only.
func TestPurgeWaitsForConcurrentWrites(t *testing.T) {
	a := New(Config{Node: "a", PurgeTicks: 1})
	a.LinkUp(1)
	if _, _, err := a.Set(DeleterPath, deleterValue("a", "c"), tree.Cond{}); err != nil {
		t.Fatal(err)
	}
	a.Set(path("k"), str("v"), tree.Cond{})
	del, err := a.Delete(path("k"), tree.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	a.Ready()
	hb := func(seq, cTick, throughA uint64) {
		t.Helper()
		data := wire.AppendHeartbeat(nil, wire.Heartbeat{Node: "c", Tick: cTick, Tock: 1, Seq: seq, Through: map[string]uint64{"a": throughA}})
		if err := a.Step(1, wire.KindHeartbeat, data); err != nil {
			t.Fatal(err)
		}
		a.Tick()
	}
	// c has not seen the delete yet.
	hb(1, 0, del.Chain[0].Tick-1)
	if a.Tree().NumTombstones() != 1 {
		t.Fatal("purged before c saw the delete")
	}
	// c has seen it, but had made one change (c:1) that a has not seen:
	// it may be a concurrent write of k still on its way.
	hb(2, 1, del.Chain[0].Tick)
	if a.Tree().NumTombstones() != 1 {
		t.Fatal("purged although c:1 may still revive the entry")
	}
	// c:1 arrives (a concurrent write of k that loses to the delete).
	late := tree.Event{Path: path("k"), Value: str("late"), Chain: tree.Chain{{Node: "c", Tick: 1}}, Tock: 1}
	if err := a.Step(1, wire.KindUpdate, wire.AppendUpdate(nil, late)); err != nil {
		t.Fatal(err)
	}
	a.Tick()
	if a.Tree().NumTombstones() != 0 {
		t.Fatal("not purged once everything was seen")
	}
	rd := a.Ready()
	purged := false
	for _, c := range rd.Changes {
		purged = purged || c.Purged
	}
	if !purged {
		t.Fatal("no purge change reported")
	}
	// The late write again cannot come back.
	a.Step(1, wire.KindUpdate, wire.AppendUpdate(nil, late))
	if e := a.Tree().Get(path("k")); e != nil {
		t.Fatal("k came back after the purge")
	}
}

func TestRestoreIsExact(t *testing.T) {
	a := New(Config{Node: "a"})
	b := New(Config{Node: "b"})
	p := newPair(t, a, b)
	a.LinkUp(1)
	b.LinkUp(1)
	var log [][]byte
	keep := func() {
		log = append(log, a.Ready().Records...)
	}
	for i := range 30 {
		k := tree.Path{tree.Str("k"), tree.Int(int64(i % 7))}
		if i%3 == 0 {
			b.Set(k, str("b"), tree.Cond{})
		} else {
			a.Set(k, str("a"), tree.Cond{})
		}
		if i%5 == 0 {
			a.Delete(k, tree.Cond{})
		}
		rb := b.Ready()
		for _, m := range rb.Messages {
			a.Step(1, m.Kind, m.Data)
		}
		keep()
	}
	_ = p
	// Restore from the log only.
	r1 := New(Config{Node: "a"})
	if errs := r1.Restore(nil, log, nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	if dump(r1) != dump(a) {
		t.Fatalf("log restore differs:\n%s\nvs\n%s", dump(r1), dump(a))
	}
	// Restore from a snapshot.
	var snap [][]byte
	if err := a.SnapshotRecords(func(rec []byte) error { snap = append(snap, rec); return nil }); err != nil {
		t.Fatal(err)
	}
	r2 := New(Config{Node: "a"})
	if errs := r2.Restore(snap, nil, nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	if dump(r2) != dump(a) || r2.Tree().Tock() != a.Tree().Tock() {
		t.Fatalf("snapshot restore differs:\n%s\nvs\n%s", dump(r2), dump(a))
	}
	if r2.epoch != r1.epoch+0 || r2.epoch < 1 {
		t.Fatalf("epochs: log %d snapshot %d", r1.epoch, r2.epoch)
	}
}

func TestMalformedMessagesChangeNothing(t *testing.T) {
	a := New(Config{Node: "a"})
	a.LinkUp(1)
	a.Set(path("k"), str("v"), tree.Cond{})
	a.Ready()
	before := dump(a)
	good := tree.Event{Path: path("x"), Value: str("ok"), Chain: tree.Chain{{Node: "b", Tick: 1}}, Tock: 5}
	bad := tree.Event{Path: path("y"), Value: str("bad"), Chain: tree.Chain{{Node: "b", Tick: 2}, {Node: "a", Tick: 1}}, Tock: 6} // a:1 belongs to k
	cases := []struct {
		name string
		kind wire.Kind
		data []byte
	}{
		{"garbage update", wire.KindUpdate, []byte{0xde, 0xad, 0xbe, 0xef}},
		{"truncated update", wire.KindUpdate, wire.AppendUpdate(nil, good)[:20]},
		{"empty info", wire.KindInfo, nil},
		{"digest not a map", wire.KindDigest, msgp.AppendString(nil, "digest")},
		{"heartbeat wrong types", wire.KindHeartbeat, msgp.AppendArrayHeader(nil, 0)},
		{"hello wrong proto", wire.KindHello, wire.AppendHello(nil, wire.Hello{Proto: 99, Node: "z"})},
		{"batch with only bad elements", wire.KindBatch, wire.AppendBatch(nil, [][]byte{wire.AppendUpdate(nil, bad), {0x80}})},
		{"unknown kind", wire.Kind(200), []byte{0x80}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := a.Step(1, tc.kind, tc.data); err == nil {
				t.Fatal("no error")
			}
			if rd := a.Ready(); !rd.IsEmpty() {
				t.Fatalf("output after bad input: %+v", rd)
			}
			if got := dump(a); got != before {
				t.Fatalf("state changed:\n%s", got)
			}
		})
	}
	if err := a.Step(9, wire.KindUpdate, wire.AppendUpdate(nil, good)); err == nil {
		t.Fatal("message on an unknown link accepted")
	}
	// One refused update never costs the rest of its batch.
	good2 := tree.Event{Path: path("z"), Value: str("ok2"), Chain: tree.Chain{{Node: "b", Tick: 3}}, Tock: 7}
	err := a.Step(1, wire.KindBatch, wire.AppendBatch(nil, [][]byte{wire.AppendUpdate(nil, good), wire.AppendUpdate(nil, bad), wire.AppendUpdate(nil, good2)}))
	if err == nil || !strings.Contains(err.Error(), "batch element 1 of 3") {
		t.Fatalf("batch with a bad element: error %v, want one naming element 1 of 3", err)
	}
	for _, ev := range []tree.Event{good, good2} {
		if e := a.Tree().Get(ev.Path); e == nil || e.Chain().String() != ev.Chain.String() {
			t.Errorf("%s of the batch was not applied", ev.Path)
		}
	}
	if e := a.Tree().Get(bad.Path); e != nil {
		t.Errorf("the refused update was applied: %v", e.Chain())
	}
}

func TestMembershipFromHeartbeats(t *testing.T) {
	a := New(Config{Node: "a", LiveTicks: 5})
	a.LinkUp(1)
	a.LinkUp(2)
	a.Ready()
	hb := wire.AppendHeartbeat(nil, wire.Heartbeat{Node: "c", Tick: 3, Tock: 9, Seq: 1})
	if err := a.Step(1, wire.KindHeartbeat, hb); err != nil {
		t.Fatal(err)
	}
	rd := a.Ready()
	if len(rd.Messages) != 1 || rd.Messages[0].Link != 2 || rd.Messages[0].Kind != wire.KindHeartbeat {
		t.Fatalf("heartbeat relay: %+v, want one on link 2", rd.Messages)
	}
	a.Step(2, wire.KindHeartbeat, hb) // the same one back: not relayed
	if rd := a.Ready(); len(rd.Messages) != 0 {
		t.Fatalf("old heartbeat relayed again: %+v", rd.Messages)
	}
	m := a.Members()
	if len(m) != 1 || m[0].Node != "c" || !m[0].Live || m[0].Tick != 3 {
		t.Fatalf("members %+v", m)
	}
	for range 6 {
		a.Tick()
	}
	if a.Members()[0].Live {
		t.Fatal("c still live after 6 silent ticks")
	}
}

// TestRelaySkipsNodesThatHaveIt: in a full mesh a relay does not send an
// update to peers the sender already sent it to (the "via" list).
func TestRelaySkipsNodesThatHaveIt(t *testing.T) {
	b := New(Config{Node: "b"})
	b.LinkUp(1) // to a
	b.LinkUp(2) // to c
	b.LinkUp(3) // to d
	for id, peer := range map[LinkID]string{1: "a", 2: "c", 3: "d"} {
		if err := b.Step(id, wire.KindHello, wire.AppendHello(nil, wire.Hello{Proto: ProtoVersion, Node: peer})); err != nil {
			t.Fatal(err)
		}
	}
	b.Ready()
	a := New(Config{Node: "a"})
	ev, _, _ := a.Set(path("x"), str("v"), tree.Cond{})
	// a sent it to b and c itself: b relays to d only, naming everyone.
	if err := b.Step(1, wire.KindUpdate, wire.AppendUpdateVia(nil, ev, []string{"a", "b", "c"})); err != nil {
		t.Fatal(err)
	}
	rd := b.Ready()
	if len(rd.Messages) != 1 || rd.Messages[0].Link != 3 {
		t.Fatalf("relayed %+v, want one message on link 3 (to d)", rd.Messages)
	}
	u, err := wire.DecodeUpdate(rd.Messages[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		if !slices.Contains(u.Via, n) {
			t.Fatalf("via %v lacks %s", u.Via, n)
		}
	}
	if len(rd.Records) != 1 {
		t.Fatalf("%d records, want 1: a skipped relay still persists the update", len(rd.Records))
	}
}

func TestImport(t *testing.T) {
	a := New(Config{Node: "a"})
	a.LinkUp(1)
	a.Ready()
	ev := tree.Event{Path: path("imported"), Value: str("v"), Chain: tree.Chain{{Node: "old", Tick: 3}}, Tock: 40}
	if fresh, err := a.Import(ev); err != nil || !fresh {
		t.Fatalf("import: %v %v", fresh, err)
	}
	rd := a.Ready()
	if len(rd.Records) != 1 || len(rd.Messages) != 1 || rd.Messages[0].Link != 1 {
		t.Fatalf("import should persist once and relay to every link: %+v", rd)
	}
	if fresh, _ := a.Import(ev); fresh {
		t.Fatal("the same event imported twice was new")
	}
	if _, err := a.Import(tree.Event{Path: path("x"), Value: str("v"), Tock: 1}); err == nil {
		t.Fatal("an event without a chain was imported")
	}
	if err := a.ImportInfo(map[string]uint64{"old": 5}, map[string]tree.RangeSet{"old": tree.RangeSetOf(tree.Range{Start: 1, End: 3})}); err != nil {
		t.Fatal(err)
	}
	if m := a.Missing()["old"]; m.String() != "[[4 6]]" {
		t.Fatalf("missing after ImportInfo: %v", a.Missing())
	}
}

// A client cannot speak for the node: imported events and node state that
// would move its own tick, touch its status entries, or plant ticks of a
// node nobody knows are refused as a whole, and nothing changes.
func TestImportCannotForge(t *testing.T) {
	a := New(Config{Node: "a"})
	a.LinkUp(1)
	a.Ready()
	if _, _, err := a.Set(path("mine"), str("v"), tree.Cond{}); err != nil {
		t.Fatal(err)
	}
	a.Ready()
	own := a.Tree().Node("a").Tick()
	state := func() string {
		var b strings.Builder
		for _, n := range a.Tree().Nodes() {
			fmt.Fprintf(&b, "%s:%d %v %v %v;", n.Name(), n.Tick(), n.Known(), n.Missing(), n.Skipped())
		}
		return b.String()
	}
	before := state()
	events := []tree.Event{
		{Path: path("x"), Value: str("forged"), Chain: tree.Chain{{Node: "a", Tick: 1 << 53}}, Tock: 9},
		{Path: path("x"), Value: str("forged"), Chain: tree.Chain{{Node: "p", Tick: 2}, {Node: "a", Tick: own + 1}}, Tock: 9},
		{Path: append(slices.Clone(StatusPrefix), tree.Str("a"), tree.Str("up")), Value: str("forged"), Chain: tree.Chain{{Node: "p", Tick: 2}}, Tock: 9},
		{Path: append(slices.Clone(StatusPrefix), tree.Str("a")), Value: str("forged"), Chain: tree.Chain{{Node: "p", Tick: 3}}, Tock: 9},
	}
	for _, ev := range events {
		if _, err := a.Import(ev); !errors.Is(err, tree.ErrPermission) {
			t.Errorf("import %s %v: %v, want a permission error", ev.Path, ev.Chain, err)
		}
	}
	infos := []struct {
		ticks map[string]uint64
		known map[string]tree.RangeSet
		want  error
	}{
		{map[string]uint64{"a": own + 1}, nil, tree.ErrPermission},
		{map[string]uint64{"b": 7, "a": 1 << 53}, nil, tree.ErrPermission},
		{nil, map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 1, End: own + 2})}, tree.ErrPermission},
		{map[string]uint64{"ghost": 999_999_999}, nil, tree.ErrInvalidValue},
	}
	for _, in := range infos {
		if err := a.ImportInfo(in.ticks, in.known); !errors.Is(err, in.want) {
			t.Errorf("ImportInfo(%v, %v): %v, want %v", in.ticks, in.known, err, in.want)
		}
	}
	if rd := a.Ready(); len(rd.Records) != 0 || len(rd.Messages) != 0 || state() != before {
		t.Fatalf("refused imports changed something: %d records, %d messages\n%s\nvs\n%s", len(rd.Records), len(rd.Messages), state(), before)
	}
	if got := a.Tree().Get(path("x")); got != nil {
		t.Fatalf("a forged event left an entry: %+v", got)
	}
	// What sync accepts is still accepted: the node's own ticks up to its
	// tick, other nodes' status entries from a save file, and an unknown
	// node with the ticks of it that are known.
	if _, err := a.Import(tree.Event{Path: path("mine"), Value: str("older"), Chain: tree.Chain{{Node: "a", Tick: own}}, Tock: 1}); err != nil {
		t.Fatalf("the node's own event back from a save file: %v", err)
	}
	if _, err := a.Import(tree.Event{Path: append(slices.Clone(StatusPrefix), tree.Str("p"), tree.Str("up")), Value: str("1"), Chain: tree.Chain{{Node: "p", Tick: 4}}, Tock: 9}); err != nil {
		t.Fatalf("a peer's status entry: %v", err)
	}
	if err := a.ImportInfo(map[string]uint64{"a": own, "new": 9}, map[string]tree.RangeSet{"new": tree.RangeSetOf(tree.Range{Start: 1, End: 10})}); err != nil {
		t.Fatalf("a valid info: %v", err)
	}
	if n := a.Tree().LookupNode("new"); n == nil || n.Tick() != 9 || !n.Missing().IsEmpty() {
		t.Fatalf("node new after a valid info: %+v", n)
	}
}

// TestRecycle: slices handed back by Recycle carry the next Ready's
// records and changes, with nothing of the old ones left over; a slice
// longer than recycleCap is not kept.
func TestRecycle(t *testing.T) {
	r := New(Config{Node: "a"})
	r.Ready() // the start's reservation
	if _, _, err := r.Set(path("x"), str("1"), tree.Cond{}); err != nil {
		t.Fatal(err)
	}
	rd := r.Ready()
	if len(rd.Records) != 1 || len(rd.Changes) != 1 {
		t.Fatalf("first write: %d records, %d changes", len(rd.Records), len(rd.Changes))
	}
	recs, changes := &rd.Records[:1][0], &rd.Changes[:1][0]
	r.Recycle(rd)
	if r.HasReady() {
		t.Fatal("HasReady after Recycle with nothing new")
	}
	if _, _, err := r.Set(path("y"), str("2"), tree.Cond{}); err != nil {
		t.Fatal(err)
	}
	rd2 := r.Ready()
	if len(rd2.Records) != 1 || len(rd2.Changes) != 1 || !rd2.Changes[0].Path.Equal(path("y")) {
		t.Fatalf("second write: %d records, changes %+v", len(rd2.Records), rd2.Changes)
	}
	if &rd2.Records[0] != recs || &rd2.Changes[0] != changes {
		t.Error("the recycled arrays were not reused")
	}
	big := Ready{Changes: make([]Change, 0, recycleCap+1)}
	r.Recycle(rd2)
	r.Ready()
	r.out = Ready{}
	r.Recycle(big)
	if r.out.Changes != nil {
		t.Error("a slice over recycleCap was kept")
	}
}
