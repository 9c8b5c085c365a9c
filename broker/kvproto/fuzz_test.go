package kvproto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

func seedCorpus(f *testing.F) {
	for _, b := range loadWire(f) {
		f.Add(b)
	}
	f.Add([]byte{0x82, 0xa3, 's', 'e', 'q', 0x01, 0xa6, 'n', 'c', 'h', 'a', 'i', 'n', 0xc2})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add(bytes.Repeat([]byte{0x81, 0xa1, 'k'}, 50))
	f.Add([]byte{0x81, 0xa5, 'c', 'h', 'a', 'i', 'n', 0x82, 0xa4, 'n', 'o', 'd', 'e', 0xa1, 'x', 0xa4, 't', 'i', 'c', 'k', 0x01})
}

// FuzzReader: any byte stream splits into well-formed maps or ends in a
// clean error; it never panics.
func FuzzReader(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 1<<16)
		total := 0
		for {
			m, err := r.Next()
			if err != nil {
				var fe *FrameError
				switch {
				case errors.Is(err, io.EOF):
					if total != len(in) {
						t.Fatalf("EOF after %d of %d bytes", total, len(in))
					}
				case errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &fe):
				default:
					t.Fatalf("unexpected error %v", err)
				}
				if _, err2 := r.Next(); err2 != err {
					t.Fatalf("error not sticky: %v then %v", err, err2)
				}
				return
			}
			if wire.Describe(m) != "map" {
				t.Fatalf("message is not a map: % x", m)
			}
			if rest, err := msgp.Skip(m); err != nil || len(rest) != 0 {
				t.Fatalf("message % x: msgp.Skip: %v, %d left", m, err, len(rest))
			}
			if !bytes.Equal(m, in[total:total+len(m)]) {
				t.Fatalf("message is not the input's bytes")
			}
			total += len(m)
			ParseRequest(m)
		}
	})
}

// FuzzParseRequest: any input parses or fails with a *RequestError; it
// never panics, and what parses is consistent.
func FuzzParseRequest(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := ParseRequest(in)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is %T", err, err)
			}
			if re.HasSeq && re.Seq > MaxSeq {
				t.Fatalf("seq %d above MaxSeq", re.Seq)
			}
			return
		}
		if req.Seq > MaxSeq || req.NChain < -1 || req.NChain > MaxChainLinks {
			t.Fatalf("bad request %+v", req)
		}
		if req.Value != nil {
			if rest, err := msgp.Skip(req.Value); err != nil || len(rest) != 0 {
				t.Fatalf("value % x is not one msgpack item", req.Value)
			}
		}
		if req.HasChain {
			if err := req.Chain.Check(); err != nil {
				t.Fatal(err)
			}
		}
		if req.HasPath && req.Path.Check() != nil {
			t.Fatalf("bad path %v", req.Path)
		}
	})
}

// rwc is a connection whose client sends in and then closes its side.
type rwc struct {
	r  *bytes.Reader
	mu sync.Mutex
	w  bytes.Buffer
}

func (c *rwc) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *rwc) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}
func (c *rwc) Close() error { return nil }

// FuzzServe: a connection that sends any bytes after the greeting's
// answer gets well-formed replies, and the server neither panics nor
// hangs. It serves fuzzTree, which supports every optional interface, so
// that every action's argument parsing, the root state and the stream
// set-up meet the input; the seeds are a typical use of each action
// (serveSeeds).
func FuzzServe(f *testing.F) {
	seedCorpus(f)
	for _, sd := range serveSeeds() {
		f.Add(sd.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		serveInput(t, in)
	})
}

// serveInput serves in (after the answer to the greeting) on a fresh
// fuzzTree until the input ends, checks that ServeConn returns and that
// every reply is a map with seq or error, and returns the replies after
// the greeting.
func serveInput(t *testing.T, in []byte) [][]byte {
	t.Helper()
	c := &rwc{r: bytes.NewReader(append(AppendQLenReply(nil, 10), in...))}
	s := &Server{Tree: newFuzzTree(), MaxMessage: 1 << 16}
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), c) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("ServeConn did not return after the input ended")
	}
	var replies [][]byte
	out := c.w.Bytes()
	for len(out) > 0 {
		n, rest, err := msgp.ReadMapHeaderBytes(out)
		if err != nil {
			t.Fatalf("reply % x is not a map: %v", out, err)
		}
		keys := map[string]bool{}
		for range n {
			var k string
			if k, rest, err = msgp.ReadStringBytes(rest); err != nil {
				t.Fatalf("reply key in % x: %v", out, err)
			}
			keys[k] = true
			if rest, err = msgp.Skip(rest); err != nil {
				t.Fatalf("reply value of %q in % x: %v", k, out, err)
			}
		}
		if !keys["seq"] && !keys["error"] {
			t.Fatalf("reply % x has neither seq nor error", out[:len(out)-len(rest)])
		}
		replies = append(replies, out[:len(out)-len(rest)])
		out = rest
	}
	if len(replies) == 0 {
		t.Fatal("not even a greeting")
	}
	return replies[1:]
}

