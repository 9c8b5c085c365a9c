package wire

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// cutChunks cuts msg into MoaT-KV 0.70 chunk messages of partLen bytes.
func cutChunks(node string, seq int, msg []byte, partLen int) [][]byte {
	var out [][]byte
	for i := 1; len(msg) > 0; i++ {
		n := min(partLen, len(msg))
		idx := i
		if n == len(msg) {
			idx = -i
		}
		out = append(out, mp("_p0", []any{node, seq, idx, raw(msgp.AppendBytes(nil, msg[:n]))}))
		msg = msg[n:]
	}
	return out
}

func bigUpdate(t *testing.T, node string, n int) []byte {
	return AppendUpdate(nil, ev(t, "fx.big", str(string(bytes.Repeat([]byte{'x'}, n))), 75, node, 23))
}

func TestReassemblerOrders(t *testing.T) {
	msg := bigUpdate(t, "ref1", 1024)
	chunks := cutChunks("ref1", 1, msg, 431)
	if len(chunks) != 3 {
		t.Fatalf("%d chunks", len(chunks))
	}
	for _, order := range [][]int{{0, 1, 2}, {1, 2, 0}, {2, 1, 0}, {2, 0, 1}} {
		r := NewReassembler(4, 1<<16)
		for n, i := range order {
			in := bytes.Clone(chunks[i])
			whole, done, err := r.Add(in)
			clear(in) // the reassembler must have copied what it keeps
			if err != nil {
				t.Fatalf("order %v: %v", order, err)
			}
			if last := n == len(order)-1; done != last {
				t.Fatalf("order %v: chunk %d: done = %v", order, i, done)
			}
			if done && !bytes.Equal(whole, msg) {
				t.Fatalf("order %v: reassembled message differs", order)
			}
		}
		if r.Pending() != 0 || r.Dropped() != 0 {
			t.Errorf("order %v: pending %d, dropped %d", order, r.Pending(), r.Dropped())
		}
	}
}

