package replica

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// A scripted MoaT-KV peer: the bus traffic MoaT-KV 0.70.22 made (two
// servers, a split and its heal; testdata/moatkv), played against an
// edgekv replica on a shared link, with the replica's own messages checked
// against the shapes MoaT-KV sends and reads.

type busMsg struct {
	file, phase, broker, topic string
	at                         float64 // seconds since the capture's start
	data                       []byte
}

func moatDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{os.Getenv("EDGEKV_MOATKV_TESTDATA"), "../../testdata/moatkv"} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "bus-index.tsv")); err == nil {
			return d
		}
	}
	t.Fatal("MoaT-KV fixtures not found (testdata/moatkv; or set EDGEKV_MOATKV_TESTDATA)")
	return ""
}

// busCapture returns the captured bus messages in capture order; with
// join, chunked updates reassembled (at the last chunk's place), else as
// they were on the bus.
func busCapture(t *testing.T, join bool) []busMsg {
	t.Helper()
	dir := moatDir(t)
	f, err := os.Open(filepath.Join(dir, "bus-index.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []busMsg
	re := wire.NewReassembler(0, 0)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for first := true; sc.Scan(); first = false {
		if first {
			continue
		}
		col := strings.Split(sc.Text(), "\t")
		at, err := strconv.ParseFloat(col[5], 64)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, col[0]))
		if err != nil {
			t.Fatal(err)
		}
		if join && wire.IsChunk(data) {
			whole, done, err := re.Add(data)
			if err != nil {
				t.Fatal(err)
			}
			if !done {
				continue
			}
			data = whole
		}
		out = append(out, busMsg{file: col[0], phase: col[1], broker: col[2], topic: col[3], at: at, data: data})
	}
	if len(out) < 100 {
		t.Fatalf("%d bus messages", len(out))
	}
	return out
}

func kindOfTopic(t *testing.T, topic string) (wire.Kind, bool) {
	t.Helper()
	return wire.KindForTopicSuffix(strings.TrimPrefix(topic, "moat/kv/"))
}

// moatReplica is an edgekv replica on one shared link (1), its clock at
// the capture's time 0.
func moatReplica(name string, seed uint64) *Replica {
	r := New(Config{Node: name, Seed: seed})
	r.LinkUpShared(1)
	return r
}

// advance runs r's clock to capture time at (0.1 s ticks), collecting what
// it sends.
func advance(r *Replica, at float64, out *[]Message) {
	for float64(r.Now()) < math.Round(at*10) {
		r.Tick()
		*out = append(*out, r.Ready().Messages...)
	}
}

func infosIn(t *testing.T, msgs []Message) []wire.Info {
	t.Helper()
	var out []wire.Info
	for _, m := range msgs {
		if m.Kind == wire.KindInfo {
			in, err := wire.DecodeInfo(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, in)
		}
	}
	return out
}

func rs(ticks ...uint64) tree.RangeSet {
	var s tree.RangeSet
	for _, x := range ticks {
		s.Add(x)
	}
	return s
}

// expectedTree applies every captured update (both brokers') to a fresh
// tree: the state both MoaT-KV servers held after the heal.
func expectedTree(t *testing.T, msgs []busMsg) string {
	t.Helper()
	r := New(Config{Node: "observer"})
	r.LinkUp(1)
	for _, m := range msgs {
		if k, ok := kindOfTopic(t, m.topic); ok && k == wire.KindUpdate {
			if err := r.Step(1, k, m.data); err != nil {
				t.Fatalf("%s: %v", m.file, err)
			}
		}
	}
	return values(r)
}