// serveSeed is one input of FuzzServe: requests of one connection, in
// order. Seqs are distinct within a seed: a request that reuses the seq
// of one still running is refused, and is not what a seed shows.
type serveSeed struct {
	name    string
	in      []byte
	streams []uint64 // seqs of streams, which the end of the input may cut before they answer
}

// serveSeeds returns a typical use of every action the server knows.
// Requests of one connection run concurrently, so a request that depends
// on an earlier one (get by tick after a set) may find nothing.
func serveSeeds() []serveSeed {
	pA := tree.Path{tree.Str("a")}
	pAB := tree.Path{tree.Str("a"), tree.Str("b")}
	pMeta := tree.Path{tree.Str("acl"), tree.Str("x")}
	all := func(ms ...[]byte) []byte { return bytes.Join(ms, nil) }
	setA := req("action", "set_value", "path", pA, "value", 1, "seq", 1)
	setAB := req("action", "set_value", "path", pAB, "value", "x", "seq", 2)
	update := wire.AppendUpdate(nil, tree.Event{Path: tree.Path{tree.Str("u"), tree.Int(3)}, Value: msgp.AppendInt(nil, 7),
		Chain: chainOf("ref2", 5, "ref3", 3), Tock: 7000})
	info := wire.AppendInfo(nil, wire.Info{Node: "ref2", Ticks: map[string]uint64{"ref2": 9, "ref3": 4},
		Known: map[string]tree.RangeSet{"ref2": tree.RangeSetOf(tree.Range{Start: 1, End: 4})}})
	return []serveSeed{
		{name: "get_value", in: all(setA, req("action", "get_value", "path", pA, "nchain", -1, "seq", 2))},
		{name: "get_value missing", in: req("action", "get_value", "path", tree.Path{tree.Str("zz")}, "nchain", 2, "seq", 1)},
		{name: "get_value plain-array path", in: req("action", "get_value", "path", strs("a", "b"), "seq", 1)},
		{name: "get_value by tick", in: all(setA, req("action", "get_value", "node", "ref1", "tick", 2008, "nchain", 2, "seq", 2))},
		{name: "set_value", in: req("action", "set_value", "path", pAB, "value", req("k", "v", "n", 1), "nchain", 3, "seq", 1)},
		{name: "set_value new only", in: req("action", "set_value", "path", pA, "value", true, "chain", nil, "seq", 1)},
		{name: "set_value with chain", in: all(setA, req("action", "set_value", "path", pA, "value", 2,
			"chain", req("node", "ref1", "tick", 2008, "prev", nil), "nchain", 2, "seq", 2))},
		{name: "set_value with prev and idem", in: all(setA, req("action", "set_value", "path", pA, "value", 1, "prev", 1, "idem", true, "seq", 2))},
		{name: "delete_value", in: all(setA, req("action", "delete_value", "path", pA, "nchain", 1, "seq", 2))},
		{name: "delete_value missing", in: req("action", "delete_value", "path", pA, "chain", nil, "seq", 1)},
		{name: "get_tree", in: all(setA, setAB, req("action", "get_tree", "path", tree.Path{}, "min_depth", 1, "max_depth", 3,
			"nchain", 1, "empty", true, "seq", 3)), streams: []uint64{3}},
		{name: "watch", in: all(setA, req("action", "watch", "path", pA, "fetch", true, "min_depth", 0, "max_depth", 2, "nchain", 1, "seq", 3),
			setAB, req("seq", 3, "state", "ack", "ack", 3), req("action", "stop", "task", 3, "seq", 4)), streams: []uint64{3}},
		{name: "watch without fetch", in: all(req("action", "watch", "path", tree.Path{}, "seq", 1), setAB), streams: []uint64{1}},
		{name: "enum", in: all(setA, setAB, req("action", "enum", "path", tree.Path{}, "with_data", true, "empty", true, "seq", 3))},
		{name: "enumerate", in: all(setAB, req("action", "enumerate", "path", pA, "seq", 3))},
		{name: "delete_tree", in: all(setA, setAB, req("action", "delete_tree", "path", pA, "seq", 3))},
		{name: "get_state", in: all(setA, req("action", "get_state", "nodes", true, "known", true, "present", true,
			"deleted", true, "missing", true, "seq", 2))},
		{name: "get_tock", in: req("action", "get_tock", "seq", 1)},
		{name: "enum_node", in: all(setA, req("action", "enum_node", "node", "ref1", "max", 3, "current", true, "seq", 2))},
		{name: "test_acl", in: req("action", "test_acl", "path", pA, "mode", "w", "seq", 1)},
		{name: "root", in: all(setAB, req("action", "root", "path", pA, "nchain", 2, "seq", 3),
			req("action", "get_value", "path", tree.Path{tree.Str("b")}, "seq", 4),
			req("action", "get_value", "node", "ref1", "tick", 2008, "seq", 5),
			req("action", "get_tree", "path", tree.Path{}, "seq", 6)), streams: []uint64{6}},
		{name: "stop", in: req("action", "stop", "task", 5, "seq", 6)},
		{name: "msg_send data", in: req("action", "msg_send", "topic", ":a", "data", req("t", 1), "seq", 1)},
		{name: "msg_send raw", in: req("action", "msg_send", "topic", strs("x", "y"), "raw", msgp.AppendBytes(nil, []byte{1, 2}), "seq", 1)},
		{name: "msg_monitor", in: all(req("action", "msg_monitor", "topic", "x.#", "raw", false, "seq", 1),
			req("action", "msg_send", "topic", strs("x", "y"), "data", "hi", "seq", 2),
			req("action", "stop", "task", 1, "seq", 3)), streams: []uint64{1}},
		{name: "save", in: req("action", "save", "path", "snap.dkv", "full", true, "seq", 1)},
		{name: "update", in: extend(update, "action", "update", "seq", 1)},
		{name: "fake_info", in: extend(info, "action", "fake_info", "seq", 1)},
		{name: "internal", in: all(req("action", "set_internal", "path", pMeta, "value", 1, "seq", 1),
			req("action", "get_internal", "path", pMeta, "seq", 2),
			req("action", "enum_internal", "path", tree.Path{tree.Str("acl")}, "seq", 3),
			req("action", "get_tree_internal", "path", tree.Path{}, "seq", 4),
			req("action", "delete_internal", "path", pMeta, "seq", 5)), streams: []uint64{4}},
	}
}

