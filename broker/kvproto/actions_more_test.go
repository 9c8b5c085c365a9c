package kvproto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// busTree is fakeTree plus what enum_node and the msg_* actions need: the
// node list of the same tree.Tree and an in-memory bus with MQTT topic
// matching and bounded monitor queues, as the node's broker has.
type busTree struct {
	*fakeTree
	bus *fakeBus
}

func (b busTree) NodeTicks(ctx context.Context, node string, max int, current bool) ([]uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	nd := b.t.LookupNode(node)
	if nd == nil {
		return nil, fmt.Errorf("%w: node %q", tree.ErrNotFound, node)
	}
	var out []uint64
	for t := range nd.Present().All {
		if h, _ := nd.Entry(t).Chain().Head(); current && h.Node != node {
			continue
		}
		if out = append(out, t); max > 0 && len(out) == max {
			break
		}
	}
	return out, nil
}

func (b busTree) ByTick(ctx context.Context, node string, tick uint64) (tree.Path, Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	nd := b.t.LookupNode(node)
	if nd == nil || nd.Entry(tick) == nil {
		return nil, Entry{}, fmt.Errorf("%w: %s:%d", tree.ErrNotFound, node, tick)
	}
	e := nd.Entry(tick)
	v, _ := e.Value()
	return e.Path(), Entry{Value: slices.Clone(v), Chain: slices.Clone(e.Chain()), Tock: e.Tock()}, nil
}

func (b busTree) Walk(ctx context.Context, p tree.Path, fn func(WatchItem) error) error {
	var items []WatchItem
	b.mu.Lock()
	b.t.Walk(p, func(e *tree.Entry) bool {
		if v, ok := e.Value(); ok {
			items = append(items, WatchItem{Path: e.Path(), Value: slices.Clone(v), Chain: slices.Clone(e.Chain()), Tock: e.Tock()})
		}
		return true
	})
	b.mu.Unlock()
	for _, it := range items {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

func (b busTree) BusRoot() string { return "edgekv/sync" }

func (b busTree) Publish(ctx context.Context, topic string, payload []byte) error {
	if strings.HasPrefix(topic, "kv/") {
		return fmt.Errorf("%w: %q", ErrReservedTopic, topic)
	}
	b.bus.publish(topic, payload)
	return nil
}

func (b busTree) Monitor(ctx context.Context, filter string, ready func(), deliver func(BusMessage) error) error {
	ch := b.bus.subscribe(filter)
	defer b.bus.unsubscribe(ch)
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return errors.New("monitor overflow")
			}
			if err := deliver(m); err != nil {
				return err
			}
		}
	}
}

type fakeBus struct {
	mu    sync.Mutex
	queue int
	subs  map[chan BusMessage]string
	ready chan struct{} // a value per subscription
}

func newFakeBus(queue int) *fakeBus {
	return &fakeBus{queue: queue, subs: map[chan BusMessage]string{}, ready: make(chan struct{}, 100)}
}

func (f *fakeBus) subscribe(filter string) chan BusMessage {
	ch := make(chan BusMessage, f.queue)
	f.mu.Lock()
	f.subs[ch] = filter
	f.mu.Unlock()
	select {
	case f.ready <- struct{}{}:
	default: // nobody waits for them (FuzzServe): never block a monitor
	}
	return ch
}

func (f *fakeBus) unsubscribe(ch chan BusMessage) {
	f.mu.Lock()
	delete(f.subs, ch)
	f.mu.Unlock()
}

func (f *fakeBus) publish(topic string, payload []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch, filter := range f.subs {
		if !topicMatch(filter, topic) {
			continue
		}
		select {
		case ch <- BusMessage{Topic: topic, Payload: slices.Clone(payload)}:
		default:
			close(ch)
			delete(f.subs, ch)
		}
	}
}

// waitMonitor waits until a monitor has subscribed.
func (f *fakeBus) waitMonitor(t *testing.T) {
	t.Helper()
	select {
	case <-f.ready:
	case <-time.After(5 * time.Second):
		t.Fatal("no monitor subscribed")
	}
}