func valueText(b []byte) string {
	v, err := tree.DecodeValue(b)
	if err != nil {
		return "!" + err.Error()
	}
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// values lists the tree's live entries: path, value and head.
func values(r *Replica) string {
	var b strings.Builder
	r.Tree().Walk(nil, func(e *tree.Entry) bool {
		if v, ok := e.Value(); ok {
			b.WriteString(e.Path().String() + " = " + valueText(v) + " @" + e.Chain()[0].String() + "\n")
		}
		return true
	})
	return b.String()
}

// TestMoaTSplitHeal replays the two-server capture against an edgekv
// replica that sits where ref2 sat after its restart: on broker B, cut off
// from ref1 during the partition. At the heal, ref1's ping tells it of
// ticks it lacks; it must ask for exactly those (as ref2 did), apply
// ref1's re-sends, answer ref1's own info{missing} with what it holds of
// ref2's partition writes in a form MoaT-KV applies, and end with the tree
// both MoaT-KV servers ended with. The chunked updates (fx.big, fx.big2)
// arrive in their chunks, as on the bus.
func TestMoaTSplitHeal(t *testing.T) {
	msgs := busCapture(t, false) // chunks as MoaT-KV 0.70 sent them
	want := expectedTree(t, busCapture(t, true))
	e := moatReplica("edge", 1)
	var out []Message
	var answered []Message
	asked := -1 // where out stood when ref1 asked (bus-2node-072)
	for _, m := range msgs {
		if m.phase == "partition" && m.broker == "A" {
			continue // ref1's side of the split: not heard on broker B
		}
		advance(e, m.at, &out)
		if asked >= 0 && answered == nil {
			// The answer goes out within half a gap (1 s), long before
			// the next captured message (ref2's own answer came 12 s on).
			answered = slices.Clone(out[asked:])
		}
		k, ok := kindOfTopic(t, m.topic)
		if !ok {
			continue // the del group
		}
		if err := e.Step(1, k, m.data); err != nil {
			t.Fatalf("%s: %v", m.file, err)
		}
		if m.file == "bus-2node-072-info-missing.bin" {
			asked = len(out)
		}
		out = append(out, e.Ready().Messages...)
		if m.file == "bus-2node-066-ping-ping.bin" {
			// ref2's ping after the heal came just before its missing
			// request: by then the edge has heard ref1's ping (065) and
			// must have asked for ref1's partition ticks 38..40, as ref2
			// did in bus-2node-067.
			var asked bool
			ref2Asked, err := os.ReadFile(filepath.Join(moatDir(t), "bus-2node-067-info-missing.bin"))
			if err != nil {
				t.Fatal(err)
			}
			want, err := wire.DecodeInfo(ref2Asked)
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range infosIn(t, out) {
				if m, ok := in.Missing["ref1"]; ok && m.Equal(rs(38, 39, 40)) && len(in.Missing) == 1 {
					asked = true
					// Byte for byte ref2's message, but for who sent it when.
					in.Node, in.Tick, in.Tock = want.Node, want.Tick, want.Tock
					if got := wire.AppendInfo(nil, in); string(got) != string(ref2Asked) {
						t.Errorf("the edge's info{missing}, with ref2's node/tick/tock:\n% x\nref2's:\n% x", got, ref2Asked)
					}
				}
			}
			if !asked {
				t.Fatalf("no info{missing: {ref1: [[38, 41]]}} after ref1's ping [222, 40]; sent %v", infosIn(t, out))
			}
		}
	}
	advance(e, msgs[len(msgs)-1].at+60, &out)

	// ref1 asked for ref2's partition ticks 6..8 (bus-2node-072): the edge
	// holds them and answers at once, one update per message, in a shape
	// MoaT-KV reads (originator form with the entry's chain).
	var got []string
	for _, m := range answered {
		if m.Kind == wire.KindBatch {
			t.Fatal("a batch on a shared link: MoaT-KV does not read those")
		}
		if m.Kind != wire.KindUpdate {
			continue
		}
		u, err := wire.DecodeUpdate(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		v := "(deleted)"
		if !u.Event.IsDelete() {
			v = valueText(u.Event.Value)
		}
		got = append(got, u.Event.Path.String()+" "+v+" "+u.Event.Chain.String())
	}
	slices.Sort(got)
	wantGot := []string{
		`fx.part.ref2:0 "ref2 during partition #0" ref2:6`,
		`fx.part.ref2:1 "ref2 during partition #1" ref2:7`,
		`fx.split:0 (deleted) ref2:8→ref1:34`,
	}
	if !slices.Equal(got, wantGot) {
		t.Errorf("answer to ref1's info{missing: {ref2: [[6, 9]]}}:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantGot, "\n"))
	}
	if g := values(e); g != want {
		t.Errorf("edge's tree after the heal:\n%s\nboth MoaT-KV servers':\n%s", g, want)
	}
	if m := e.Missing(); len(m) != 0 {
		t.Errorf("still missing %v", m)
	}
	// The edge took part in the ping group all along.
	var pings int
	for _, m := range out {
		if m.Kind == wire.KindPing {
			am, err := wire.DecodeActor(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if am.Type == wire.ActorPing {
				pings++
				if am.Node != "edge" || !am.Value.Set || am.History[0] != "edge" {
					t.Errorf("ping %+v", am)
				}
			}
		}
	}
	if pings < 3 {
		t.Errorf("%d pings in %.0f s", pings, msgs[len(msgs)-1].at)
	}
}

// sharedBus connects replicas on one shared link each (link 1), as nodes
// on a hub; a node in cut hears nobody and nobody hears it.
type sharedBus struct {
	rs  []*Replica
	cut map[string]bool
	log []Message // every message sent, with Link set to the sender's index
}

func (b *sharedBus) run(t *testing.T, ticks int) {
	t.Helper()
	for range ticks {
		for _, r := range b.rs {
			r.Tick()
		}
		for range 100 {
			moved := false
			for i, r := range b.rs {
				for _, m := range r.Ready().Messages {
					moved = true
					m.Link = LinkID(i)
					b.log = append(b.log, m)
					if b.cut[r.Name()] {
						continue
					}
					for _, o := range b.rs {
						if o != r && !b.cut[o.Name()] {
							if err := o.Step(1, m.Kind, m.Data); err != nil {
								t.Fatalf("%s from %s: %v", m.Kind, r.Name(), err)
							}
						}
					}
				}
			}
			if !moved {
				break
			}
		}
	}
}

func (b *sharedBus) pings(from int) map[string]int {
	n := map[string]int{}
	for _, m := range b.log[from:] {
		if m.Kind == wire.KindPing {
			am, _ := wire.DecodeActor(m.Data)
			if am.Type == wire.ActorPing {
				n[am.Node]++
			}
		}
	}
	return n
}

// TestActorGroup runs three edgekv replicas in one ping group with
// MoaT-KV's timing: after they settle, about one ping per cycle goes out,
// every member takes turns and is "it", and no recovery runs. A split and
// its heal with edgekv's own catch-up off (MoaTOnly) then converges by
// MoaT-KV's recovery alone: pings spread ticks, info{missing} asks, the
// holders re-send.
func TestActorGroup(t *testing.T) {
	b := &sharedBus{cut: map[string]bool{}}
	for i, name := range []string{"a", "b", "c"} {
		r := New(Config{Node: name, Seed: uint64(i + 1), MoaTOnly: true})
		r.LinkUpShared(1)
		b.rs = append(b.rs, r)
	}
	b.run(t, 600) // 60 s to settle
	var rec0 int
	for _, r := range b.rs {
		rec0 += r.ActorStats().Recoveries
	}
	from := len(b.log)
	b.run(t, 3000) // 300 s
	pings := b.pings(from)
	total := 0
	for _, r := range b.rs {
		total += pings[r.Name()]
		if pings[r.Name()] < 3 {
			t.Errorf("%s pinged %d times in 300 s: %v", r.Name(), pings[r.Name()], pings)
		}
		st := r.ActorStats()
		if st.Tags < 3 {
			t.Errorf("%s was it %d times", r.Name(), st.Tags)
		}
		if len(st.History) != 3 {
			t.Errorf("%s: history %v", r.Name(), st.History)
		}
	}
	t.Logf("pings in 300 s: %v", pings)
	for _, r := range b.rs {
		t.Logf("%s: %+v", r.Name(), r.ActorStats())
	}
	// One ping per cycle (10 s) plus up to 2.5 gaps: 21 to 30 in 300 s.
	if total < 18 || total > 32 {
		t.Errorf("%d pings in 300 s, want about one per 10-15 s: %v", total, pings)
	}
	var rec1 int
	for _, r := range b.rs {
		rec1 += r.ActorStats().Recoveries
	}
	if rec1 != rec0 {
		t.Errorf("%d recoveries in a settled group", rec1-rec0)
	}

	// Split a from b and c; both sides write.
	b.cut["a"] = true
	b.run(t, 300)
	for i, r := range b.rs {
		for j := range 3 {
			if _, _, err := r.Set(path(fmt.Sprintf("split.%s.x%d", r.Name(), j)), str("v"), tree.Cond{}); err != nil {
				t.Fatal(err)
			}
		}
		if i == 0 {
			if _, _, err := r.Set(path("both"), str("from a"), tree.Cond{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, err := b.rs[1].Set(path("both"), str("from b"), tree.Cond{}); err != nil {
		t.Fatal(err)
	}
	b.run(t, 300)
	if values(b.rs[0]) == values(b.rs[1]) {
		t.Fatal("the split did not split")
	}
	delete(b.cut, "a")
	b.run(t, 600) // 60 s: a few cycles
	for _, r := range b.rs[1:] {
		if g, w := values(r), values(b.rs[0]); g != w {
			t.Errorf("after the heal %s holds\n%s\na holds\n%s", r.Name(), g, w)
		}
	}
	for _, r := range b.rs {
		if m := r.Missing(); len(m) != 0 {
			t.Errorf("%s still misses %v", r.Name(), m)
		}
	}
	var rec2 int
	for _, r := range b.rs {
		rec2 += r.ActorStats().Recoveries
	}
	t.Logf("recoveries at the heal: %d; %s", rec2-rec1, values(b.rs[2]))
	if rec2 == rec1 {
		t.Error("no recovery ran at the heal")
	}
}

// TestMoaTAsksEdge: a MoaT-KV server that learnt the edge's tick from its
// ping asks for everything with info{missing}, as its _send_missing does.
// The edge answers with one update per held entry, and info{known} for the
// rest: superseded ticks, and the ticks its fresh start declared skipped
// (MoaT-KV has no "skipped"; the same message says "skipped" for edgekv
// nodes, which must not take them for seen).
func TestMoaTAsksEdge(t *testing.T) {
	e := New(Config{Node: "edge", Seed: 1, FreshStart: 100})
	e.Restore(nil, nil, nil)
	e.LinkUpShared(1)
	for _, kv := range [][2]string{{"a", "1"}, {"a", "2"}, {"b", "3"}} {
		if _, _, err := e.Set(path(kv[0]), str(kv[1]), tree.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	var out []Message
	advance(e, 20, &out)
	var ping *wire.ActorMsg
	for _, m := range out {
		if m.Kind == wire.KindPing {
			am, err := wire.DecodeActor(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if am.Type == wire.ActorPing {
				ping = &am
			}
		}
	}
	own := e.Tree().Node("edge").Tick()
	if ping == nil || ping.Value.Tick != own || ping.Value.Tock != e.Tree().Tock() || !slices.Equal(ping.History, []string{"edge"}) {
		t.Fatalf("ping %+v; want value [tock, %d], history [edge]", ping, own)
	}
	// ref1 asks for edge's ticks 1..own, as MoaT-KV would.
	ask := wire.AppendInfo(nil, wire.Info{Node: "ref1", Tick: 5, Tock: 900, Missing: map[string]tree.RangeSet{"edge": tree.RangeSetOf(tree.Range{Start: 1, End: own + 1})}})
	if err := e.Step(1, wire.KindInfo, ask); err != nil {
		t.Fatal(err)
	}
	if rd := e.Ready(); len(rd.Messages) != 0 {
		t.Errorf("answered at once (%d messages): the answer waits up to half a gap", len(rd.Messages))
	}
	out = out[:0]
	advance(e, 21.1, &out) // half a gap (1 s) and a tick
	var ups []string
	var known, skipped tree.RangeSet
	for _, m := range out {
		switch m.Kind {
		case wire.KindUpdate:
			u, err := wire.DecodeUpdate(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			ups = append(ups, u.Event.Path.String()+"="+valueText(u.Event.Value)+"@"+u.Event.Chain.String())
		case wire.KindInfo:
			in, err := wire.DecodeInfo(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			known, skipped = in.Known["edge"], in.Skipped["edge"]
		case wire.KindHeartbeat, wire.KindPing:
		default:
			t.Errorf("unexpected %s", m.Kind)
		}
	}
	slices.Sort(ups)
	if want := []string{`a="2"@edge:102`, `b="3"@edge:103`}; !slices.Equal(ups, want) {
		t.Errorf("updates %v, want %v", ups, want)
	}
	if want := tree.RangeSetOf(tree.Range{Start: 1, End: 102}); !known.Equal(want) {
		t.Errorf("known %v, want %v (1..100 skipped, 101 superseded)", known, want)
	}
	if want := tree.RangeSetOf(tree.Range{Start: 1, End: 101}); !skipped.Equal(want) {
		t.Errorf("skipped %v, want %v", skipped, want)
	}
}

// TestMoaTRecoverySteps: pings that disagree on the history (a healed
// split) start MoaT-KV's recovery. The node first in its side's history
// sends info{ticks} at once and info{missing} (even empty) half a cycle
// later, and re-sends its side's last ping as hist; a node further back
// leaves both steps to the one before it when that one is heard.
func TestMoaTRecoverySteps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hearMe2 bool // "me2", earlier in this side's history, sends ticks and missing
	}{{"first", false}, {"second, preempted", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Config{Node: "edge", Seed: 1, MoaTOnly: true})
			e.LinkUpShared(1)
			if _, _, err := e.Set(path("x"), str("1"), tree.Cond{}); err != nil {
				t.Fatal(err)
			}
			var out []Message
			advance(e, 20, &out) // edge's first ping: history [edge]
			step := func(m wire.ActorMsg) {
				t.Helper()
				if err := e.Step(1, wire.KindPing, wire.AppendActor(nil, m)); err != nil {
					t.Fatal(err)
				}
				out = append(out, e.Ready().Messages...)
			}
			var me2 string
			if tc.hearMe2 {
				me2 = "a-me2"
				step(wire.ActorMsg{Type: wire.ActorPing, Node: me2, Value: wire.ActorValue{Set: true, Tock: 1, Tick: 0}, History: []string{me2, "edge"}})
			}
			out = out[:0]
			// The other side: ref1, then ref9 after it, never heard of edge.
			step(wire.ActorMsg{Type: wire.ActorPing, Node: "ref9", Value: wire.ActorValue{Set: true, Tock: 500, Tick: 7}, History: []string{"ref9", "ref1"}})
			st := e.ActorStats()
			if st.Recoveries != 1 {
				t.Fatalf("recoveries %d", st.Recoveries)
			}
			if tc.hearMe2 {
				ticks := wire.AppendInfo(nil, wire.Info{Node: me2, Ticks: map[string]uint64{me2: 0}})
				miss := wire.AppendInfo(nil, wire.Info{Node: me2, Missing: map[string]tree.RangeSet{}})
				for _, d := range [][]byte{ticks, miss} {
					if err := e.Step(1, wire.KindInfo, d); err != nil {
						t.Fatal(err)
					}
				}
			}
			advance(e, 26, &out) // 6 s: step 2 comes 5 s after step 1
			var sawTicks, sawMissing, sawHist bool
			for _, m := range out {
				switch m.Kind {
				case wire.KindInfo:
					in, _ := wire.DecodeInfo(m.Data)
					if in.Ticks != nil {
						sawTicks = true
						if in.Ticks["ref9"] != 7 || in.Ticks["edge"] != 1 {
							t.Errorf("ticks %v", in.Ticks)
						}
					}
					if in.Missing != nil {
						sawMissing = true
						if !in.Missing["ref9"].Equal(tree.RangeSetOf(tree.Range{Start: 1, End: 8})) {
							t.Errorf("missing %v, want ref9's 1..7", in.Missing)
						}
					}
				case wire.KindPing:
					am, _ := wire.DecodeActor(m.Data)
					if am.Type == wire.ActorHist {
						sawHist = true
						if am.Node != am.History[0] || !am.Value.Set {
							t.Errorf("hist %+v", am)
						}
					}
				}
			}
			if want := !tc.hearMe2; sawTicks != want || sawMissing != want {
				t.Errorf("sent ticks %v, missing %v; want %v", sawTicks, sawMissing, want)
			}
			if !sawHist {
				t.Error("no hist message re-sent this side's ping")
			}
		})
	}
}

// TestEmptyMissingIsSent: recovery step 2 says "nothing missing" with an
// empty map, as MoaT-KV does; an absent Missing stays absent.
func TestEmptyMissingIsSent(t *testing.T) {
	b := wire.AppendInfo(nil, wire.Info{Node: "n", Missing: map[string]tree.RangeSet{}})
	if !strings.Contains(string(b), "\xa7missing\x80") {
		t.Errorf("% x has no empty missing map", b)
	}
	if in, err := wire.DecodeInfo(b); err != nil || in.Missing == nil {
		t.Errorf("decoded %+v, %v", in, err)
	}
	if b := wire.AppendInfo(nil, wire.Info{Node: "n"}); strings.Contains(string(b), "missing") {
		t.Errorf("% x has a missing key", b)
	}
}

// TestActorCollision: links subscribe with No Local, so an init under this
// node's own name comes from another process using it (asyncactor's
// ActorCollisionError); it is counted (the engine logs it), and a vers
// with a higher version replaces the group's timing.
func TestActorCollision(t *testing.T) {
	e := moatReplica("edge", 1)
	if err := e.Step(1, wire.KindPing, wire.AppendActor(nil, wire.ActorMsg{Type: wire.ActorInit, Node: "edge"})); err != nil {
		t.Fatal(err)
	}
	if got := e.ActorStats().Collisions; got != 1 {
		t.Errorf("collisions %d", got)
	}
	var out []Message
	advance(e, 20, &out)
	fast := wire.ActorSetup{Version: 2, Cycle: 3, Gap: 1, Nodes: 5, Splits: 4, NHosts: 10}
	if err := e.Step(1, wire.KindPing, wire.AppendActor(nil, wire.ActorMsg{Type: wire.ActorVers, Node: "other", Setup: fast})); err != nil {
		t.Fatal(err)
	}
	out = out[:0]
	advance(e, 80, &out) // 60 s: with a 3 s cycle alone, a ping every 5 s
	n := 0
	for _, m := range out {
		if am, _ := wire.DecodeActor(m.Data); m.Kind == wire.KindPing && am.Type == wire.ActorPing {
			n++
		}
	}
	if n < 10 {
		t.Errorf("%d pings in 60 s after a vers with a 3 s cycle", n)
	}
	// asyncactor's update_config sends vers without a node: still taken.
	slow := wire.ActorSetup{Version: 4, Cycle: 30, Gap: 2, Nodes: 5, Splits: 4, NHosts: 10}
	if err := e.Step(1, wire.KindPing, wire.AppendActor(nil, wire.ActorMsg{Type: wire.ActorVers, Setup: slow})); err != nil {
		t.Fatal(err)
	}
	out = out[:0]
	advance(e, 140, &out) // 60 s more: at a 30 s cycle, at most two pings
	n = 0
	for _, m := range out {
		if am, _ := wire.DecodeActor(m.Data); m.Kind == wire.KindPing && am.Type == wire.ActorPing {
			n++
		}
	}
	if n > 2 {
		t.Errorf("%d pings in 60 s after a node-less vers with a 30 s cycle", n)
	}
}

// TestAnswersNotRepeated: two edgekv nodes on a bus hold the same 20
// entries; a MoaT-KV server asks for all of them. Each node waits a random
// part of half a gap (in 100 ms ticks) and leaves out what the other
// re-sent meanwhile: when their delays differ, every entry crosses the bus
// once, not once per node (when they draw the same tick, both send).
func TestAnswersNotRepeated(t *testing.T) {
	differ := 0
	for pair := range 10 {
		b := &sharedBus{cut: map[string]bool{}}
		for i, name := range []string{"a", "b"} {
			r := New(Config{Node: name, Seed: uint64(pair*100 + i)})
			r.LinkUpShared(1)
			b.rs = append(b.rs, r)
		}
		for i := range 20 {
			if _, _, err := b.rs[0].Set(path(fmt.Sprintf("k%d", i)), str("v"), tree.Cond{}); err != nil {
				t.Fatal(err)
			}
		}
		b.run(t, 50)
		if values(b.rs[0]) != values(b.rs[1]) {
			t.Fatal("not synced")
		}
		own := b.rs[0].Tree().Node("a").Tick()
		ask := wire.AppendInfo(nil, wire.Info{Node: "ref1", Missing: map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: own - 19, End: own + 1})}})
		for _, r := range b.rs {
			if err := r.Step(1, wire.KindInfo, ask); err != nil {
				t.Fatal(err)
			}
		}
		same := b.rs[0].answers[1].at == b.rs[1].answers[1].at
		from := len(b.log)
		b.run(t, 30)
		total := 0
		for _, m := range b.log[from:] {
			if m.Kind == wire.KindUpdate {
				if u, err := wire.DecodeUpdate(m.Data); err == nil && u.Event.Chain[0].Node == "a" {
					total++
				}
			}
		}
		switch {
		case !same && total != 20:
			t.Errorf("pair %d: delays differ, %d entries sent; want 20", pair, total)
		case same && total != 40:
			t.Errorf("pair %d: same delay, %d entries sent; want 40 (both)", pair, total)
		}
		if !same {
			differ++
		}
	}
	if differ < 6 {
		t.Errorf("only %d of 10 pairs drew different delays", differ)
	}
}

// TestAnswersPaced: a catch-up on a shared link goes out at most
// AnswerBatch entries per tick, one per message (a link's send queue
// holds 4,096), whether it answers info{missing} or a digest; the first
// part of a digest's answer goes at once.
func TestAnswersPaced(t *testing.T) {
	const n = 3000
	for _, how := range []string{"missing", "digest"} {
		t.Run(how, func(t *testing.T) {
			e := New(Config{Node: "edge", Seed: 3})
			e.LinkUpShared(1)
			for i := range n {
				if _, _, err := e.Set(path(fmt.Sprintf("k%d", i)), str("v"), tree.Cond{}); err != nil {
					t.Fatal(err)
				}
			}
			e.Ready()
			own := e.Tree().Node("edge").Tick()
			var msg []byte
			kind := wire.KindInfo
			if how == "missing" {
				msg = wire.AppendInfo(nil, wire.Info{Node: "ref1", Missing: map[string]tree.RangeSet{"edge": tree.RangeSetOf(tree.Range{Start: 1, End: own + 1})}})
			} else {
				kind = wire.KindDigest
				msg = wire.AppendDigest(nil, wire.Digest{Node: "late", Nodes: map[string]wire.NodeDigest{}})
			}
			if err := e.Step(1, kind, msg); err != nil {
				t.Fatal(err)
			}
			perTick := []int{0}
			count := func(ms []Message) {
				for _, m := range ms {
					if m.Kind == wire.KindBatch {
						t.Fatal("a batch on a shared link")
					}
					if m.Kind == wire.KindUpdate {
						perTick[len(perTick)-1]++
					}
				}
			}
			count(e.Ready().Messages)
			for range 40 {
				perTick = append(perTick, 0)
				e.Tick()
				count(e.Ready().Messages)
			}
			total := 0
			for _, c := range perTick {
				total += c
				if c > AnswerBatch {
					t.Errorf("%d updates in one tick, want at most %d: %v", c, AnswerBatch, perTick)
				}
			}
			if total != n {
				t.Errorf("%d updates in all, want %d: %v", total, n, perTick)
			}
			if how == "digest" && perTick[0] != AnswerBatch {
				t.Errorf("the digest's answer began with %d updates, want %d at once", perTick[0], AnswerBatch)
			}
		})
	}
}

// TestAnswerOnlyClearedByItsLink: an answer queued for a hub is not
// cancelled by a copy of the entry that came in on another link (the
// MoaT-KV servers on the hub never saw that copy).
func TestAnswerOnlyClearedByItsLink(t *testing.T) {
	e := New(Config{Node: "edge", Seed: 1})
	e.LinkUpShared(1)
	e.LinkUp(2)
	if _, _, err := e.Set(path("x"), str("1"), tree.Cond{}); err != nil {
		t.Fatal(err)
	}
	e.Ready()
	ev := e.Tree().Get(path("x")).Event(0)
	ask := wire.AppendInfo(nil, wire.Info{Node: "ref1", Missing: map[string]tree.RangeSet{"edge": tree.RangeSetOf(tree.Range{Start: ev.Chain[0].Tick, End: ev.Chain[0].Tick + 1})}})
	if err := e.Step(1, wire.KindInfo, ask); err != nil {
		t.Fatal(err)
	}
	if err := e.Step(2, wire.KindUpdate, wire.AppendUpdate(nil, ev)); err != nil { // a duplicate, elsewhere
		t.Fatal(err)
	}
	var out []Message
	advance(e, 2, &out)
	sent := false
	for _, m := range out {
		if m.Link == 1 && m.Kind == wire.KindUpdate {
			sent = true
		}
	}
	if !sent {
		t.Error("the hub's answer was dropped because of a copy on another link")
	}
}

// TestPriorityBySentValue: when pings collide, this node compares the
// value it sent, as the others do — not its current one, which the other
// ping's tock has just raised. Else both sides think they won, keep their
// own histories, and the next ping looks like a healed split.
func TestPriorityBySentValue(t *testing.T) {
	e := New(Config{Node: "a", Seed: 1})
	e.LinkUpShared(1)
	for i := range 5 {
		if _, _, err := e.Set(path(fmt.Sprintf("k%d", i)), str("v"), tree.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	var out []Message
	advance(e, 20, &out) // a's first ping: [tock, 5], history [a]
	var sent wire.ActorValue
	for _, m := range out {
		if am, err := wire.DecodeActor(m.Data); m.Kind == wire.KindPing && err == nil && am.Type == wire.ActorPing {
			sent = am.Value
		}
	}
	if !sent.Set || sent.Tick != 5 {
		t.Fatalf("a's ping value %+v", sent)
	}
	// x's ping collides: a higher tock, a lower tick.
	x := wire.ActorMsg{Type: wire.ActorPing, Node: "x", Value: wire.ActorValue{Set: true, Tock: sent.Tock + 5, Tick: 1}, History: []string{"x", "p"}}
	if err := e.Step(1, wire.KindPing, wire.AppendActor(nil, x)); err != nil {
		t.Fatal(err)
	}
	if h := e.ActorStats().History; !slices.Equal(h, []string{"x", "p"}) {
		t.Errorf("history %v after x's higher ping; want x's [x p]", h)
	}
}

// TestPacedAnswersNotRepeated: two nodes answer the same big request on a
// bus at 512 entries a tick each. Each starts at a random place and drops
// what it hears the other send, so the entries cross the bus about once.
func TestPacedAnswersNotRepeated(t *testing.T) {
	const n = 5000
	b := &sharedBus{cut: map[string]bool{}}
	for i, name := range []string{"a", "b"} {
		r := New(Config{Node: name, Seed: uint64(i + 11)})
		r.LinkUpShared(1)
		b.rs = append(b.rs, r)
	}
	for i := range n {
		if _, _, err := b.rs[0].Set(path(fmt.Sprintf("k%d", i)), str("v"), tree.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	b.run(t, 100)
	if m := b.rs[1].Missing(); len(m) != 0 || b.rs[1].Tree().Len() < n {
		t.Fatalf("b has %d entries, misses %v", b.rs[1].Tree().Len(), m)
	}
	own := b.rs[0].Tree().Node("a").Tick()
	ask := wire.AppendInfo(nil, wire.Info{Node: "ref1", Missing: map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 1, End: own + 1})}})
	for _, r := range b.rs {
		if err := r.Step(1, wire.KindInfo, ask); err != nil {
			t.Fatal(err)
		}
	}
	from := len(b.log)
	b.run(t, 60)
	total := 0
	heads := map[uint64]bool{}
	for _, m := range b.log[from:] {
		if m.Kind == wire.KindUpdate {
			if u, err := wire.DecodeUpdate(m.Data); err == nil && u.Event.Chain[0].Node == "a" {
				total++
				heads[u.Event.Chain[0].Tick] = true
			}
		}
	}
	t.Logf("%d entries asked, %d updates sent by the two nodes", n, total)
	if len(heads) < n {
		t.Errorf("only %d of %d entries sent", len(heads), n)
	}
	if total > n*6/5 {
		t.Errorf("%d updates for %d entries: more than 20 %% sent twice", total, n)
	}
}

// TestActorValuesBounded: pings under ever new names (a flooding or broken
// client on the bus) do not grow what the group remembers without bound.
func TestActorValuesBounded(t *testing.T) {
	e := moatReplica("edge", 1)
	var out []Message
	advance(e, 20, &out)
	for i := range actorMaxValues + 500 {
		m := wire.ActorMsg{Type: wire.ActorPing, Node: fmt.Sprintf("n%d", i), Value: wire.ActorValue{Set: true, Tock: 1, Tick: 1}, History: []string{fmt.Sprintf("n%d", i)}}
		if err := e.Step(1, wire.KindPing, wire.AppendActor(nil, m)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.act.values); n > actorMaxValues {
		t.Errorf("%d pingers remembered, bound %d", n, actorMaxValues)
	}
}
