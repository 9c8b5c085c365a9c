package kvproto

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// TestGoldenWatchItem: a watch data message as MoaT-KV 0.70.22 sent it
// (moatkv-wire.md (f)): {'value': 'hello', 'tock': 6150, 'path': ['a'],
// 'depth': 0, 'seq': 7, 'wseq': 2}.
func TestGoldenWatchItem(t *testing.T) {
	want, err := hex.DecodeString(strings.ReplaceAll("86 a5 76 61 6c 75 65 a5 68 65 6c 6c 6f a4 74 6f 63 6b cd 18 06 a4 70 61 74 68 91 a1 61 a5 64 65 70 74 68 00 a3 73 65 71 07 a4 77 73 65 71 02", " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	it := WatchItem{Path: tree.Path{tree.Str("cap"), tree.Str("a")}, Value: msgp.AppendString(nil, "hello"), Tock: 6150}
	got := appendWatchItem(nil, it, tree.Path{tree.Str("a")}, 0, 0, 7, 2)
	if string(got) != string(want) {
		t.Fatalf("watch item\n got %x\nwant %x", got, want)
	}
}

// TestGoldenWatchStates: {'state': 'start', 'seq': 1, 'wseq': 1, 'tock':
// 6146} and {'state': 'uptodate', 'seq': 1, 'wseq': 2, 'tock': 6148}
// (moatkv-wire.md (b)).
func TestGoldenWatchStates(t *testing.T) {
	for _, tc := range []struct {
		state      string
		wseq, tock uint64
		hex        string
	}{
		{"start", 1, 6146, "84 a5 73 74 61 74 65 a5 73 74 61 72 74 a3 73 65 71 01 a4 77 73 65 71 01 a4 74 6f 63 6b cd 18 02"},
		{"uptodate", 2, 6148, "84 a5 73 74 61 74 65 a8 75 70 74 6f 64 61 74 65 a3 73 65 71 01 a4 77 73 65 71 02 a4 74 6f 63 6b cd 18 04"},
	} {
		want, _ := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
		if got := appendState(nil, tc.state, 1, tc.wseq, tc.tock); string(got) != string(want) {
			t.Errorf("%s\n got %x\nwant %x", tc.state, got, want)
		}
	}
}

func TestParseWatchArgs(t *testing.T) {
	raw := msgp.AppendMapHeader(nil, 4)
	raw = msgp.AppendString(raw, "fetch")
	raw = msgp.AppendBool(raw, true)
	raw = msgp.AppendString(raw, "max_depth")
	raw = msgp.AppendInt(raw, 2)
	raw = msgp.AppendString(raw, "min_depth")
	raw = msgp.AppendInt(raw, 1)
	raw = msgp.AppendString(raw, "other")
	raw = msgp.AppendArrayHeader(raw, 0)
	a, err := parseWatchArgs(raw)
	if err != nil || !a.fetch || a.maxDepth != 2 || a.minDepth != 1 {
		t.Fatalf("got %+v, %v", a, err)
	}
	bad := msgp.AppendMapHeader(nil, 1)
	bad = msgp.AppendString(bad, "max_depth")
	bad = msgp.AppendString(bad, "deep")
	if _, err := parseWatchArgs(bad); err == nil {
		t.Fatal("a string max_depth was accepted")
	}
}