func topicMatch(filter, topic string) bool {
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fl {
		switch {
		case f == "#":
			return true
		case i >= len(tl):
			return false
		case f != "+" && f != tl[i]:
			return false
		}
	}
	return len(fl) == len(tl)
}

// startBus serves a busTree whose monitors queue 5 messages.
func startBus(t *testing.T) (*conn, busTree) {
	bt := busTree{fakeTree: newFakeTree("ref1", 2007, 6144), bus: newFakeBus(5)}
	c := dial(t, bt)
	c.recv() // greeting
	c.send(AppendQLenReply(nil, 10))
	return c, bt
}

// path builds a path of string elements.
func path(elems ...string) tree.Path {
	p := tree.Path{}
	for _, e := range elems {
		p = append(p, tree.Str(e))
	}
	return p
}

// strs encodes a list of strings.
func strs(elems ...string) []byte {
	b := msgp.AppendArrayHeader(nil, uint32(len(elems)))
	for _, e := range elems {
		b = msgp.AppendString(b, e)
	}
	return b
}

// decodeExt is decode for replies that hold paths (extension type 3,
// which msgp's generic reader takes for complex numbers): an extension
// value is kept as its raw bytes.
func decodeExt(t *testing.T, b []byte) map[string]any {
	t.Helper()
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		t.Fatalf("decode % x: %v", b, err)
	}
	m := map[string]any{}
	for range n {
		var k string
		if k, rest, err = msgp.ReadStringBytes(rest); err != nil {
			t.Fatalf("decode % x: %v", b, err)
		}
		var v any
		if len(rest) > 0 && (rest[0] >= 0xc7 && rest[0] <= 0xc9 || rest[0] >= 0xd4 && rest[0] <= 0xd8) {
			r, err := msgp.Skip(rest)
			if err != nil {
				t.Fatalf("decode % x: %v", b, err)
			}
			v, rest = slices.Clone(rest[:len(rest)-len(r)]), r
		} else if v, rest, err = msgp.ReadIntfBytes(rest); err != nil {
			t.Fatalf("decode % x: %v", b, err)
		}
		m[k] = v
	}
	return m
}

// num reads a decoded integer, signed or unsigned.
func num(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case uint64:
		return int64(x)
	}
	return -1
}

func wantErr(t *testing.T, m map[string]any, seq int64, kind, text string) {
	t.Helper()
	msg, _ := m["error"].(string)
	if m["seq"] != seq || m["kind"] != kind || !strings.Contains(msg, text) {
		t.Errorf("want a %q error with %q for seq %d, got %v", kind, text, seq, m)
	}
}

