package wire

import (
	"fmt"
	"strings"
	"testing"

	"github.com/edgekv/edgekv/tree"
)

// benchEvent: a 4-element path, a small value, a 1-link chain.
func benchEvent() tree.Event {
	return tree.Event{
		Path:  tree.Path{tree.Str("home"), tree.Str("kitchen"), tree.Str("temp"), tree.Int(1)},
		Value: str("21.5 C"),
		Chain: tree.Chain{{Node: "board1", Tick: 12345}},
		Tock:  987654,
	}
}

func BenchmarkEncodeUpdate(b *testing.B) {
	ev := benchEvent()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendUpdate(buf[:0], ev)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeUpdate(b *testing.B) {
	msg := AppendUpdate(nil, benchEvent())
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeUpdate(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeInfo(b *testing.B) {
	in := Info{Node: "board1", Tick: 40, Tock: 227, Missing: map[string]tree.RangeSet{}}
	for i := range 4 {
		in.Missing[fmt.Sprintf("board%d", i+2)] = tree.RangeSetOf(tree.Range{Start: 6, End: 9}, tree.Range{Start: 12, End: 13}, tree.Range{Start: 20, End: 41})
	}
	msg := AppendInfo(nil, in)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeInfo(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeDigest(b *testing.B) {
	d := Digest{Node: "board1", Tick: 500, Tock: 10000, Nodes: map[string]NodeDigest{}}
	for i := range 8 {
		d.Nodes[fmt.Sprintf("board%d", i+1)] = NodeDigest{Tick: 500, Known: tree.RangeSetOf(tree.Range{Start: 1, End: 480}, tree.Range{Start: 490, End: 501})}
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDigest(buf[:0], d)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkDecodeUpdateLargeValue is why values alias the input: copying a
// 1 KiB value costs about four times the rest of the decode.
func BenchmarkDecodeUpdateLargeValue(b *testing.B) {
	ev := benchEvent()
	ev.Value = str(strings.Repeat("x", 1024))
	msg := AppendUpdate(nil, ev)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeUpdate(msg); err != nil {
			b.Fatal(err)
		}
	}
}
