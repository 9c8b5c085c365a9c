package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// TestGoldenBus decodes every captured MoaT-KV bus message by its topic and
// compares it with the decoded one-liner of bus-index.tsv. Originator-shape
// updates and info messages must re-encode byte for byte.
func TestGoldenBus(t *testing.T) {
	files := busIndex(t)
	if len(files) != 117 {
		t.Fatalf("bus-index.tsv lists %d files, want 38+79", len(files))
	}
	// One reassembler per capture, fed in capture order.
	reasm := map[bool]*Reassembler{false: NewReassembler(0, 0), true: NewReassembler(0, 0)}
	var chunkData []byte // hex-decoded chunk payloads of the current series
	counts := map[string]int{}
	for _, f := range files {
		t.Run(f.File, func(t *testing.T) {
			data := readFixture(t, f.File)
			if len(data) != f.Size {
				t.Fatalf("%d bytes, index says %d", len(data), f.Size)
			}
			suffix := strings.TrimPrefix(f.Topic, "moat/kv/")
			kind, ours := KindForTopicSuffix(suffix)
			want := mustPy(t, f.Decoded)
			counts[f.Topic+" "+f.Kind()]++
			switch {
			case ours && kind == KindUpdate && f.Kind() == "chunk":
				if !IsChunk(data) {
					t.Fatal("IsChunk = false")
				}
				p0 := want.(map[string]any)["_p0"].([]any)
				part, err := hex.DecodeString(string(p0[3].(pyBytes)))
				if err != nil {
					t.Fatal(err)
				}
				if p0[2].(int64) == 1 {
					chunkData = nil
				}
				chunkData = append(chunkData, part...)
				r := reasm[strings.HasPrefix(f.File, "bus-2node-")]
				whole, done, err := r.Add(data)
				if err != nil {
					t.Fatal(err)
				}
				if done != (f.Reassembled != "") {
					t.Fatalf("done = %v, index shows reassembled %q", done, f.Reassembled)
				}
				if !done {
					return
				}
				if !bytes.Equal(whole, chunkData) {
					t.Fatalf("reassembled % x\nwant % x", whole, chunkData)
				}
				u, err := DecodeUpdate(whole)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(mustPy(t, f.Reassembled), any(pyOfUpdate(t, u))); diff != "" {
					t.Errorf("reassembled update (-index +decoded):\n%s", diff)
				}
				if got := AppendUpdate(nil, u.Event); !bytes.Equal(got, whole) {
					t.Errorf("re-encoded\n% x\nwant\n% x", got, whole)
				}
			case ours && kind == KindUpdate:
				if IsChunk(data) {
					t.Error("IsChunk = true")
				}
				u, err := DecodeUpdate(data)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, any(pyOfUpdate(t, u))); diff != "" {
					t.Errorf("update (-index +decoded):\n%s", diff)
				}
				recovery := strings.HasPrefix(f.Kind(), "recovery")
				if u.Recovery != recovery {
					t.Errorf("Recovery = %v, want %v", u.Recovery, recovery)
				}
				if del := strings.HasSuffix(f.Kind(), "delete"); u.Event.IsDelete() != del {
					t.Errorf("IsDelete = %v, want %v", u.Event.IsDelete(), del)
				}
				rk, err := RecordKind(data)
				if wantRK := map[bool]string{false: RecordEvent, true: RecordEntry}[recovery]; err != nil || rk != wantRK {
					t.Errorf("RecordKind = %q, %v; want %q", rk, err, wantRK)
				}
				if recovery {
					return
				}
				if got := AppendUpdate(nil, u.Event); !bytes.Equal(got, data) {
					t.Errorf("re-encoded\n% x\nwant\n% x", got, data)
				}
			case ours && kind == KindInfo:
				in, err := DecodeInfo(data)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]any{"node": in.Node, "tick": int64(in.Tick), "tock": int64(in.Tock)}
				if in.Missing != nil {
					got["missing"] = pyOfRangeSetMap(in.Missing)
				}
				if diff := cmp.Diff(want, any(got)); diff != "" {
					t.Errorf("info (-index +decoded):\n%s", diff)
				}
				if re := AppendInfo(nil, in); !bytes.Equal(re, data) {
					t.Errorf("re-encoded\n% x\nwant\n% x", re, data)
				}
				if rk, err := RecordKind(data); err != nil || rk != RecordInfo {
					t.Errorf("RecordKind = %q, %v", rk, err)
				}
			case suffix == "ping" || suffix == "del":
				// asyncactor messages: decoded as such, re-encoded byte for
				// byte, and never taken for an update or a record.
				m, err := DecodeActor(data)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, any(pyOfActor(m))); diff != "" {
					t.Errorf("actor message (-index +decoded):\n%s", diff)
				}
				if re := AppendActor(nil, m); !bytes.Equal(re, data) {
					t.Errorf("re-encoded\n% x\nwant\n% x", re, data)
				}
				counts["actor "+m.Type.String()]++
				if IsChunk(data) {
					t.Error("IsChunk = true")
				}
				if rk, err := RecordKind(data); err == nil {
					t.Errorf("RecordKind = %q, want an error", rk)
				} else if !errors.Is(err, tree.ErrMalformed) {
					t.Errorf("RecordKind error %v does not wrap tree.ErrMalformed", err)
				}
				if _, err := DecodeUpdate(data); err == nil {
					t.Error("DecodeUpdate succeeded")
				}
				if _, err := DecodeInfo(data); err == nil && want.(map[string]any)["node"] == nil {
					t.Error("DecodeInfo succeeded without a node")
				}
				whole, done, err := NewReassembler(1, 1024).Add(data)
				if err != nil || !done || !bytes.Equal(whole, data) {
					t.Errorf("Reassembler.Add = %d bytes, %v, %v; want the message back", len(whole), done, err)
				}
			default:
				t.Fatalf("topic %q: no test", f.Topic)
			}
		})
	}
	for capture, r := range reasm {
		if r.Pending() != 0 || r.Dropped() != 0 {
			t.Errorf("2node=%v: %d series pending, %d dropped", capture, r.Pending(), r.Dropped())
		}
	}
	wantCounts := map[string]int{
		"moat/kv/update set": 42, "moat/kv/update delete": 5, "moat/kv/update chunk": 9,
		"moat/kv/update recovery": 5, "moat/kv/update recovery-delete": 1,
		"moat/kv/info missing": 2,
		"actor init":           6, "actor vers": 6, "actor ping": 41,
	}
	for k, n := range wantCounts {
		if counts[k] != n {
			t.Errorf("%d files of %s, want %d", counts[k], k, n)
		}
	}
}