// TestRoot: root moves the connection's root, cumulatively; later paths
// and replies are relative to it and it applies to exactly the requests
// read after it (root and a get in one write); its reply is the root
// entry serialised (value, at most 2 chain links, path []); nil elements,
// deleting the root and update are refused after it; the *_internal
// actions still reach the meta tree.
func TestRoot(t *testing.T) {
	c, bt := startBus(t)
	c.send(req("path", path("a", "b", "c"), "value", 1, "action", "set_value", "seq", 1)) // ref1:2008
	decode(t, c.recv())
	c.send(req("path", path("a", "b"), "value", 2, "action", "set_value", "seq", 1)) // ref1:2009
	decode(t, c.recv())
	// a.b gets a chain of three links: n3:1, n2:1, ref1:2009.
	bt.mu.Lock()
	for _, ev := range []tree.Event{
		{Path: path("a", "b"), Value: msgp.AppendInt(nil, 2), Chain: chainOf("n2", 1, "ref1", 2009), Tock: 99990},
		{Path: path("a", "b"), Value: msgp.AppendInt(nil, 2), Chain: chainOf("n3", 1, "n2", 1, "ref1", 2009), Tock: 99991},
	} {
		if _, err := bt.t.Apply(ev); err != nil {
			t.Fatal(err)
		}
	}
	bt.mu.Unlock()
	c.send(req("path", tree.Path{tree.Str("m")}, "value", 9, "action", "set_internal", "seq", 2)) // ref1:2010
	decode(t, c.recv())

	// root [a] and a relative get in one write: the get sees the new root.
	var both []byte
	both = append(both, req("path", path("a"), "action", "root", "seq", 3)...)
	both = append(both, req("path", path("b", "c"), "action", "get_value", "seq", 4)...)
	c.send(both)
	got := map[int64]map[string]any{}
	for range 2 {
		m := decodeExt(t, c.recv())
		got[num(m["seq"])] = m
	}
	// [a] holds nothing: {tock, path: [], seq}.
	if m := got[3]; len(m) != 3 || m["tock"] == nil || m["value"] != nil || !bytes.Equal(m["path"].([]byte), []byte{0xc7, 0, tree.PathExtType}) {
		t.Errorf("root [a] reply: %v", m)
	}
	if m := got[4]; m["value"] != int64(1) {
		t.Errorf("get b.c after root a: %v", m)
	}
	// A second root is relative to the first; the reply is the entry.
	c.send(req("path", path("b"), "action", "root", "seq", 5))
	raw := c.recv()
	m := decodeExt(t, raw)
	if m["value"] != int64(2) || m["seq"] != int64(5) || !bytes.Equal(m["path"].([]byte), []byte{0xc7, 0, tree.PathExtType}) {
		t.Errorf("root b: %v", m)
	}
	chain := m["chain"].(map[string]any)
	if prev, ok := chain["prev"].(map[string]any); !ok || len(prev) != 2 {
		t.Errorf("root b: want a chain of exactly 2 links (the third cut off), got %v", chain)
	}
	// Relative reads and writes under a.b.
	c.send(req("path", path("c"), "action", "get_value", "seq", 6))
	if m := decode(t, c.recv()); m["value"] != int64(1) {
		t.Errorf("get c under a.b: %v", m)
	}
	c.send(req("path", path("x"), "value", "new", "action", "set_value", "seq", 7)) // ref1:2011
	decode(t, c.recv())
	if e, _ := bt.Get(context.Background(), path("a", "b", "x")); string(e.Value) != "\xa3new" {
		t.Errorf("set x under a.b wrote %x at a.b.x", e.Value)
	}
	if e, _ := bt.Get(context.Background(), path("x")); e.Exists() {
		t.Error("set x under a.b wrote x at the top")
	}
	// get_value by node and tick: the path relative to the root; outside
	// it, not found.
	c.send(req("node", "ref1", "tick", 2011, "action", "get_value", "seq", 8))
	raw = c.recv()
	if m := decodeExt(t, raw); m["value"] != "new" || !bytes.Equal(m["path"].([]byte), []byte("\xd5\x03\xa1x")) {
		t.Errorf("get by tick under a.b: %v % x", m, raw)
	}
	c.send(req("node", "ref1", "tick", 2010, "action", "get_value", "seq", 9)) // (nil, m)
	wantErr(t, decode(t, c.recv()), 9, "not found", "outside")
	// Refused after root: nil elements, deleting the root, update.
	c.send(req("path", tree.Path{tree.Nil(), tree.Str("m")}, "action", "get_value", "seq", 10))
	wantErr(t, decode(t, c.recv()), 10, "invalid", "nil")
	c.send(req("path", tree.Path{}, "action", "delete_tree", "seq", 11))
	wantErr(t, decode(t, c.recv()), 11, "invalid", "not the root")
	c.send(req("path", path("c"), "value", 1, "chain", AppendChain(nil, chainOf("n9", 1), 1), "tock", 1, "action", "update", "seq", 12))
	wantErr(t, decode(t, c.recv()), 12, "unavailable", "root")
	// The meta tree through *_internal, unmoved.
	c.send(req("path", tree.Path{tree.Str("m")}, "action", "get_internal", "seq", 13))
	if m := decode(t, c.recv()); m["value"] != int64(9) {
		t.Errorf("get_internal m after root: %v", m)
	}
	// Another connection is unaffected.
	c2 := dial(t, bt)
	c2.recv()
	c2.send(req("path", path("x"), "action", "get_value", "seq", 1))
	if m := decode(t, c2.recv()); m["value"] != nil {
		t.Errorf("second connection sees the first one's root: %v", m)
	}
}

