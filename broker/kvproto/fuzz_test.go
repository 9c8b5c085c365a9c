package kvproto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
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
			if !isMapLead(m[0]) {
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
// hangs: every action's argument parsing, the root state and the stream
// set-up meet the input.
func FuzzServe(f *testing.F) {
	seedCorpus(f)
	f.Add(req("action", "root", "path", tree.Path{tree.Str("a")}, "seq", 1))
	f.Add(req("action", "enum_node", "node", "ref1", "max", 3, "current", true, "seq", 2))
	f.Add(req("action", "test_acl", "path", tree.Path{tree.Str("a")}, "mode", "w", "seq", 3))
	f.Add(req("action", "msg_send", "topic", ":a", "data", 1, "seq", 4))
	f.Add(req("action", "get_tree", "path", tree.Path{}, "seq", 5))
	f.Add(req("action", "stop", "task", 5, "seq", 6))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &rwc{r: bytes.NewReader(append(AppendQLenReply(nil, 10), in...))}
		s := &Server{Tree: newFakeTree("ref1", 2007, 6144), MaxMessage: 1 << 16}
		done := make(chan error, 1)
		go func() { done <- s.ServeConn(context.Background(), c) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ServeConn did not return after the input ended")
		}
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
			out = rest
		}
	})
}
