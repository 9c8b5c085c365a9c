package kvproto

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// req builds a request map from key/raw-value pairs, in order.
func req(kv ...any) []byte {
	b := msgp.AppendMapHeader(nil, uint32(len(kv)/2))
	for i := 0; i+1 < len(kv); i += 2 {
		b = msgp.AppendString(b, kv[i].(string))
		switch v := kv[i+1].(type) {
		case []byte:
			b = append(b, v...)
		case string:
			b = msgp.AppendString(b, v)
		case int:
			b = msgp.AppendInt(b, v)
		case bool:
			b = msgp.AppendBool(b, v)
		case tree.Path:
			b = tree.AppendPath(b, v)
		case nil:
			b = msgp.AppendNil(b)
		default:
			panic("req: unsupported type")
		}
	}
	return b
}

// decode turns a reply into a map for assertions (paths stay raw ext).
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	v, _, err := msgp.ReadMapStrIntfBytes(b, nil)
	if err != nil {
		t.Fatalf("decode % x: %v", b, err)
	}
	return v
}

func start(t *testing.T) (*conn, *fakeTree) {
	ft := newFakeTree("ref1", 2007, 6144)
	c := dial(t, ft)
	c.recv() // greeting
	c.send(AppendQLenReply(nil, 10))
	return c, ft
}

var pa = tree.Path{tree.Str("cap"), tree.Str("a")}

func TestSetOverwriteReturnsPrevAndChain(t *testing.T) {
	c, _ := start(t)
	c.send(req("path", pa, "value", "hello", "nchain", 0, "action", "set_value", "seq", 1))
	c.recv()
	c.send(req("path", pa, "value", "changed", "nchain", 3, "action", "set_value", "seq", 2))
	got := c.recv()
	// {changed: true, prev: "hello", chain: {node: ref1, tick: 2009, prev: nil}, tock, seq: 2}
	want := req("changed", true, "prev", "hello", "chain", AppendChain(nil, chainOf("ref1", 2009), 3), "tock", []byte{0xcd, 0x18, 0x03}, "seq", 2)
	if !bytes.Equal(got, want) {
		t.Errorf("got  % x\nwant % x", got, want)
	}
	// With a chain condition prev is not returned; a stale chain conflicts.
	c.send(req("path", pa, "value", "x", "chain", AppendChain(nil, chainOf("ref1", 2008), 1), "action", "set_value", "seq", 3))
	m := decode(t, c.recv())
	if m["kind"] != "conflict" || m["seq"] != int64(3) || m["error"] == nil {
		t.Errorf("stale chain: %v", m)
	}
	c.send(req("path", pa, "value", "x", "chain", AppendChain(nil, chainOf("ref1", 2009), 1), "action", "set_value", "seq", 4))
	m = decode(t, c.recv())
	if m["changed"] != true || m["prev"] != nil || m["chain"] == nil {
		t.Errorf("chain condition: %v", m)
	}
	// chain: None means "must not exist".
	c.send(req("path", pa, "value", "y", "chain", nil, "action", "set_value", "seq", 5))
	if m := decode(t, c.recv()); m["kind"] != "conflict" {
		t.Errorf("chain None on existing entry: %v", m)
	}
}

func TestDeleteAndGetNChainBool(t *testing.T) {
	c, _ := start(t)
	c.send(req("path", pa, "value", "hello", "action", "set_value", "seq", 1))
	c.recv()
	// The MoaT-KV CLI's get sends nchain: False.
	c.send(req("path", pa, "nchain", false, "action", "get_value", "seq", 2))
	if m := decode(t, c.recv()); m["value"] != "hello" || m["chain"] != nil {
		t.Errorf("get nchain false: %v", m)
	}
	c.send(req("path", pa, "nchain", 1, "action", "delete_value", "seq", 3))
	m := decode(t, c.recv())
	if m["changed"] != true || m["prev"] != "hello" || m["chain"] == nil {
		t.Errorf("delete: %v", m)
	}
	c.send(req("path", pa, "nchain", true, "action", "get_value", "seq", 4))
	m = decode(t, c.recv())
	if _, ok := m["value"]; ok || m["chain"] == nil {
		t.Errorf("get tombstone: %v", m)
	}
	c.send(req("path", pa, "action", "delete_value", "seq", 5))
	if m := decode(t, c.recv()); m["changed"] != false || m["error"] != nil {
		t.Errorf("delete missing: %v", m)
	}
}

func TestErrorReplies(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		kind string
		text string
	}{
		{"unknown action", req("action", "frobnicate", "seq", 7), "invalid", "unknown action"},
		{"later action", req("action", "auth_info", "seq", 7), "unavailable", "not implemented"},
		{"kill_node on a tree without node ops", req("action", "kill_node", "node", "x", "seq", 7), "unavailable", "not supported"},
		{"log without a logger", req("action", "log", "path", "f.dkv", "seq", 7), "unavailable", "not supported"},
		{"no action", req("seq", 7), "invalid", "no action"},
		{"no path", req("action", "get_value", "seq", 7), "invalid", "give a path"},
		{"no value", req("action", "set_value", "path", pa, "seq", 7), "invalid", "no value"},
		{"bad path", req("action", "get_value", "path", "a.b", "seq", 7), "invalid", "path"},
		{"bad nchain", req("action", "get_value", "path", pa, "nchain", "x", "seq", 7), "invalid", "nchain"},
		{"action not str", req("action", 3, "seq", 7), "invalid", "action"},
		{"dup key", req("seq", 7, "action", "get_value", "action", "get_value"), "invalid", "duplicate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := start(t)
			c.send(tc.msg)
			m := decode(t, c.recv())
			if m["seq"] != int64(7) || m["kind"] != tc.kind || !strings.Contains(m["error"].(string), tc.text) || m["tock"] == nil {
				t.Errorf("reply %v", m)
			}
			// The connection keeps serving.
			c.send(req("action", "get_value", "path", pa, "seq", 8))
			if m := decode(t, c.recv()); m["seq"] != int64(8) {
				t.Errorf("next reply %v", m)
			}
		})
	}
}

func TestFatalErrorsClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"garbage", []byte{0xc1, 1, 2, 3}},
		{"not a map", msgp.AppendArrayHeader(nil, 0)},
		{"no seq", req("action", "get_value")},
		{"huge seq", req("action", "get_value", "seq", 1<<60)},
		{"negative seq", req("action", "get_value", "seq", -1)},
		{"oversized map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := start(t)
			c.send(tc.msg)
			m := decode(t, c.recv())
			if _, ok := m["seq"]; ok || m["error"] == nil || m["kind"] != "invalid" {
				t.Errorf("reply %v", m)
			}
			c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.r.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("after fatal error: %v, want EOF", err)
			}
		})
	}
}

func TestConcurrentRequests(t *testing.T) {
	c, _ := start(t)
	const n = 50
	var all []byte
	for i := 1; i <= n; i++ {
		p := tree.Path{tree.Str("k"), tree.Int(int64(i))}
		all = append(all, req("path", p, "value", i, "action", "set_value", "seq", i)...)
	}
	go c.c.Write(all)
	seen := map[int64]bool{}
	for range n {
		m := decode(t, c.recv())
		seen[m["seq"].(int64)] = true
	}
	if len(seen) != n {
		t.Errorf("got %d distinct replies", len(seen))
	}
}