func TestRootBadInput(t *testing.T) {
	c, _ := startBus(t)
	c.send(req("action", "root", "seq", 1))
	wantErr(t, decode(t, c.recv()), 1, "invalid", "no path")
	c.send(req("path", tree.Path{tree.Nil(), tree.Str("x")}, "action", "root", "seq", 2))
	wantErr(t, decode(t, c.recv()), 2, "invalid", "nil")
	c.send(req("path", 7, "action", "root", "seq", 3))
	wantErr(t, decode(t, c.recv()), 3, "invalid", "path")
	// None of those moved the root.
	c.send(req("path", path("k"), "value", 1, "action", "set_value", "seq", 4))
	decode(t, c.recv())
	c.send(req("path", path("k"), "action", "get_value", "seq", 5))
	if m := decode(t, c.recv()); m["value"] != int64(1) {
		t.Errorf("after failed roots: %v", m)
	}
}

// TestEnumNode: ticks of entries whose chain holds the node, ascending;
// current keeps those the node heads; max bounds them.
func TestEnumNode(t *testing.T) {
	c, bt := startBus(t)
	for i, k := range []string{"p", "q", "r"} { // ref1:2008, 2009, 2010
		c.send(req("path", path(k), "value", i, "action", "set_value", "seq", 1))
		decode(t, c.recv())
	}
	c.send(req("path", path("q"), "value", 9, "action", "set_value", "seq", 1)) // 2011 supersedes 2009
	decode(t, c.recv())
	// n2 overwrites p: its chain is n2:5, ref1:2008.
	bt.mu.Lock()
	_, err := bt.t.Apply(tree.Event{Path: path("p"), Value: msgp.AppendInt(nil, 5), Chain: chainOf("n2", 5, "ref1", 2008), Tock: 99999})
	bt.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		want []uint64
	}{
		{"all", req("node", "ref1", "action", "enum_node", "seq", 2), []uint64{2008, 2010, 2011}},
		{"current", req("node", "ref1", "current", true, "action", "enum_node", "seq", 2), []uint64{2010, 2011}},
		{"max", req("node", "ref1", "max", 2, "action", "enum_node", "seq", 2), []uint64{2008, 2010}},
		{"max 0 and nil current", req("node", "ref1", "max", 0, "current", nil, "action", "enum_node", "seq", 2), []uint64{2008, 2010, 2011}},
		{"other node", req("node", "n2", "current", true, "action", "enum_node", "seq", 2), []uint64{5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.send(tc.msg)
			raw := c.recv()
			m := decode(t, raw)
			var got []uint64
			for _, v := range m["result"].([]any) {
				got = append(got, uint64(num(v)))
			}
			if !slices.Equal(got, tc.want) || m["tock"] == nil {
				t.Errorf("got %v, want result %v", m, tc.want)
			}
		})
	}
	c.send(req("node", "nobody", "action", "enum_node", "seq", 3))
	wantErr(t, decode(t, c.recv()), 3, "not found", "nobody")
}

// TestTestACL: without ACLs the connection is MoaT-KV's super-root, whose
// NullACL grants everything but reading ACL flags: {access: true}.
func TestTestACL(t *testing.T) {
	c, _ := startBus(t)
	for _, mode := range []any{"x", "r", "W", "", nil} {
		kv := []any{"path", pa, "action", "test_acl", "seq", 1}
		if mode != nil {
			kv = append(kv, "mode", mode)
		}
		c.send(req(kv...))
		raw := c.recv()
		m := decode(t, raw)
		if m["access"] != true || m["seq"] != int64(1) || len(m) != 3 || !bytes.HasPrefix(raw, []byte("\x83\xa6access\xc3")) {
			t.Errorf("mode %v: % x", mode, raw)
		}
	}
	// A path that does not exist is no different.
	c.send(req("path", path("no", "such"), "mode", "c", "action", "test_acl", "seq", 2))
	if m := decode(t, c.recv()); m["access"] != true {
		t.Errorf("missing path: %v", m)
	}
	c.send(req("path", pa, "acl", "guest", "action", "test_acl", "seq", 3))
	wantErr(t, decode(t, c.recv()), 3, "unavailable", "guest")
}

