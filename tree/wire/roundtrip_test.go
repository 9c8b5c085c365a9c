package wire

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// longChain returns a chain of n links n0:1, n1:2, ….
func longChain(n int) tree.Chain {
	c := make(tree.Chain, n)
	for i := range c {
		c[i] = tree.Link{Node: fmt.Sprintf("n%d", i), Tick: uint64(i + 1)}
	}
	return c
}

func mapValue() []byte {
	b := msgp.AppendMapHeader(nil, 2)
	b = msgp.AppendString(b, "a")
	b = msgp.AppendArrayHeader(b, 3)
	b = msgp.AppendInt64(b, -1000)
	b = msgp.AppendFloat64(b, 2.5)
	b = msgp.AppendBytes(b, []byte{0, 1})
	b = msgp.AppendString(b, "t")
	return append(b, 0xd6, 0xff, 0, 0, 0, 1) // timestamp, ext -1
}

func eventCases(t *testing.T) []struct {
	name string
	ev   tree.Event
} {
	meta := ev(t, ":n.actor.del", str("x"), 9, "a", 1)
	if !meta.Path.IsMeta() {
		t.Fatal("meta path is not meta")
	}
	elems := tree.Event{
		Path:  tree.Path{tree.Str("fx"), tree.Int(-1), tree.Int(1 << 40), tree.Float(1.5), tree.Bool(true), tree.Bytes([]byte{1, 2})},
		Value: str("elements"), Chain: tree.Chain{{Node: "a", Tick: 3}}, Tock: 1,
	}
	bigExt := append([]byte{0xc7, 9, 2}, bytes.Repeat([]byte{0xff}, 9)...) // MoaT's ext 2: a 72-bit integer
	return []struct {
		name string
		ev   tree.Event
	}{
		{"set", ev(t, "fx.str", str("hello"), 12, "ref1", 2)},
		{"delete", ev(t, "fx.tmp", nil, 84, "ref1", 26)},
		{"stored nil", ev(t, "fx.nil", []byte{0xc0}, 36, "ref1", 10)},
		{"root path", ev(t, ":", str("Testing"), 3, "ref1", 1)},
		{"meta path", meta},
		{"meta delete", tree.Event{Path: meta.Path, Chain: meta.Chain, Tock: 10}},
		{"typed elements", elems},
		{"map value", ev(t, "a.b.c.d", mapValue(), 5, "x", 9, "y", 3)},
		{"bigint ext value", ev(t, "big", bigExt, 5, "x", 9)},
		{"two links", ev(t, "fx.str", str("v"), 119, "ref2", 3, "ref1", 2)},
		{"delete with links", ev(t, "fx.int", nil, 122, "ref2", 4, "ref1", 3, "ref3", 7)},
		{"64 links", tree.Event{Path: tree.Path{tree.Str("long")}, Value: str("v"), Chain: longChain(64), Tock: 1000}},
		{"huge numbers", tree.Event{Path: tree.Path{tree.Str("n")}, Value: str("v"),
			Chain: tree.Chain{{Node: "a", Tick: tree.MaxCounter}, {Node: strings.Repeat("b", 255), Tick: 1 << 32}}, Tock: tree.MaxCounter}},
	}
}

