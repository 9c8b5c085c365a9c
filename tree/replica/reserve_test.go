package replica

import (
	"testing"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

func reservationOf(t *testing.T, rd Ready) wire.Reservation {
	t.Helper()
	if rd.NodeRecord == nil {
		t.Fatal("no reservation handed out")
	}
	res, err := wire.DecodeReservation(rd.NodeRecord)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestReservation: a new reservation is handed out at start and exactly
// when a write would go past the last one; a restart continues above the
// saved reservation and declares the ticks the log lacks skipped.
func TestReservation(t *testing.T) {
	r := New(Config{Node: "a", TickReserve: 3, TockReserve: 10})
	r.Restore(nil, nil, nil)
	res := reservationOf(t, r.Ready())
	if res != (wire.Reservation{Node: "a", Epoch: 1, Tick: 3, Tock: 10}) {
		t.Fatalf("first reservation %+v", res)
	}
	var log [][]byte
	for i := 1; i <= 4; i++ {
		ev, _, err := r.Set(path("k"), str("v"), tree.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		rd := r.Ready()
		log = append(log, rd.Records...)
		switch {
		case i <= 3 && rd.NodeRecord != nil:
			t.Fatalf("write %d (%s) handed out a reservation within the last one", i, ev.Chain)
		case i == 4:
			res = reservationOf(t, rd)
			if res.Tick != 3+3 || res.Tock != 3+10 || ev.Chain[0].Tick != 4 {
				t.Fatalf("write 4 (%s): reservation %+v", ev.Chain, res)
			}
		}
	}
	// Restart from a log that lost the last two writes, with the saved
	// reservation: above it, a:3 and a:4 skipped (a:1 and a:2 are known).
	r2 := New(Config{Node: "a", TickReserve: 3, TockReserve: 10})
	if errs := r2.Restore(nil, log[:2], wire.AppendReservation(nil, res)); len(errs) > 0 {
		t.Fatal(errs)
	}
	own := r2.Tree().Node("a")
	if own.Tick() != 6 || own.Skipped().String() != "[[3 7]]" || !own.Missing().IsEmpty() {
		t.Fatalf("after restart: tick %d skipped %s missing %s", own.Tick(), own.Skipped(), own.Missing())
	}
	res2 := reservationOf(t, r2.Ready())
	if res2.Epoch != 2 || res2.Tick != 6+3 || res2.Tock != 13+10 {
		t.Fatalf("reservation after restart %+v", res2)
	}
	ev, _, _ := r2.Set(path("k"), str("after"), tree.Cond{})
	if ev.Chain[0].Tick != 7 || ev.Tock != 14 {
		t.Fatalf("first write after restart: %s tock %d, want a:7 tock 14", ev.Chain, ev.Tock)
	}
	// A node record of another node is refused, not used.
	r3 := New(Config{Node: "b"})
	if errs := r3.Restore(nil, nil, wire.AppendReservation(nil, res)); len(errs) != 1 {
		t.Fatalf("foreign node record: errors %v", errs)
	}
	if r3.Tree().Node("b").Tick() != 0 {
		t.Fatal("foreign node record used")
	}
}

// TestSkipSpreadsAndIsNotMissing: a peer learns the skipped ticks from the
// digest and does not wait for them; a skipped tick it holds still goes
// back to the node that skipped it.
func TestSkipSpreadsAndIsNotMissing(t *testing.T) {
	a := New(Config{Node: "a", TickReserve: 10})
	a.Restore(nil, nil, nil)
	a.Ready()
	b := New(Config{Node: "b"})
	b.Restore(nil, nil, nil)
	b.Ready()
	a.LinkUp(1)
	b.LinkUp(1)
	p := newPair(t, a, b)
	var log [][]byte
	for range 3 {
		a.Set(path("k"), str("v"), tree.Cond{})
	}
	log = append(log, a.Ready().Records[:1]...) // only a:1 reached a's disk
	p.pump(t)
	// a restarts from its disk: a:2, a:3 are on b only.
	a2 := New(Config{Node: "a", TickReserve: 10})
	a2.Restore(nil, log, wire.AppendReservation(nil, a.Reservation()))
	a2.Ready()
	b.LinkDown(1)
	b.LinkUp(1)
	a2.LinkUp(1)
	p2 := newPair(t, a2, b)
	p2.pump(t)
	if got := a2.Tree().Get(path("k")); got == nil || got.Chain().String() != "a:3" {
		t.Fatalf("a's lost write did not come back: %v", got)
	}
	bn := b.Tree().Node("a")
	if !bn.Skipped().Contains(5) || !bn.Missing().IsEmpty() || bn.Tick() != a2.Tree().Node("a").Tick() {
		t.Fatalf("b: a's tick %d skipped %s missing %s", bn.Tick(), bn.Skipped(), bn.Missing())
	}
}

// TestHeadsExchange: two replicas that have seen the same ticks but hold
// different versions (one was told a tick was superseded by a version a
// crash lost) repair it through the heads lists of their digests.
func TestHeadsExchange(t *testing.T) {
	c := New(Config{Node: "c"})
	ev1, _, _ := c.Set(path("k"), str("one"), tree.Cond{})
	ev2, _, _ := c.Set(path("k"), str("two"), tree.Cond{})
	a := New(Config{Node: "a"})
	b := New(Config{Node: "b"})
	a.Import(ev1)
	a.Import(ev2)
	b.Import(ev1)
	b.ImportInfo(nil, map[string]tree.RangeSet{"c": tree.RangeSetOf(tree.Range{Start: 2, End: 3})})
	a.Ready()
	b.Ready()
	a.LinkUp(1)
	b.LinkUp(1)
	p := newPair(t, a, b)
	p.pump(t)
	if p.sent[wire.KindHeads] == 0 {
		t.Fatal("no heads lists were exchanged")
	}
	if dump(a) != dump(b) {
		t.Fatalf("still different:\n%s\nvs\n%s", dump(a), dump(b))
	}
	if got := b.Tree().Get(path("k")).Chain().String(); got != "c:2" {
		t.Fatalf("b holds %s, want c:2", got)
	}
}

// TestVolatileHeartbeat: a node that keeps no data claims nothing seen in
// its heartbeats; others say what they have seen, and must sync first.
func TestVolatileHeartbeat(t *testing.T) {
	for _, volatile := range []bool{false, true} {
		r := New(Config{Node: "a", Volatile: volatile, HeartbeatTicks: 1})
		r.Set(path("k"), str("v"), tree.Cond{})
		r.LinkUp(1)
		r.Ready()
		r.Tick()
		rd := r.Ready()
		if !rd.MustSync {
			t.Errorf("volatile %v: heartbeat without MustSync", volatile)
		}
		var hb wire.Heartbeat
		for _, m := range rd.Messages {
			if m.Kind == wire.KindHeartbeat {
				hb, _ = wire.DecodeHeartbeat(m.Data)
			}
		}
		if (len(hb.Through) == 0) != volatile {
			t.Errorf("volatile %v: heartbeat through %v", volatile, hb.Through)
		}
	}
}