// TestBadInputActions: wrong types and missing keys get {seq, error,
// kind: invalid}, and the connection keeps serving.
func TestBadInputActions(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		text string
	}{
		{"enum_node no node", req("action", "enum_node", "seq", 7), "node"},
		{"enum_node node int", req("node", 3, "action", "enum_node", "seq", 7), "string"},
		{"enum_node empty node", req("node", "", "action", "enum_node", "seq", 7), "node"},
		{"enum_node max str", req("node", "ref1", "max", "x", "action", "enum_node", "seq", 7), "max"},
		{"enum_node current str", req("node", "ref1", "current", "yes", "action", "enum_node", "seq", 7), "bool"},
		{"enum_node dup key", req("node", "ref1", "max", 1, "max", 2, "action", "enum_node", "seq", 7), "duplicate"},
		{"test_acl no path", req("action", "test_acl", "seq", 7), "no path"},
		{"test_acl nil element", req("path", tree.Path{tree.Nil(), tree.Str("acl")}, "action", "test_acl", "seq", 7), "nil"},
		{"test_acl mode int", req("path", pa, "mode", 1, "action", "test_acl", "seq", 7), "mode"},
		{"test_acl mode unknown", req("path", pa, "mode", "q", "action", "test_acl", "seq", 7), "ACL letter"},
		{"test_acl mode two letters", req("path", pa, "mode", "rw", "action", "test_acl", "seq", 7), "ACL letter"},
		{"test_acl acl int", req("path", pa, "acl", 5, "action", "test_acl", "seq", 7), "acl"},
		{"msg_send no topic", req("data", 1, "action", "msg_send", "seq", 7), "no topic"},
		{"msg_send topic int", req("topic", 5, "data", 1, "action", "msg_send", "seq", 7), "topic"},
		{"msg_send topic bool elem", req("topic", []byte{0x92, 0xa1, 'a', 0xc3}, "data", 1, "action", "msg_send", "seq", 7), "element 1"},
		{"msg_send empty topic", req("topic", []byte{0x90}, "data", 1, "action", "msg_send", "seq", 7), "empty topic"},
		{"msg_send wildcard", req("topic", strs("a", "+"), "data", 1, "action", "msg_send", "seq", 7), "'+'"},
		{"msg_send no data", req("topic", strs("a"), "action", "msg_send", "seq", 7), "no data"},
		{"msg_send data and raw", req("topic", strs("a"), "data", 1, "raw", []byte{0xc4, 0}, "action", "msg_send", "seq", 7), "not both"},
		{"msg_send raw str", req("topic", strs("a"), "raw", "text", "action", "msg_send", "seq", 7), "binary"},
		{"msg_monitor no topic", req("action", "msg_monitor", "seq", 7), "no topic"},
		{"msg_monitor bad filter", req("topic", "a/#/b", "action", "msg_monitor", "seq", 7), "last level"},
		{"msg_monitor half wildcard", req("topic", strs("a+"), "action", "msg_monitor", "seq", 7), "whole levels"},
		{"msg_monitor bad path text", req("topic", "a..b", "action", "msg_monitor", "seq", 7), "topic"},
		{"msg_monitor raw int", req("topic", strs("a"), "raw", 1, "action", "msg_monitor", "seq", 7), "raw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := startBus(t)
			c.send(tc.msg)
			m := decode(t, c.recv())
			wantErr(t, m, 7, "invalid", tc.text)
			c.send(req("action", "get_value", "path", pa, "seq", 8))
			if m := decode(t, c.recv()); m["seq"] != int64(8) {
				t.Errorf("next reply %v", m)
			}
		})
	}
}