func TestUpdateRoundTrip(t *testing.T) {
	for _, tt := range eventCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendUpdate([]byte("prefix"), tt.ev)
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatal("prefix lost")
			}
			u, err := DecodeUpdate(b[len("prefix"):])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.ev, u.Event, cmpOpts...); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
			want := Update{Event: tt.ev, Sender: tt.ev.Chain[0].Node, SenderTick: tt.ev.Chain[0].Tick}
			if diff := cmp.Diff(want, u, cmpOpts...); diff != "" {
				t.Errorf("update (-want +got):\n%s", diff)
			}
			if u.Event.IsDelete() != (tt.ev.Value == nil) {
				t.Error("deletion not preserved")
			}
			// Entry records carry the same event.
			e, err := DecodeEntry(AppendEntry(nil, tt.ev))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.ev, e, cmpOpts...); diff != "" {
				t.Errorf("entry (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUpdateTruncatedChain: a chain longer than MaxChainLinks is cut, and
// the last link written has no prev key (MoaT's "truncated" mark).
func TestUpdateTruncatedChain(t *testing.T) {
	e := tree.Event{Path: tree.Path{tree.Str("x")}, Value: str("v"), Chain: longChain(70), Tock: 5}
	for name, b := range map[string][]byte{"update": AppendUpdate(nil, e), "entry": AppendEntry(nil, e)} {
		var got tree.Event
		var err error
		if name == "update" {
			var u Update
			u, err = DecodeUpdate(b)
			got = u.Event
		} else {
			got, err = DecodeEntry(b)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(e.Chain[:MaxChainLinks], got.Chain); diff != "" {
			t.Errorf("%s: chain (-want +got):\n%s", name, diff)
		}
		if n := bytes.Count(b, []byte(kPrev)); n != MaxChainLinks-1 {
			t.Errorf("%s: %d prev keys, want %d", name, n, MaxChainLinks-1)
		}
	}
}

func TestAppendUpdatePanicsWithoutChain(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	AppendUpdate(nil, tree.Event{Path: tree.Path{tree.Str("x")}, Value: str("v")})
}

// recoveryMsg builds MoaT's recovery shape by hand, in its key order.
func recoveryMsg(value []byte, chain tree.Chain, tock uint64, path tree.Path, node string, tick uint64) []byte {
	n := uint32(5)
	if value != nil {
		n++
	}
	b := msgp.AppendMapHeader(nil, n)
	if value != nil {
		b = append(b, kValue...)
		b = append(b, value...)
	}
	b = append(b, kChain...)
	b = AppendChain(b, chain, MaxChainLinks)
	b = append(b, kTock...)
	b = msgp.AppendUint64(b, tock)
	b = append(b, kPath...)
	b = tree.AppendPath(b, path)
	b = append(b, kNode...)
	b = msgp.AppendString(b, node)
	b = append(b, kTick...)
	return msgp.AppendUint64(b, tick)
}

func TestUpdateRecoveryShape(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want Update
	}{
		{
			name: "set",
			msg:  recoveryMsg(str("v"), tree.Chain{{Node: "ref1", Tick: 40}, {Node: "ref2", Tick: 3}}, 223, tree.Path{tree.Str("fx"), tree.Str("str")}, "ref1", 40),
			want: Update{Event: tree.Event{Path: tree.Path{tree.Str("fx"), tree.Str("str")}, Value: str("v"),
				Chain: tree.Chain{{Node: "ref1", Tick: 40}, {Node: "ref2", Tick: 3}}, Tock: 223}, Sender: "ref1", SenderTick: 40, Recovery: true},
		},
		{
			name: "delete sent by another node",
			msg:  recoveryMsg(nil, tree.Chain{{Node: "ref2", Tick: 8}, {Node: "ref1", Tick: 34}}, 221, tree.Path{tree.Str("fx")}, "ref3", 99),
			want: Update{Event: tree.Event{Path: tree.Path{tree.Str("fx")}, Chain: tree.Chain{{Node: "ref2", Tick: 8}, {Node: "ref1", Tick: 34}}, Tock: 221},
				Sender: "ref3", SenderTick: 99, Recovery: true},
		},
		{
			name: "chain wins over prev",
			msg: func() []byte {
				b := recoveryMsg(str("v"), tree.Chain{{Node: "a", Tick: 1}}, 2, tree.Path{}, "s", 5)
				b[0]++
				b = append(b, kPrev...)
				return AppendChain(b, tree.Chain{{Node: "zz", Tick: 9}}, 5)
			}(),
			want: Update{Event: tree.Event{Path: tree.Path{}, Value: str("v"), Chain: tree.Chain{{Node: "a", Tick: 1}}, Tock: 2},
				Sender: "s", SenderTick: 5, Recovery: true},
		},
		{
			name: "nil sender tick",
			msg: func() []byte {
				b := recoveryMsg(str("v"), tree.Chain{{Node: "a", Tick: 1}}, 2, tree.Path{}, "s", 5)
				return append(b[:len(b)-1], 0xc0)
			}(),
			want: Update{Event: tree.Event{Path: tree.Path{}, Value: str("v"), Chain: tree.Chain{{Node: "a", Tick: 1}}, Tock: 2},
				Sender: "s", Recovery: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := DecodeUpdate(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, u, cmpOpts...); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestUpdateKeyOrder: keys in any order and unknown keys (of any type,
// including non-string keys) are fine.
func TestUpdateKeyOrder(t *testing.T) {
	want := ev(t, "a.b", str("v"), 7, "n", 3, "m", 1)
	b := msgp.AppendMapHeader(nil, 9)
	b = append(b, kTock...)
	b = msgp.AppendUint64(b, 7)
	b = msgp.AppendInt(b, 42) // non-string key
	b = msgp.AppendString(b, "ignored")
	b = append(b, kPrev...)
	b = append(b, 0x84, 0xa5, 'e', 'x', 't', 'r', 'a', 0x91, 0x90) // unknown key first, nested containers
	b = append(b, kPrev...)
	b = append(b, 0xc0)
	b = append(b, kTick...)
	b = msgp.AppendInt64(b, 1) // signed form of a positive int
	b = append(b, kNode...)
	b = msgp.AppendString(b, "m")
	b = append(b, kValue...)
	b = append(b, str("v")...)
	b = msgp.AppendString(b, "future")
	b = msgp.AppendMapHeader(b, 1)
	b = msgp.AppendString(b, "x")
	b = msgp.AppendNil(b)
	b = append(b, kPath...)
	b = tree.AppendPathArray(b, want.Path) // plain array accepted
	b = append(b, kNode...)
	b = msgp.AppendString(b, "n")
	b = append(b, kTick...)
	b = append(b, 0xd3, 0, 0, 0, 0, 0, 0, 0, 3) // int64 form
	b = msgp.AppendString(b, "sender_extra")
	b = msgp.AppendString(b, "x")
	u, err := DecodeUpdate(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, u.Event, cmpOpts...); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestInfoRoundTrip(t *testing.T) {
	rs := func(r ...tree.Range) tree.RangeSet { return tree.RangeSetOf(r...) }
	tests := []struct {
		name string
		in   Info
	}{
		{"minimal", Info{Node: "a"}},
		{"missing", Info{Node: "ref2", Tick: 8, Tock: 225, Missing: map[string]tree.RangeSet{"ref1": rs(tree.Range{Start: 38, End: 41})}}},
		{"everything", Info{Node: "n", Tick: 1, Tock: 2,
			Ticks:    map[string]uint64{"a": 5, "b": 0, "c": tree.MaxCounter},
			Missing:  map[string]tree.RangeSet{"a": rs(tree.Range{Start: 1, End: 2}, tree.Range{Start: 4, End: 9})},
			Known:    map[string]tree.RangeSet{"a": rs(tree.Range{Start: 2, End: 3}), "b": rs(tree.Range{Start: 1, End: 1 << 40})},
			Deleted:  map[string]tree.RangeSet{"c": rs(tree.Range{Start: 7, End: 8})},
			NodeDrop: []string{"old1", "old2"},
			Skipped:  map[string]tree.RangeSet{"n": rs(tree.Range{Start: 3, End: 99})}}},
		{"many nodes", func() Info {
			in := Info{Node: "n", Ticks: map[string]uint64{}}
			for i := range 40 {
				in.Ticks[fmt.Sprintf("node%02d", i)] = uint64(i)
			}
			return in
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendInfo(nil, tt.in)
			got, err := DecodeInfo(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.in, got, cmpOpts...); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !bytes.Equal(AppendInfo(nil, got), b) {
				t.Error("encoding is not deterministic")
			}
		})
	}
}

func TestInfoSuperseded(t *testing.T) {
	// MoaT-KV may say superseded instead of known; both at once: the union.
	b := msgp.AppendMapHeader(nil, 3)
	b = msgp.AppendString(b, "superseded")
	b = msgp.AppendMapHeader(b, 1)
	b = msgp.AppendString(b, "a")
	b = AppendRangeSet(b, tree.RangeSetOf(tree.Range{Start: 1, End: 3}))
	b = msgp.AppendString(b, "known")
	b = msgp.AppendMapHeader(b, 1)
	b = msgp.AppendString(b, "a")
	b = AppendRangeSet(b, tree.RangeSetOf(tree.Range{Start: 5, End: 6}))
	b = append(b, kNode...)
	b = msgp.AppendString(b, "n")
	in, err := DecodeInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 1, End: 3}, tree.Range{Start: 5, End: 6})}
	if diff := cmp.Diff(want, in.Known, cmpOpts...); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if bytes.Contains(AppendInfo(nil, in), []byte("superseded")) {
		t.Error("encoder wrote superseded")
	}
}

func TestRangeSetEncoding(t *testing.T) {
	tests := []struct {
		name  string
		enc   []byte
		ticks []int64
		canon []byte // AppendRangeSet of the decoded set; nil = enc
	}{
		{"empty", []byte{0x90}, nil, nil},
		{"moat example", []byte{0x92, 0x02, 0x92, 0x04, 0x07}, []int64{2, 4, 5, 6}, nil},
		{"singles", []byte{0x92, 0x01, 0x03}, []int64{1, 3}, nil},
		{"pair of two", []byte{0x93, 0x02, 0x92, 0x18, 0x1a, 0x1b}, []int64{2, 24, 25, 27}, nil},
		{"uint8 form", []byte{0x91, 0x92, 0xcc, 0xc8, 0xcc, 0xcb}, []int64{200, 201, 202}, nil},
		{"unsorted", []byte{0x93, 0x09, 0x92, 0x01, 0x03, 0x05}, []int64{1, 2, 5, 9}, []byte{0x93, 0x92, 0x01, 0x03, 0x05, 0x09}},
		{"overlapping and adjacent", []byte{0x94, 0x92, 0x01, 0x05, 0x92, 0x03, 0x08, 0x08, 0x92, 0x09, 0x0a}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9},
			[]byte{0x91, 0x92, 0x01, 0x0a}},
		{"pair of one", []byte{0x91, 0x92, 0x04, 0x05}, []int64{4}, []byte{0x91, 0x04}},
		{"signed forms", []byte{0x91, 0x92, 0xd0, 0x04, 0xd3, 0, 0, 0, 0, 0, 0, 0, 0x06}, []int64{4, 5}, []byte{0x91, 0x92, 0x04, 0x06}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rest, err := ReadRangeSet(append(tt.enc, 0xc0))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rest, []byte{0xc0}) {
				t.Errorf("rest % x", rest)
			}
			if diff := cmp.Diff(tt.ticks, ticksOfSet(s)); diff != "" {
				t.Errorf("ticks (-want +got):\n%s", diff)
			}
			canon := tt.canon
			if canon == nil {
				canon = tt.enc
			}
			if got := AppendRangeSet(nil, s); !bytes.Equal(got, canon) {
				t.Errorf("AppendRangeSet = % x, want % x", got, canon)
			}
		})
	}
}

func TestHelloDigestHeartbeatRoundTrip(t *testing.T) {
	h := Hello{Proto: Proto, Node: "a", Tick: 3, Tock: 1 << 33}
	if got, err := DecodeHello(AppendHello(nil, h)); err != nil || got != h {
		t.Errorf("hello: %+v, %v", got, err)
	}
	digests := []Digest{
		{Node: "a", Tick: 0, Tock: 0, Nodes: map[string]NodeDigest{}},
		{Node: "a", Tick: 5, Tock: 99, Nodes: map[string]NodeDigest{
			"a": {Tick: 5, Known: tree.RangeSetOf(tree.Range{Start: 1, End: 6})},
			"b": {Tick: 9, Known: tree.RangeSetOf(tree.Range{Start: 1, End: 3}, tree.Range{Start: 7, End: 8})},
			"c": {Tick: 2},
			"d": {Tick: 70, Known: tree.RangeSetOf(tree.Range{Start: 1, End: 4}), Skipped: tree.RangeSetOf(tree.Range{Start: 4, End: 69})},
		}},
	}
	for i, d := range digests {
		got, err := DecodeDigest(AppendDigest(nil, d))
		if err != nil {
			t.Fatalf("digest %d: %v", i, err)
		}
		if diff := cmp.Diff(d, got, cmpOpts...); diff != "" {
			t.Errorf("digest %d (-want +got):\n%s", i, diff)
		}
	}
	hbs := []Heartbeat{
		{Node: "a", Tick: 1, Tock: 2, Seq: 3},
		{Node: "a", Tick: 1, Tock: 2, Seq: 7<<32 | 5, Through: map[string]uint64{"a": 1, "b": 0, "c": 1000}},
		{Node: "a", Tick: 900, Tock: 2, Seq: 9, Through: map[string]uint64{"a": 10},
			Skipped: tree.RangeSetOf(tree.Range{Start: 11, End: 800}),
			Seen:    map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 800, End: 901}), "b": tree.RangeSetOf(tree.Range{Start: 7, End: 9})}},
		{Node: "a", Tick: 900, Tock: 2, Seq: 9, Skipped: tree.RangeSetOf(tree.Range{Start: 11, End: 800})},
	}
	for i, hb := range hbs {
		got, err := DecodeHeartbeat(AppendHeartbeat(nil, hb))
		if err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
		if diff := cmp.Diff(hb, got, cmpOpts...); diff != "" {
			t.Errorf("heartbeat %d (-want +got):\n%s", i, diff)
		}
	}
}

