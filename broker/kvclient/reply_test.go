package kvclient

import (
	"testing"

	"github.com/tinylib/msgp/msgp"
)

func TestParseReply(t *testing.T) {
	b := msgp.AppendMapHeader(nil, 4)
	b = msgp.AppendString(b, "value")
	b = msgp.AppendString(b, "hello")
	b = msgp.AppendString(b, "chain")
	b = msgp.AppendMapHeader(b, 3)
	b = msgp.AppendString(b, "node")
	b = msgp.AppendString(b, "ref1")
	b = msgp.AppendString(b, "tick")
	b = msgp.AppendUint64(b, 2008)
	b = msgp.AppendString(b, "prev")
	b = msgp.AppendNil(b)
	b = msgp.AppendString(b, "tock")
	b = msgp.AppendUint64(b, 6150)
	b = msgp.AppendString(b, "seq")
	b = msgp.AppendUint64(b, 4)
	r, err := parseReply(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.chain()
	if err != nil || len(c) != 1 || c[0].Node != "ref1" || c[0].Tick != 2008 {
		t.Fatalf("chain %v %v", c, err)
	}
	if seq, ok := r.uint("seq"); !ok || seq != 4 {
		t.Fatalf("seq %d %v", seq, ok)
	}
	if _, err := parseReply([]byte{0x92, 0x01}); err == nil {
		t.Fatal("an array was taken as a reply")
	}
}

// FuzzParseReply: the reply parser and the chain decoder never panic.
func FuzzParseReply(f *testing.F) {
	f.Add([]byte{0x81, 0xa3, 's', 'e', 'q', 0x01})
	f.Add([]byte{0x81, 0xa5, 'c', 'h', 'a', 'i', 'n', 0x81, 0xa4, 'p', 'r', 'e', 'v', 0x81})
	f.Add([]byte{0x81, 0xa4, 'a', 'u', 't', 'h', 0x92, 0xc0, 0xa1, 'p'})
	f.Add([]byte{0x82, 0xa1, 'v', 0x01, 0xa1, 'v', 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseReply(b)
		if err != nil {
			return
		}
		r.chain()
		r.err()
		r.uint("seq")
		r.str("node")
		for _, f := range r { // every key read can be found again
			if v, ok := r.get(f.k); !ok || &v[0] != &f.v[0] {
				t.Fatalf("key %q not found again in %v", f.k, r)
			}
		}
		if auth, err := r.auth(); err == nil && auth != nil && len(auth) > len(b) {
			t.Fatalf("%d auth methods from %d bytes", len(auth), len(b))
		}
	})
}

// A repeated key counts once, with its last value, as in a map.
func TestParseReplyRepeatedKey(t *testing.T) {
	r, err := parseReply([]byte{0x83, 0xa1, 'v', 0x01, 0xa3, 's', 'e', 'q', 0x07, 0xa1, 'v', 0x02})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := r.get("v"); !ok || len(v) != 1 || v[0] != 0x02 {
		t.Fatalf("v = % x %v, want 02", v, ok)
	}
	if seq, ok := r.uint("seq"); !ok || seq != 7 {
		t.Fatalf("seq = %d %v", seq, ok)
	}
	if len(r) != 2 {
		t.Fatalf("%d fields, want 2", len(r))
	}
}
