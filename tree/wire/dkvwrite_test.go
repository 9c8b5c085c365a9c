package wire

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// TestDKVWriterRoundTrip: records written with DKVWriter read back with
// DKVReader to the same events, paths un-shortened.
func TestDKVWriterRoundTrip(t *testing.T) {
	p := func(els ...tree.Elem) tree.Path { return tree.Path(els) }
	evs := []tree.Event{
		{Path: p(), Value: msgp.AppendString(nil, "root"), Chain: tree.Chain{{Node: "a", Tick: 1}}, Tock: 1},
		{Path: p(tree.Str("fx"), tree.Str("str")), Value: msgp.AppendString(nil, "hello"), Chain: tree.Chain{{Node: "a", Tick: 2}, {Node: "b", Tick: 7}}, Tock: 5},
		{Path: p(tree.Str("fx"), tree.Str("ints"), tree.Int(123)), Value: msgp.AppendInt(nil, 1), Chain: tree.Chain{{Node: "a", Tick: 3}}, Tock: 6},
		{Path: p(tree.Str("fx"), tree.Str("ints"), tree.Int(-1)), Value: msgp.AppendNil(nil), Chain: tree.Chain{{Node: "a", Tick: 4}}, Tock: 7},
		{Path: p(tree.Str("gone")), Chain: tree.Chain{{Node: "b", Tick: 9}}, Tock: 9},
	}
	var w DKVWriter
	b := AppendState(nil, State{Node: "a", Tock: 9, Ticks: map[string]uint64{"a": 4, "b": 9}})
	for _, ev := range evs {
		b = w.AppendEntry(b, ev)
	}
	r := NewDKVReader(b)
	rec, err := r.Next()
	if err != nil || rec.Kind != RecordState || rec.State.Ticks["b"] != 9 {
		t.Fatalf("state record: %+v %v", rec, err)
	}
	for i, want := range evs {
		rec, err := r.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i+1, err)
		}
		if diff := cmp.Diff(want, rec.Event); diff != "" {
			t.Fatalf("record %d differs (-want +got):\n%s", i+1, diff)
		}
	}
}