func TestHeadsRoundTrip(t *testing.T) {
	for _, h := range []Heads{
		{Node: "a", Nodes: map[string]tree.RangeSet{}},
		{Node: "a", Reply: true, Nodes: map[string]tree.RangeSet{"b": tree.RangeSetOf(tree.Range{Start: 3, End: 9}), "c": {}}},
	} {
		got, err := DecodeHeads(AppendHeads(nil, h))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(h, got, cmpOpts...); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	}
	for _, bad := range [][]byte{{0x80}, AppendHeads(nil, Heads{Node: "a"})[:5], {0x83, 0xa4, 'n', 'o', 'd', 'e', 0xa1, 'a', 0xa5, 'r', 'e', 'p', 'l', 'y', 0x01, 0xa5, 'n', 'o', 'd', 'e', 's', 0x80}} {
		if _, err := DecodeHeads(bad); err == nil {
			t.Errorf("DecodeHeads(%x) accepted", bad)
		}
	}
}

func TestDigestHeadsHash(t *testing.T) {
	d := Digest{Node: "a", Nodes: map[string]NodeDigest{"b": {Tick: 1, Known: tree.RangeSetOf(tree.Range{Start: 1, End: 2}), Heads: 1<<64 - 1}}}
	got, err := DecodeDigest(AppendDigest(nil, d))
	if err != nil || got.Nodes["b"].Heads != 1<<64-1 {
		t.Fatalf("heads hash of 2^64-1: %+v, %v", got.Nodes["b"], err)
	}
}