func TestBusTopic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		topic  any
		filter bool
		want   string // "" : invalid
	}{
		{"send string is one element", "a/b.c", false, "a/b.c"},
		{"monitor string is path text", "a.b.c", true, "a/b/c"},
		{"monitor string with slashes", "a/+/c", true, "a/+/c"},
		{"monitor path text wildcard", "a.#", true, "a/#"},
		{"list", strs("a", "b"), false, "a/b"},
		{"integer element", []byte{0x92, 0xa1, 'a', 0x07}, false, "a/7"},
		{"extension path", path("x", "y"), false, "x/y"},
		{"colon is the root", strs(":run", "any"), false, "edgekv/sync/run/any"},
		{"lone colon", strs(":"), true, "edgekv/sync"},
		{"lone colon and wildcard", strs(":", "#"), true, "edgekv/sync/#"},
		{"colon only first", strs("a", ":b"), false, "a/:b"},
		{"send wildcard", strs("a", "#"), false, ""},
		{"filter hash not last", strs("#", "a"), true, ""},
		{"nil element", []byte{0x91, 0xc0}, false, ""},
		{"float element", []byte{0x91, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}, false, ""},
		{"nul", strs("a\x00"), false, ""},
		{"empty", strs(), true, ""},
		{"map", []byte{0x80}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			action := "msg_send"
			if tc.filter {
				action = "msg_monitor"
			}
			r, err := ParseRequest(req("topic", tc.topic, "action", action, "seq", 1))
			if err != nil {
				t.Fatal(err)
			}
			a, err := readArgs(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := busTopic(r, a, tc.filter, "edgekv/sync")
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("accepted as %q", got)
			case tc.want != "" && (err != nil || got != tc.want):
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			case err != nil && !errors.Is(err, tree.ErrMalformed):
				t.Errorf("error %v is not of kind invalid", err)
			}
		})
	}
}

// TestMsgSendAndMonitor: a monitor sees what msg_send publishes on a
// matching topic, decoded, and undecodable payloads raw with an error;
// with raw: true every payload raw; other topics not at all. stop ends
// it. A reserved topic is refused with kind permission.
func TestMsgSendAndMonitor(t *testing.T) {
	c, bt := startBus(t)
	c.send(req("topic", strs("t", "#"), "action", "msg_monitor", "seq", 1))
	if m := decode(t, c.recv()); m["state"] != "start" || m["wseq"] != int64(1) {
		t.Fatalf("monitor start: %v", m)
	}
	bt.bus.waitMonitor(t)
	c.send(req("topic", "t", "raw", true, "action", "msg_monitor", "seq", 2))
	if m := decode(t, c.recv()); m["state"] != "start" {
		t.Fatalf("raw monitor start: %v", m)
	}
	bt.bus.waitMonitor(t)

	c.send(req("topic", strs("t", "a"), "data", strs("Hello"), "action", "msg_send", "seq", 3))
	// The reply and the monitored message, in either order.
	reply, raw := c.recv(), c.recv()
	if decode(t, reply)["seq"] != int64(3) {
		reply, raw = raw, reply
	}
	if m := decode(t, reply); m["seq"] != int64(3) || len(m) != 2 || m["tock"] == nil {
		t.Errorf("msg_send reply: %v", m)
	}
	// {topic: [t, a], data: ["Hello"], seq: 1, wseq: 2, tock}
	want := req("topic", strs("t", "a"), "data", strs("Hello"), "seq", 1, "wseq", 2)
	if !bytes.HasPrefix(raw, append([]byte{0x85}, want[1:]...)) {
		t.Errorf("monitored message\n got % x\nwant % x + tock", raw, want)
	}
	bt.bus.publish("t", []byte("\x92\xa5Hello*")) // both monitors
	bt.bus.publish("t/b", []byte("not msgpack"))
	bt.bus.publish("other", []byte{1})
	got := map[int64][]map[string]any{}
	for range 3 {
		m := decode(t, c.recv())
		got[m["seq"].(int64)] = append(got[m["seq"].(int64)], m)
	}
	if len(got[1]) != 2 || len(got[2]) != 1 {
		t.Fatalf("messages per monitor: %v", got)
	}
	if m := got[1][0]; fmt.Sprint(m["topic"], m["data"]) != "[t] [Hello 42]" {
		t.Errorf("decoded message: %v", m)
	}
	if m := got[1][1]; fmt.Sprint(m["topic"]) != "[t b]" || string(m["raw"].([]byte)) != "not msgpack" || m["error"] == nil || m["data"] != nil {
		t.Errorf("undecodable message: %v", m)
	}
	if m := got[2][0]; string(m["raw"].([]byte)) != "\x92\xa5Hello*" || m["data"] != nil || m["error"] != nil {
		t.Errorf("raw message: %v", m)
	}
	// msg_send raw, and the ':' root.
	c.send(req("topic", strs("t"), "raw", []byte{0xc4, 2, 0xff, 0x00}, "action", "msg_send", "seq", 4))
	for range 3 {
		m := decode(t, c.recv())
		if m["seq"] == int64(1) && (m["error"] == nil || !bytes.Equal(m["raw"].([]byte), []byte{0xff, 0})) {
			t.Errorf("raw send seen as %v", m)
		}
	}
	c.send(req("topic", strs("kv", "x"), "data", 1, "action", "msg_send", "seq", 5))
	wantErr(t, decode(t, c.recv()), 5, "permission", "reserved")
	// stop ends a monitor; later messages do not reach it.
	c.send(req("task", 2, "action", "stop", "seq", 6))
	if m := decode(t, c.recv()); m["result"] != true {
		t.Errorf("stop: %v", m)
	}
	bt.bus.publish("t", []byte{7})
	if m := decode(t, c.recv()); m["seq"] != int64(1) || m["data"] != int64(7) {
		t.Errorf("after stop: %v", m)
	}
}