// pyOfActor rebuilds an actor message's dict.
func pyOfActor(m ActorMsg) map[string]any {
	out := map[string]any{"t": m.Type.String()}
	switch m.Type {
	case ActorInit:
		out["node"] = m.Node
	case ActorVers:
		s := m.Setup
		out["node"] = m.Node
		for k, v := range map[string]int64{"cycle": int64(s.Cycle), "gap": int64(s.Gap), "nodes": s.Nodes,
			"splits": s.Splits, "n_hosts": s.NHosts, "version": s.Version, "force_in": s.ForceIn} {
			out[k] = v
		}
	case ActorPing, ActorHist:
		if m.Type == ActorPing {
			out["node"] = m.Node
		}
		if m.Value.Set {
			out["value"] = []any{int64(m.Value.Tock), int64(m.Value.Tick)}
		} else {
			out["value"] = nil
		}
		h := []any{}
		for _, n := range m.History {
			h = append(h, n)
		}
		out["history"] = h
	}
	return out
}

// dkvWant turns README's one-liner for a .dkv record into the dict the
// decoded record must give: the full path instead of path+depth.
func dkvWant(t *testing.T, line string, prev *pyPath) map[string]any {
	t.Helper()
	m := mustPy(t, line).(map[string]any)
	if p, ok := m["path"]; ok {
		d := int(m["depth"].(int64))
		var full pyPath
		if d == 0 {
			full = p.(pyPath)
		} else {
			full = append(append(pyPath{}, (*prev)[:d]...), p.([]any)...)
		}
		*prev = full
		m["path"] = full
		delete(m, "depth")
	}
	return m
}

// pyOfRecord rebuilds a record's dict (full path, no depth).
func pyOfRecord(t *testing.T, r Record) map[string]any {
	t.Helper()
	switch r.Kind {
	case RecordState:
		return map[string]any{
			"nodes": pyOfTickMap(r.State.Ticks), "known": pyOfRangeSetMap(r.State.Known),
			"deleted": pyOfRangeSetMap(r.State.Deleted), "node": r.State.Node, "tock": int64(r.State.Tock),
		}
	case RecordEntry:
		m := map[string]any{"chain": pyOfChain(r.Event.Chain), "tock": int64(r.Event.Tock), "path": pyOfPath(r.Event.Path)}
		if r.Event.Value != nil {
			m["value"] = pyOf(t, r.Event.Value)
		}
		return m
	case RecordEvent:
		u := Update{Event: r.Event, Sender: r.Event.Chain[0].Node, SenderTick: r.Event.Chain[0].Tick}
		return pyOfUpdate(t, u)
	}
	t.Fatalf("record kind %q", r.Kind)
	return nil
}

func readDKV(t *testing.T, name string) []Record {
	t.Helper()
	r := NewDKVReader(readFixture(t, name))
	var out []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: record %d: %v", name, len(out), err)
		}
		out = append(out, rec)
	}
}