func TestReassemblerSeries(t *testing.T) {
	a := bigUpdate(t, "a", 300)
	b := bigUpdate(t, "b", 500)
	ca := cutChunks("a", 7, a, 100)
	cb := cutChunks("b", 7, b, 100)

	t.Run("interleaved", func(t *testing.T) {
		r := NewReassembler(2, 1<<16)
		var got [][]byte
		for i := range max(len(ca), len(cb)) {
			for _, c := range [][][]byte{ca, cb} {
				if i < len(c) {
					whole, done, err := r.Add(c[i])
					if err != nil {
						t.Fatal(err)
					}
					if done {
						got = append(got, whole)
					}
				}
			}
		}
		if diff := cmp.Diff([][]byte{a, b}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("oldest dropped when full", func(t *testing.T) {
		r := NewReassembler(2, 1<<16)
		c3 := cutChunks("c", 1, a, 100)
		for _, first := range [][]byte{ca[0], cb[0], c3[0]} {
			if _, done, err := r.Add(first); err != nil || done {
				t.Fatal(done, err)
			}
		}
		if r.Pending() != 2 || r.Dropped() != 1 {
			t.Fatalf("pending %d, dropped %d; want 2, 1", r.Pending(), r.Dropped())
		}
		for _, rest := range [][][]byte{cb[1:], c3[1:]} {
			var whole []byte
			for _, c := range rest {
				w, done, err := r.Add(c)
				if err != nil {
					t.Fatal(err)
				}
				if done {
					whole = w
				}
			}
			if whole == nil {
				t.Error("series did not complete")
			}
		}
	})

	t.Run("byte bound", func(t *testing.T) {
		r := NewReassembler(2, 3*(100+chunkOverhead))
		var err error
		for _, c := range cb {
			if _, _, err = r.Add(c); err != nil {
				break
			}
		}
		if err == nil {
			t.Fatal("no error for a series over the byte bound")
		}
		if r.Pending() != 0 || r.Dropped() != 1 {
			t.Errorf("pending %d, dropped %d; want 0, 1", r.Pending(), r.Dropped())
		}
	})

	t.Run("sender restarted its sequence", func(t *testing.T) {
		r := NewReassembler(2, 1<<16)
		old := cutChunks("a", 1, b, 100)
		for _, c := range old[:2] {
			if _, _, err := r.Add(c); err != nil {
				t.Fatal(err)
			}
		}
		var whole []byte
		for _, c := range cutChunks("a", 1, a, 100) {
			w, done, err := r.Add(c)
			if err != nil {
				t.Fatal(err)
			}
			if done {
				whole = w
			}
		}
		if !bytes.Equal(whole, a) {
			t.Error("restarted series did not reassemble the new message")
		}
		if r.Dropped() != 1 || r.Pending() != 0 {
			t.Errorf("pending %d, dropped %d; want 0, 1", r.Pending(), r.Dropped())
		}
	})

	t.Run("chunk after the last", func(t *testing.T) {
		r := NewReassembler(2, 1<<16)
		if _, _, err := r.Add(mp("_p0", []any{"a", 1, -2, raw{0xc4, 1, 0x80}})); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.Add(mp("_p0", []any{"a", 1, 3, raw{0xc4, 1, 0x80}})); err == nil {
			t.Error("no error")
		}
		if r.Pending() != 0 || r.Dropped() != 1 {
			t.Errorf("pending %d, dropped %d; want 0, 1", r.Pending(), r.Dropped())
		}
	})
}

func TestReassemblerEscape(t *testing.T) {
	tests := []struct {
		name     string
		in, want []byte
	}{
		{"not escaped", mp("node", "a", "x", 1), mp("node", "a", "x", 1)},
		{"escaped", mp("_p0", "", "_p1", "user0", "_p2", "user1", "x", 1), mp("_p0", "user0", "_p1", "user1", "x", 1)},
		{"escape only", mp("_p0", ""), mp()},
		{"gap stops the shift", mp("_p0", "", "_p1", "u0", "_p3", "u3"), mp("_p0", "u0", "_p3", "u3")},
		{"not p keys", mp("_p0", "", "_p1", "u0", "_p01", 1, "_px", 2), mp("_p0", "u0", "_p01", 1, "_px", 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if IsChunk(tt.in) {
				t.Error("IsChunk = true")
			}
			whole, done, err := NewReassembler(1, 1024).Add(tt.in)
			if err != nil || !done {
				t.Fatal(done, err)
			}
			if !bytes.Equal(whole, tt.want) {
				t.Errorf("got % x\nwant % x", whole, tt.want)
			}
		})
	}
	t.Run("chunked escaped update", func(t *testing.T) {
		// An update carrying a user key _p0, escaped as MoaT-KV does (the
		// old _p0 moves to the new key _p1, appended last), then cut.
		e := ev(t, "fx.big", str(string(bytes.Repeat([]byte{'z'}, 600))), 9, "n", 4)
		orig := AppendUpdate(nil, e)
		orig[0]++
		orig = append(orig, mp("_p0", "user")[1:]...)
		esc := bytes.Replace(orig, mp("_p0", "user")[1:], mp("_p0", "")[1:], 1)
		esc[0]++
		esc = append(esc, mp("_p1", "user")[1:]...)
		r := NewReassembler(1, 1<<16)
		var whole []byte
		for _, c := range cutChunks("n", 3, esc, 250) {
			w, done, err := r.Add(c)
			if err != nil {
				t.Fatal(err)
			}
			if done {
				whole = w
			}
		}
		if !bytes.Equal(whole, orig) {
			t.Errorf("got % x\nwant % x", whole, orig)
		}
		u, err := DecodeUpdate(whole)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(e, u.Event, cmpOpts...); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("pass-through aliases", func(t *testing.T) {
		in := AppendUpdate(nil, ev(t, "a", str("v"), 1, "n", 1))
		whole, done, err := NewReassembler(1, 1024).Add(in)
		if err != nil || !done || &whole[0] != &in[0] {
			t.Error("a plain message is not returned as is")
		}
	})
}

func TestIsChunk(t *testing.T) {
	for name, tt := range map[string]struct {
		b    []byte
		want bool
	}{
		"chunk":         {mp("_p0", []any{"a", 1, 1, raw{0xc4, 0}}), true},
		"chunk later":   {mp("x", 1, "_p0", []any{}), true},
		"escape":        {mp("_p0", ""), false},
		"update":        {AppendUpdate(nil, tree.Event{Path: tree.Path{}, Chain: tree.Chain{{Node: "a", Tick: 1}}}), false},
		"not a map":     {[]byte{0x91, 0x90}, false},
		"empty":         {nil, false},
		"truncated map": {[]byte{0x82, 0xa3, '_', 'p', '0'}, false},
	} {
		if got := IsChunk(tt.b); got != tt.want {
			t.Errorf("%s: IsChunk = %v", name, got)
		}
	}
}