// extend adds key/value pairs (as req takes them) to the map m.
func extend(m []byte, kv ...any) []byte {
	n, body, err := msgp.ReadMapHeaderBytes(m)
	if err != nil {
		panic(err)
	}
	more := req(kv...)
	k, extra, err := msgp.ReadMapHeaderBytes(more)
	if err != nil {
		panic(err)
	}
	b := msgp.AppendMapHeader(nil, n+k)
	return append(append(b, extra...), body...)
}

// TestServeSeeds: each of FuzzServe's seeds is served by fuzzTree without
// an error that would mean its action was not reached or its typical
// arguments were refused (kinds invalid, unavailable, internal), and
// every request that is not a stream is answered.
func TestServeSeeds(t *testing.T) {
	for _, sd := range serveSeeds() {
		t.Run(sd.name, func(t *testing.T) {
			want := map[uint64]bool{}
			for in := sd.in; len(in) > 0; {
				rest, err := msgp.Skip(in)
				if err != nil {
					t.Fatal(err)
				}
				r, err := ParseRequest(in[:len(in)-len(rest)])
				if err != nil {
					t.Fatalf("seed request: %v", err)
				}
				if r.Action != "" && !slices.Contains(sd.streams, r.Seq) {
					want[r.Seq] = true
				}
				in = rest
			}
			for _, b := range serveInput(t, sd.in) {
				m := decodeExt(t, b)
				if kind, ok := m["kind"].(string); ok && kind != "not found" && kind != "conflict" {
					t.Errorf("error reply: %v", m)
				}
				if seq, ok := m["seq"].(int64); ok {
					delete(want, uint64(seq))
				}
			}
			if len(want) > 0 {
				t.Errorf("no reply to the requests with seq %v", want)
			}
		})
	}
}