// reencodeDKV re-encodes an entry or event record the way MoaT-KV wrote it:
// the path shortened to depth (plain array unless depth is 0), depth last.
func reencodeDKV(t *testing.T, rec Record, depth int) []byte {
	t.Helper()
	var enc []byte
	if rec.Kind == RecordEntry {
		enc = AppendEntry(nil, rec.Event)
	} else {
		enc = AppendUpdate(nil, rec.Event)
	}
	if depth > 0 {
		full := tree.AppendPath(nil, rec.Event.Path)
		short := tree.AppendPathArray(nil, rec.Event.Path[depth:])
		if bytes.Count(enc, full) != 1 {
			t.Fatalf("path bytes not unique in % x", enc)
		}
		enc = bytes.Replace(enc, full, short, 1)
	}
	enc[0]++ // one more key
	enc = append(enc, "\xa5depth"...)
	return msgp.AppendUint64(enc, uint64(depth))
}

// TestGoldenDKV reads MoaT-KV's save files and compares every record with
// README's decoded listing (full listings for changes.dkv and
// snapshot-full.dkv; the others are checked against snapshot-full.dkv).
// Entry and event records must re-encode byte for byte.
func TestGoldenDKV(t *testing.T) {
	full := readDKV(t, "snapshot-full.dkv")
	tests := []struct {
		file        string
		records     int
		kinds       map[string]int
		listingFull bool
	}{
		{"changes.dkv", 37, map[string]int{RecordState: 2, RecordEvent: 35}, true},
		{"snapshot-full.dkv", 29, map[string]int{RecordState: 1, RecordEntry: 28}, true},
		{"snapshot-data.dkv", 27, map[string]int{RecordState: 1, RecordEntry: 26}, false},
		{"snapshot-ref2-full.dkv", 29, map[string]int{RecordState: 1, RecordEntry: 28}, false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			recs := readDKV(t, tt.file)
			if len(recs) != tt.records {
				t.Fatalf("%d records, want %d", len(recs), tt.records)
			}
			kinds := map[string]int{}
			for _, r := range recs {
				kinds[r.Kind]++
				if k, err := RecordKind(r.Raw); err != nil || k != r.Kind {
					t.Errorf("RecordKind(record at %d) = %q, %v; want %q", r.Offset, k, err, r.Kind)
				}
			}
			if diff := cmp.Diff(tt.kinds, kinds); diff != "" {
				t.Errorf("record kinds (-want +got):\n%s", diff)
			}
			listing := readmeListing(t, tt.file)
			if tt.listingFull && len(listing) != len(recs) {
				t.Fatalf("README lists %d records, file has %d", len(listing), len(recs))
			}
			var prev pyPath
			for i, line := range listing {
				depth := -1
				if d, ok := mustPy(t, line).(map[string]any)["depth"]; ok {
					depth = int(d.(int64))
				}
				want := dkvWant(t, line, &prev)
				if diff := cmp.Diff(want, any(pyOfRecord(t, recs[i]))); diff != "" {
					t.Errorf("record %d (-README +decoded):\n%s", i, diff)
				}
				if depth >= 0 {
					if got := reencodeDKV(t, recs[i], depth); !bytes.Equal(got, recs[i].Raw) {
						t.Errorf("record %d re-encoded\n% x\nwant\n% x", i, got, recs[i].Raw)
					}
				}
			}
			// Every entry and event re-encodes byte for byte, its depth being
			// the number of leading elements shared with the previous path.
			var prevFull tree.Path
			exact := 0
			for i, r := range recs {
				if r.Kind != RecordEntry && r.Kind != RecordEvent {
					continue
				}
				depth := 0
				for depth < len(prevFull) && depth < len(r.Event.Path) && prevFull[depth] == r.Event.Path[depth] {
					depth++
				}
				prevFull = r.Event.Path
				if got := reencodeDKV(t, r, depth); !bytes.Equal(got, r.Raw) {
					t.Errorf("record %d (depth %d) re-encoded\n% x\nwant\n% x", i, depth, got, r.Raw)
				}
				exact++
			}
			if exact != tt.kinds[RecordEntry]+tt.kinds[RecordEvent] {
				t.Errorf("%d records re-encoded", exact)
			}
			switch tt.file {
			case "snapshot-data.dkv":
				// snapshot-full.dkv without the meta tree and another tock.
				var want []Record
				for _, r := range full[1:] {
					if !r.Event.Path.IsMeta() {
						want = append(want, r)
					}
				}
				if diff := cmp.Diff(eventsOf(want), eventsOf(recs[1:])); diff != "" {
					t.Errorf("entries differ from snapshot-full.dkv's data entries:\n%s", diff)
				}
			case "snapshot-ref2-full.dkv":
				// the same entries in another order (meta tree last).
				if diff := cmp.Diff(eventsByPath(full[1:]), eventsByPath(recs[1:])); diff != "" {
					t.Errorf("entries differ from snapshot-full.dkv:\n%s", diff)
				}
				if !recs[len(recs)-1].Event.Path.IsMeta() || recs[1].Event.Path.IsMeta() {
					t.Error("ref2's meta-tree records are not last")
				}
			}
		})
	}
}