func TestBatchRoundTrip(t *testing.T) {
	var ups [][]byte
	var evs []tree.Event
	for _, tt := range eventCases(t) {
		ups = append(ups, AppendUpdate(nil, tt.ev))
		evs = append(evs, tt.ev)
	}
	for _, n := range []int{0, 1, len(ups)} {
		b := AppendBatch(nil, ups[:n])
		got, err := DecodeBatch(b)
		if err != nil {
			t.Fatalf("%d updates: %v", n, err)
		}
		if len(got) != n {
			t.Fatalf("%d elements, want %d", len(got), n)
		}
		for i, g := range got {
			if !bytes.Equal(g, ups[i]) {
				t.Errorf("element %d differs", i)
			}
			u, err := DecodeUpdate(g)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(evs[i], u.Event, cmpOpts...); diff != "" {
				t.Errorf("element %d (-want +got):\n%s", i, diff)
			}
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	tests := []State{
		{Node: "a", Tock: 1},
		{Node: "a", Tock: 177, Epoch: 3,
			Ticks:   map[string]uint64{"a": 33, "b": 5},
			Known:   map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 2, End: 3}, tree.Range{Start: 24, End: 26})},
			Deleted: map[string]tree.RangeSet{"b": tree.RangeSetOf(tree.Range{Start: 4, End: 5})}},
		{Node: "a", Tock: 17, Skipped: map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 2, End: 30})}},
	}
	for i, st := range tests {
		b := AppendState(nil, st)
		got, err := DecodeState(b)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if diff := cmp.Diff(st, got, cmpOpts...); diff != "" {
			t.Errorf("%d (-want +got):\n%s", i, diff)
		}
		if k, err := RecordKind(b); err != nil || k != RecordState {
			t.Errorf("%d: RecordKind = %q, %v", i, k, err)
		}
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		k      Kind
		name   string
		suffix string
	}{
		{KindUpdate, "update", "update"},
		{KindInfo, "info", "info"},
		{KindHello, "hello", "edgekv/hello"},
		{KindDigest, "digest", "edgekv/digest"},
		{KindHeartbeat, "heartbeat", "edgekv/heartbeat"},
		{KindBatch, "batch", "edgekv/batch"},
		{KindHeads, "heads", "edgekv/heads"},
		{KindPing, "ping", "ping"},
	}
	for _, tt := range tests {
		if tt.k.String() != tt.name || tt.k.TopicSuffix() != tt.suffix || !tt.k.Valid() {
			t.Errorf("%d: %q %q", tt.k, tt.k.String(), tt.k.TopicSuffix())
		}
		if k, ok := KindForTopicSuffix(tt.suffix); !ok || k != tt.k {
			t.Errorf("KindForTopicSuffix(%q) = %v, %v", tt.suffix, k, ok)
		}
	}
	for _, s := range []string{"", "del", "hello", "edgekv/", "update/", "run"} {
		if k, ok := KindForTopicSuffix(s); ok {
			t.Errorf("KindForTopicSuffix(%q) = %v", s, k)
		}
	}
	if Kind(0).Valid() || Kind(0).String() != "kind(0)" || Kind(9).TopicSuffix() != "" {
		t.Error("invalid kinds")
	}
}