// TestMsgMonitorOverflow: the bus never waits for a slow monitor: a
// client that does not read holds its stream at the flow-control window,
// the monitor's queue (5 here) overflows, and the stream, once the client
// reads again, delivers what was queued without a gap, then an error and
// end.
func TestMsgMonitorOverflow(t *testing.T) {
	c, bt := startBus(t)
	c.send(req("topic", "#", "action", "msg_monitor", "seq", 1))
	decode(t, c.recv()) // start, wseq 1
	bt.bus.waitMonitor(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 { // more than window (10) + queue (5)
			bt.bus.publish("x", msgp.AppendInt(nil, i))
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publishing blocked on a slow monitor")
	}
	var fail map[string]any
	n := 0
	for fail == nil {
		m := decode(t, c.recv())
		switch {
		case m["error"] != nil:
			fail = m
		case m["data"] != int64(n):
			t.Fatalf("message %d: %v", n, m)
		default:
			n++
			c.send(req("seq", 1, "state", "ack", "ack", int(m["wseq"].(int64))))
		}
	}
	if n < 5 || n > 16 || fail["seq"] != int64(1) || !strings.Contains(fail["error"].(string), "overflow") {
		t.Errorf("after %d messages: %v", n, fail)
	}
	if m := decode(t, c.recv()); m["state"] != "end" || m["seq"] != int64(1) {
		t.Errorf("after the error: %v", m)
	}
}

func TestMsgUnsupported(t *testing.T) {
	c, _ := start(t) // fakeTree: no Messenger, no NodeLister
	c.send(req("topic", "a", "data", 1, "action", "msg_send", "seq", 1))
	wantErr(t, decode(t, c.recv()), 1, "unavailable", "not supported")
	c.send(req("topic", "a", "action", "msg_monitor", "seq", 2))
	wantErr(t, decode(t, c.recv()), 2, "unavailable", "not supported")
	c.send(req("node", "a", "action", "enum_node", "seq", 3))
	wantErr(t, decode(t, c.recv()), 3, "unavailable", "not supported")
}