func eventsOf(recs []Record) []tree.Event {
	var out []tree.Event
	for _, r := range recs {
		out = append(out, r.Event)
	}
	return out
}

func eventsByPath(recs []Record) map[string]tree.Event {
	out := map[string]tree.Event{}
	for _, r := range recs {
		out[r.Event.Path.String()] = r.Event
	}
	return out
}

// TestGoldenStateRecords checks the state records' range sets tick by tick
// and that AppendState reproduces MoaT-KV's bytes where its node order is
// ours (sorted).
func TestGoldenStateRecords(t *testing.T) {
	tests := []struct {
		file  string
		index int
		want  State
		exact bool
	}{
		{"changes.dkv", 0, State{Node: "ref1", Tock: 9, Ticks: map[string]uint64{"ref1": 1}, Known: map[string]tree.RangeSet{}, Deleted: map[string]tree.RangeSet{}}, true},
		{"changes.dkv", 28, State{Node: "ref1", Tock: 103, Ticks: map[string]uint64{"ref1": 28, "ref2": 0},
			Known:   map[string]tree.RangeSet{"ref1": tree.RangeSetOf(tree.Range{Start: 24, End: 26}, tree.Range{Start: 27, End: 28})},
			Deleted: map[string]tree.RangeSet{"ref1": tree.RangeSetOf(tree.Range{Start: 26, End: 27}, tree.Range{Start: 28, End: 29})}}, true},
		{"snapshot-full.dkv", 0, State{Node: "ref1", Tock: 177, Ticks: map[string]uint64{"ref1": 33, "ref2": 5},
			Known: map[string]tree.RangeSet{"ref1": tree.RangeSetOf(tree.Range{Start: 2, End: 3}, tree.Range{Start: 24, End: 26}, tree.Range{Start: 27, End: 28})},
			Deleted: map[string]tree.RangeSet{
				"ref1": tree.RangeSetOf(tree.Range{Start: 3, End: 4}, tree.Range{Start: 26, End: 27}, tree.Range{Start: 28, End: 29}),
				"ref2": tree.RangeSetOf(tree.Range{Start: 4, End: 5})}}, true},
		{"snapshot-data.dkv", 0, State{Node: "ref1", Tock: 179, Ticks: map[string]uint64{"ref1": 33, "ref2": 5},
			Known: map[string]tree.RangeSet{"ref1": tree.RangeSetOf(tree.Range{Start: 2, End: 3}, tree.Range{Start: 24, End: 26}, tree.Range{Start: 27, End: 28})},
			Deleted: map[string]tree.RangeSet{
				"ref1": tree.RangeSetOf(tree.Range{Start: 3, End: 4}, tree.Range{Start: 26, End: 27}, tree.Range{Start: 28, End: 29}),
				"ref2": tree.RangeSetOf(tree.Range{Start: 4, End: 5})}}, true},
		// ref2 lists itself first: MoaT-KV's dict order, not ours.
		{"snapshot-ref2-full.dkv", 0, State{Node: "ref2", Tock: 175, Ticks: map[string]uint64{"ref1": 33, "ref2": 5},
			Known: map[string]tree.RangeSet{"ref1": tree.RangeSetOf(tree.Range{Start: 2, End: 3}, tree.Range{Start: 24, End: 29})},
			Deleted: map[string]tree.RangeSet{
				"ref1": tree.RangeSetOf(tree.Range{Start: 3, End: 4}, tree.Range{Start: 26, End: 27}, tree.Range{Start: 28, End: 29}),
				"ref2": tree.RangeSetOf(tree.Range{Start: 4, End: 5})}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+strconv.Itoa(tt.index), func(t *testing.T) {
			rec := readDKV(t, tt.file)[tt.index]
			if rec.Kind != RecordState {
				t.Fatalf("kind %q", rec.Kind)
			}
			if diff := cmp.Diff(tt.want, rec.State, cmpOpts...); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			st, err := DecodeState(rec.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, st, cmpOpts...); diff != "" {
				t.Errorf("DecodeState (-want +got):\n%s", diff)
			}
			if got := AppendState(nil, st); bytes.Equal(got, rec.Raw) != tt.exact {
				t.Errorf("re-encoding equal = %v, want %v\n% x\n% x", !tt.exact, tt.exact, got, rec.Raw)
			}
		})
	}
}
