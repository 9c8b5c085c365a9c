package replica

import (
	"testing"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// fuzzReplica returns a replica with a little state and one shared link
// up (MoaT-KV's ping group runs on it).
func fuzzReplica() *Replica {
	r := New(Config{Node: "a"})
	r.LinkUpShared(1)
	r.Set(path("k"), str("v"), tree.Cond{})
	r.Set(path("k.sub"), str("w"), tree.Cond{})
	r.Delete(path("k.sub"), tree.Cond{})
	r.Ready()
	return r
}

// FuzzStep feeds arbitrary bytes as every message kind: Step must never
// panic, and when it returns an error nothing may have changed.
func FuzzStep(f *testing.F) {
	ev := tree.Event{Path: path("x.y"), Value: str("ok"), Chain: tree.Chain{{Node: "b", Tick: 1}}, Tock: 4}
	up := wire.AppendUpdate(nil, ev)
	seeds := map[wire.Kind][]byte{
		wire.KindUpdate:    up,
		wire.KindBatch:     wire.AppendBatch(nil, [][]byte{up}),
		wire.KindInfo:      wire.AppendInfo(nil, wire.Info{Node: "b", Missing: map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 1, End: 4})}}),
		wire.KindHello:     wire.AppendHello(nil, wire.Hello{Proto: ProtoVersion, Node: "b"}),
		wire.KindDigest:    wire.AppendDigest(nil, wire.Digest{Node: "b", Nodes: map[string]wire.NodeDigest{"a": {Tick: 1, Known: tree.RangeSetOf(tree.Range{Start: 1, End: 2})}}}),
		wire.KindHeartbeat: wire.AppendHeartbeat(nil, wire.Heartbeat{Node: "b", Tick: 9, Seq: 1, Through: map[string]uint64{"a": 3}}),
		wire.KindPing:      wire.AppendActor(nil, wire.ActorMsg{Type: wire.ActorPing, Node: "b", Value: wire.ActorValue{Set: true, Tock: 9, Tick: 3}, History: []string{"b", "c"}}),
	}
	f.Add(uint8(wire.KindInfo), wire.AppendInfo(nil, wire.Info{Node: "b", Deleted: map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 1, End: 4})}, NodeDrop: []string{"a", "b"}}))
	f.Add(uint8(wire.KindPing), wire.AppendActor(nil, wire.ActorMsg{Type: wire.ActorHist, Value: wire.ActorValue{Set: true, Tock: 1, Tick: 1}, History: []string{"a"}}))
	for k, b := range seeds {
		f.Add(uint8(k), b)
		f.Add(uint8(k), b[:len(b)/2])
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		r := fuzzReplica()
		before := dump(r)
		err := r.Step(1, wire.Kind(kind), data)
		if err != nil {
			if got := dump(r); got != before {
				t.Fatalf("failed Step changed state: %v\n%s", err, got)
			}
			if rd := r.Ready(); len(rd.Records) > 0 || len(rd.Changes) > 0 {
				t.Fatalf("failed Step produced records or changes: %v", err)
			}
		}
		r.Tick()
		r.Ready()
	})
}

// FuzzRestore feeds arbitrary records to Restore: it must never panic, and
// a replica restored from garbage still accepts writes.
func FuzzRestore(f *testing.F) {
	r := fuzzReplica()
	var snap [][]byte
	r.SnapshotRecords(func(b []byte) error { snap = append(snap, b); return nil })
	res := wire.AppendReservation(nil, wire.Reservation{Node: "a", Epoch: 2, Tick: 70, Tock: 900})
	for _, s := range snap {
		f.Add(s, []byte{recEvent}, res)
	}
	f.Add([]byte{recKnown, 0x80}, []byte{recTicks, 0x81, 0xa1, 'x', 0x01}, []byte{0x80})
	f.Add([]byte{recSkip, 0x80}, []byte{recTicks, 0x81, 0xa1, 'x', 0x01}, []byte(nil))
	f.Fuzz(func(t *testing.T, a, b, nodeRec []byte) {
		n := New(Config{Node: "a"})
		n.Restore([][]byte{a}, [][]byte{b, a}, nodeRec)
		rd := n.Ready()
		if rd.NodeRecord == nil {
			t.Fatal("Restore handed out no reservation")
		}
		ev, _, err := n.Set(path("after"), str("x"), tree.Cond{})
		if err != nil {
			t.Fatalf("write after restore: %v", err)
		}
		if res, err := wire.DecodeReservation(rd.NodeRecord); err != nil || ev.Chain[0].Tick > res.Tick || ev.Tock > res.Tock {
			t.Fatalf("write %s tock %d outside the reservation %+v (%v)", ev.Chain, ev.Tock, res, err)
		}
	})
}
