package wire

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/edgekv/edgekv/tree"
)

// seedFixtures adds every bus message (and, with dkv, every .dkv file) to f.
func seedFixtures(f *testing.F, dkv bool) {
	dir := fixtureDir(f)
	names, err := filepath.Glob(filepath.Join(dir, "bus-*.bin"))
	if err != nil {
		f.Fatal(err)
	}
	if dkv {
		more, _ := filepath.Glob(filepath.Join(dir, "*.dkv"))
		names = append(names, more...)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// seedTable adds the malformed-table inputs meant for the named decoders.
func seedTable(f *testing.F, decs ...string) {
	for _, b := range malformedSeeds(decs...) {
		f.Add(b)
	}
}

// malformedSeeds rebuilds a few table inputs (the table lives in a test
// function, so the seeds are built here from the same helpers).
func malformedSeeds(decs ...string) [][]byte {
	var out [][]byte
	for _, d := range decs {
		switch d {
		case "update":
			out = append(out, upd(), upd("prev", chainOf(5, 2, "x")), upd("prev", chainOf(63, -1, nil)),
				upd("value", nested(100)), upd("chain", link("b", 1, link("c", 2, nil))), upd("tick", -5),
				upd("prev", link("b", 1, link("a", 1, nil))), append(upd(), 0xc0), nil, []byte{0xdf, 0xff, 0xff, 0xff, 0xff})
		case "info":
			out = append(out, mp("missing", mp("a", []any{[]any{5, 5}}), "node", "n"),
				mp("known", mp("a", []any{1, []any{9, 12}}), "superseded", mp("a", []any{3}), "node", "n", "tick", nil),
				mp("ticks", mp("a", 1, "b", nil), "deleted", mp("c", []any{[]any{1, 3}, 2}), "node_drop", []any{"x"}, "node", "n"))
		case "digest":
			out = append(out, mp("node", "a", "tick", 1, "tock", 1, "nodes", mp("b", mp("tick", 3, "known", []any{[]any{1, 4}}))),
				mp("node", "a", "tick", 1, "tock", 1, "nodes", mp("b", mp("known", []any{}))))
		case "heartbeat":
			out = append(out, mp("node", "a", "tick", 1, "tock", 1, "seq", 1, "through", mp("b", 4)),
				mp("node", "a", "tick", 1, "tock", 1, "seq", 1, "through", mp("b", -1)))
		case "entry":
			out = append(out, mp("chain", link("b", 1, link("c", 2, nil)), "tock", 1, "path", fx, "value", "v"),
				mp("chain", nil, "tock", 1, "path", fx))
		}
	}
	return out
}

var fuzzOpts = append([]cmp.Option{}, cmpOpts...)

// checkErr: a failed decode returns a *wire.Error wrapping tree.ErrMalformed.
func checkErr(t *testing.T, err error) {
	var we *Error
	if !errors.As(err, &we) || !errors.Is(err, tree.ErrMalformed) {
		t.Fatalf("error %T %v is not a *wire.Error wrapping tree.ErrMalformed", err, err)
	}
}

func FuzzDecodeUpdate(f *testing.F) {
	seedFixtures(f, false)
	seedTable(f, "update")
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := DecodeUpdate(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		enc := AppendUpdate(nil, u.Event)
		u2, err := DecodeUpdate(enc)
		if err != nil {
			t.Fatalf("re-encoded update does not decode: %v", err)
		}
		if diff := cmp.Diff(u.Event, u2.Event, fuzzOpts...); diff != "" {
			t.Fatalf("round trip changed the event (-first +second):\n%s", diff)
		}
		if !bytes.Equal(AppendUpdate(nil, u2.Event), enc) {
			t.Fatal("encoding is not stable")
		}
		if e2, err := DecodeEntry(AppendEntry(nil, u.Event)); err != nil || !cmp.Equal(u.Event, e2, fuzzOpts...) {
			t.Fatalf("entry round trip: %v", err)
		}
	})
}

func FuzzDecodeInfo(f *testing.F) {
	seedFixtures(f, false)
	seedTable(f, "info")
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := DecodeInfo(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		in2, err := DecodeInfo(AppendInfo(nil, in))
		if err != nil {
			t.Fatalf("re-encoded info does not decode: %v", err)
		}
		if diff := cmp.Diff(in, in2, fuzzOpts...); diff != "" {
			t.Fatalf("round trip changed the info (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeDigest(f *testing.F) {
	seedTable(f, "digest")
	f.Add(AppendDigest(nil, Digest{Node: "a", Tick: 5, Tock: 9, Nodes: map[string]NodeDigest{
		"a": {Tick: 5, Known: tree.RangeSetOf(tree.Range{Start: 1, End: 6})},
		"b": {Tick: 9, Known: tree.RangeSetOf(tree.Range{Start: 2, End: 3}, tree.Range{Start: 7, End: 10})},
		"c": {Tick: 90, Known: tree.RangeSetOf(tree.Range{Start: 1, End: 3}), Skipped: tree.RangeSetOf(tree.Range{Start: 3, End: 80})},
	}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDigest(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		d2, err := DecodeDigest(AppendDigest(nil, d))
		if err != nil {
			t.Fatalf("re-encoded digest does not decode: %v", err)
		}
		if diff := cmp.Diff(d, d2, fuzzOpts...); diff != "" {
			t.Fatalf("round trip changed the digest (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeHeartbeat(f *testing.F) {
	seedTable(f, "heartbeat")
	f.Add(AppendHeartbeat(nil, Heartbeat{Node: "a", Tick: 1, Tock: 2, Seq: 3, Through: map[string]uint64{"a": 1, "b": 7}}))
	f.Add(AppendHeartbeat(nil, Heartbeat{Node: "a", Tick: 90, Tock: 2, Seq: 3, Through: map[string]uint64{"a": 1},
		Skipped: tree.RangeSetOf(tree.Range{Start: 2, End: 80}), Seen: map[string]tree.RangeSet{"a": tree.RangeSetOf(tree.Range{Start: 80, End: 91})}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, err := DecodeHeartbeat(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		hb2, err := DecodeHeartbeat(AppendHeartbeat(nil, hb))
		if err != nil {
			t.Fatalf("re-encoded heartbeat does not decode: %v", err)
		}
		if diff := cmp.Diff(hb, hb2, fuzzOpts...); diff != "" {
			t.Fatalf("round trip changed the heartbeat (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeEntry(f *testing.F) {
	seedFixtures(f, false)
	seedTable(f, "entry", "update")
	for _, name := range []string{"snapshot-full.dkv"} {
		r := NewDKVReader(readFixture(f, name))
		for {
			rec, err := r.Next()
			if err != nil {
				break
			}
			f.Add(rec.Raw)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		e2, err := DecodeEntry(AppendEntry(nil, e))
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if diff := cmp.Diff(e, e2, fuzzOpts...); diff != "" {
			t.Fatalf("round trip changed the entry (-first +second):\n%s", diff)
		}
	})
}

// FuzzReassembler feeds a stream of concatenated messages to a small
// Reassembler and checks its bounds.
func FuzzReassembler(f *testing.F) {
	dir := fixtureDir(f)
	for _, series := range [][]string{
		{"bus-029-update-chunk.bin", "bus-030-update-chunk.bin", "bus-031-update-chunk.bin"},
		{"bus-2node-017-update-chunk.bin", "bus-2node-049-update-chunk.bin", "bus-2node-019-update-chunk.bin", "bus-2node-050-update-chunk.bin"},
	} {
		var s []byte
		for _, n := range series {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				f.Fatal(err)
			}
			s = append(s, b...)
		}
		f.Add(s)
	}
	f.Add([]byte(strings.Join([]string{string(mp("_p0", "", "_p1", "a", "_p2", 1)), string(mp("_p0", []any{"a", 1, -1, raw{0xc4, 1, 0x80}}))}, "")))
	for _, c := range cutChunks("n", 1, mp("_p0", "", "_p1", "user", "x", 1), 3) {
		f.Add(c)
	}
	const maxSeries, maxBytes = 3, 2048
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReassembler(maxSeries, maxBytes)
		for len(b) > 0 {
			rest, e := skipValue(b, -1)
			if e != nil {
				rest = nil
			}
			msg := b[:len(b)-len(rest)]
			b = rest
			whole, done, err := r.Add(msg)
			if err != nil {
				checkErr(t, err)
			} else if done && whole == nil && len(msg) > 0 {
				t.Fatal("done without a message")
			}
			if r.Pending() > maxSeries || len(r.order) != len(r.series) {
				t.Fatalf("%d series pending (order %d), bound %d", r.Pending(), len(r.order), maxSeries)
			}
			for k, s := range r.series {
				if s.size > maxBytes {
					t.Fatalf("series %v holds %d bytes, bound %d", k, s.size, maxBytes)
				}
			}
		}
	})
}

func FuzzDKVReader(f *testing.F) {
	seedFixtures(f, true)
	seedTable(f, "update", "info", "entry")
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewDKVReader(b)
		for n := 0; ; n++ {
			if n > len(b) {
				t.Fatal("more records than bytes")
			}
			rec, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				checkErr(t, err)
				if _, err2 := r.Next(); err2 != err {
					t.Fatal("error is not sticky")
				}
				return
			}
			switch rec.Kind {
			case RecordState:
				st, err := DecodeState(AppendState(nil, rec.State))
				if err != nil || !cmp.Equal(rec.State, st, fuzzOpts...) {
					t.Fatalf("state round trip: %v\n%s", err, cmp.Diff(rec.State, st, fuzzOpts...))
				}
			case RecordEntry:
				e, err := DecodeEntry(AppendEntry(nil, rec.Event))
				if err != nil || !cmp.Equal(rec.Event, e, fuzzOpts...) {
					t.Fatalf("entry round trip: %v\n%s", err, cmp.Diff(rec.Event, e, fuzzOpts...))
				}
			case RecordEvent:
				u, err := DecodeUpdate(AppendUpdate(nil, rec.Event))
				if err != nil || !cmp.Equal(rec.Event, u.Event, fuzzOpts...) {
					t.Fatalf("event round trip: %v\n%s", err, cmp.Diff(rec.Event, u.Event, fuzzOpts...))
				}
			case RecordInfo:
				if rec.Info.Node == "" {
					break // a {info:{…}} record may omit the node; AppendInfo needs one
				}
				in, err := DecodeInfo(AppendInfo(nil, rec.Info))
				if err != nil || !cmp.Equal(rec.Info, in, fuzzOpts...) {
					t.Fatalf("info round trip: %v\n%s", err, cmp.Diff(rec.Info, in, fuzzOpts...))
				}
			default:
				t.Fatalf("record kind %q", rec.Kind)
			}
		}
	})
}

func FuzzDecodeReservation(f *testing.F) {
	f.Add(AppendReservation(nil, Reservation{Node: "a", Epoch: 3, Tick: 1 << 16, Tock: 1 << 20}))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReservation(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		r2, err := DecodeReservation(AppendReservation(nil, r))
		if err != nil || r2 != r {
			t.Fatalf("round trip: %+v, %v; want %+v", r2, err, r)
		}
	})
}

func FuzzDecodeHeads(f *testing.F) {
	f.Add(AppendHeads(nil, Heads{Node: "a", Reply: true, Nodes: map[string]tree.RangeSet{"b": tree.RangeSetOf(tree.Range{Start: 3, End: 9})}}))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeads(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		h2, err := DecodeHeads(AppendHeads(nil, h))
		if err != nil {
			t.Fatalf("re-encoded heads does not decode: %v", err)
		}
		if diff := cmp.Diff(h, h2, fuzzOpts...); diff != "" {
			t.Fatalf("round trip changed the heads (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeActor(f *testing.F) {
	seedFixtures(f, false)
	for _, m := range []ActorMsg{
		{Type: ActorInit, Node: "a"},
		{Type: ActorVers, Node: "a", Setup: MoaTPing},
		{Type: ActorVers, Node: "a", Setup: ActorSetup{Cycle: 4.5, Gap: 1.5, Nodes: -1}},
		{Type: ActorVers, Setup: ActorSetup{Version: 3, Cycle: 20, Gap: 5, Nodes: 5, Splits: 4, NHosts: 10}},
		{Type: ActorPing, Node: "a", Value: ActorValue{Set: true, Tock: 9, Tick: 2}, History: []string{"a", "b"}},
		{Type: ActorHist, Value: ActorValue{Set: true, Raw: []byte{0x91, 0x01}}, History: []string{"b"}},
	} {
		f.Add(AppendActor(nil, m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeActor(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		enc := AppendActor(nil, m)
		m2, err := DecodeActor(enc)
		if err != nil {
			t.Fatalf("re-encoded actor message does not decode: %v", err)
		}
		if diff := cmp.Diff(m, m2, fuzzOpts...); diff != "" {
			t.Fatalf("round trip changed the message (-first +second):\n%s", diff)
		}
		if !bytes.Equal(AppendActor(nil, m2), enc) {
			t.Fatal("encoding is not stable")
		}
	})
}