func TestRecordKind(t *testing.T) {
	e := ev(t, "a", str("v"), 1, "n", 1)
	del := ev(t, "a", nil, 2, "n", 2)
	info := AppendInfo(nil, Info{Node: "n", Ticks: map[string]uint64{"n": 1}})
	wrapped := append([]byte{0x81, 0xa4, 'i', 'n', 'f', 'o'}, info...)
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"state", AppendState(nil, State{Node: "n", Tock: 1}), RecordState},
		{"entry", AppendEntry(nil, e), RecordEntry},
		{"tombstone entry", AppendEntry(nil, del), RecordEntry},
		{"event", AppendUpdate(nil, e), RecordEvent},
		{"deletion event", AppendUpdate(nil, del), RecordEvent},
		{"bare info", info, RecordInfo},
		{"wrapped info", wrapped, RecordInfo},
		{"node_drop info", AppendInfo(nil, Info{Node: "n", NodeDrop: []string{"x"}}), RecordInfo},
		{"actor vers (nodes is an int)", []byte{0x83, 0xa1, 't', 0xa4, 'v', 'e', 'r', 's', 0xa5, 'n', 'o', 'd', 'e', 's', 0x05, 0xa4, 'n', 'o', 'd', 'e', 0xa1, 'x'}, ""},
		{"hello", AppendHello(nil, Hello{Proto: 1, Node: "n"}), ""},
		{"not a map", []byte{0x90}, ""},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RecordKind(tt.b)
			if tt.want == "" {
				if err == nil {
					t.Errorf("= %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestDKVReader covers what the golden files do not: wrapped info records,
// edgekv's own records (no depth), empty suffixes and a full path as a plain
// array.
func TestDKVReader(t *testing.T) {
	withDepth := func(b []byte, depth int, p tree.Path) []byte {
		if depth > 0 {
			b = bytes.Replace(b, tree.AppendPath(nil, p), tree.AppendPathArray(nil, p[depth:]), 1)
		}
		b[0]++
		b = append(b, "\xa5depth"...)
		return msgp.AppendUint64(b, uint64(depth))
	}
	e1 := ev(t, "a.b.c", str("1"), 5, "n", 1)
	e2 := ev(t, "a.b.d", str("2"), 6, "n", 2)
	e3 := ev(t, "a.b.d", nil, 7, "n", 3)
	e4 := ev(t, "x", str("4"), 8, "n", 4, "m", 1)
	info := Info{Node: "n", Known: map[string]tree.RangeSet{"m": tree.RangeSetOf(tree.Range{Start: 1, End: 2})}}
	s := AppendState(nil, State{Node: "n", Tock: 1, Ticks: map[string]uint64{"n": 4}})
	s = append(s, withDepth(AppendUpdate(nil, e1), 0, e1.Path)...)
	s = append(s, withDepth(AppendEntry(nil, e2), 2, e2.Path)...)
	s = append(s, append([]byte{0x81, 0xa4, 'i', 'n', 'f', 'o'}, AppendInfo(nil, info)...)...)
	s = append(s, withDepth(AppendUpdate(nil, e3), 3, e3.Path)...) // empty suffix, after an info record
	s = append(s, AppendEntry(nil, e4)...)                         // no depth
	arr := bytes.Replace(AppendEntry(nil, e1), tree.AppendPath(nil, e1.Path), tree.AppendPathArray(nil, e1.Path), 1)
	s = append(s, arr...) // full path as plain array
	want := []Record{
		{Kind: RecordState, State: State{Node: "n", Tock: 1, Ticks: map[string]uint64{"n": 4}}},
		{Kind: RecordEvent, Event: e1},
		{Kind: RecordEntry, Event: e2},
		{Kind: RecordInfo, Info: info},
		{Kind: RecordEvent, Event: e3},
		{Kind: RecordEntry, Event: e4},
		{Kind: RecordEntry, Event: e1},
	}
	r := NewDKVReader(s)
	var got []Record
	off := 0
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Offset != off {
			t.Errorf("record %d at %d, want %d", len(got), rec.Offset, off)
		}
		off += len(rec.Raw)
		rec.Raw, rec.Offset = nil, 0
		got = append(got, rec)
	}
	if off != len(s) {
		t.Errorf("read %d of %d bytes", off, len(s))
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
