package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
	"github.com/edgekv/edgekv/tree/wire"
)

// TestNodeInProcess runs two nodes in this process (so `make race` checks
// the node's goroutines): a write on one arrives on the other, a delete
// too, and both stop cleanly.
func TestNodeInProcess(t *testing.T) {
	nodes := startBenchNodes(t, []string{"n1", "n2"}, [][]int{{1}, {}}, nil)
	waitLinks(t, nodes, []int{1, 1})
	ctx := context.Background()
	p := tree.Path{tree.Str("room"), tree.Int(3), tree.Str("temp")}
	if err := nodes[0].Write(ctx, p, msgp.AppendFloat64(nil, 21.5)); err != nil {
		t.Fatal(err)
	}
	waitFor := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, ok, err := nodes[1].Get(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if ok == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("n2: value present = %v, want %v", ok, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(true)
	if err := nodes[1].Write(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(false)
	for _, bn := range nodes {
		start := time.Now()
		bn.stop()
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stopping took %v", d)
		}
	}
}

// TestLostDataDirectory: a node (sync interval) whose data directory is
// lost after its peer received its changes comes back empty and is written
// to at once: it starts its ticks far above its earlier life's, so the new
// write is not mistaken by the peer for one it already holds, and the lost
// changes come back from the peer.
func TestLostDataDirectory(t *testing.T) {
	nodes := startBenchNodes(t, []string{"a", "b"}, [][]int{{1}, {}}, nil)
	waitLinks(t, nodes, []int{1, 1})
	ctx := context.Background()
	for i := range 10 {
		if err := nodes[0].Write(ctx, tree.Path{tree.Str("k"), tree.Int(int64(i))}, msgp.AppendInt(nil, i)); err != nil {
			t.Fatal(err)
		}
	}
	key9 := tree.Path{tree.Str("k"), tree.Int(9)}
	waitValue := func(bn *benchNode, p tree.Path) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, ok, _ := bn.Get(ctx, p); ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never got %s", bn.cfg.Node, p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitValue(nodes[1], key9)
	// a loses everything on disk, then comes back.
	cfgA := nodes[0].cfg
	nodes[0].stop()
	if err := os.RemoveAll(cfgA.Data.Dir); err != nil {
		t.Fatal(err)
	}
	a := runBenchNode(t, cfgA, nodes[0].port)
	fresh := tree.Path{tree.Str("after"), tree.Str("restart")}
	if err := a.Write(ctx, fresh, msgp.AppendString(nil, "new")); err != nil {
		t.Fatal(err)
	}
	// The new write must reach b: with a reused tick b would drop it.
	waitValue(nodes[1], fresh)
	// And a gets its lost changes back from b.
	waitValue(a, key9)
	st, err := a.n.Engine().State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tick := st.Nodes["a"].Tick; tick <= 1<<40 {
		t.Fatalf("a's tick after coming back empty is %d, want above 2^40", tick)
	}
}

// TestClientProtocol: the node serves MoaT-KV's client protocol on its
// client listener: greeting, set_value, get_value with a chain, and the
// write is a real write (visible through the node).
func TestClientProtocol(t *testing.T) {
	nodes := startBenchNodes(t, []string{"solo"}, [][]int{{}}, func(_ int, c *boards.Config) {
		c.Listen.Client = "127.0.0.1:0"
		c.PeerUsers = nil
	})
	n := nodes[0]
	conn, err := net.Dial("tcp", n.clientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	rd := kvproto.NewReader(conn, 0)
	next := func() map[string]any {
		t.Helper()
		b, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		v, _, err := msgp.ReadIntfBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		m, _ = v.(map[string]any)
		return m
	}
	hello := next()
	if hello["node"] != "solo" || hello["qlen"] == nil {
		t.Fatalf("greeting %v", hello)
	}
	send := func(kv ...any) {
		t.Helper()
		b := msgp.AppendMapHeader(nil, uint32(len(kv)/2))
		for i := 0; i < len(kv); i += 2 {
			b = msgp.AppendString(b, kv[i].(string))
			switch v := kv[i+1].(type) {
			case tree.Path:
				b = tree.AppendPath(b, v)
			default:
				var err error
				if b, err = msgp.AppendIntf(b, v); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	send("seq", 0, "qlen", 10)
	p := tree.Path{tree.Str("cap"), tree.Str("a")}
	send("path", p, "value", "hello", "nchain", 0, "action", "set_value", "seq", 2)
	if r := next(); r["changed"] != true || r["seq"] == nil {
		t.Fatalf("set_value reply %v", r)
	}
	send("path", p, "nchain", 2, "action", "get_value", "seq", 3)
	r := next()
	chain, _ := r["chain"].(map[string]any)
	if r["value"] != "hello" || chain == nil || chain["node"] != "solo" {
		t.Fatalf("get_value reply %v", r)
	}
	v, ok, err := n.Get(context.Background(), p)
	if err != nil || !ok || string(v) != string(msgp.AppendString(nil, "hello")) {
		t.Fatalf("node holds %x %v %v", v, ok, err)
	}
	send("path", tree.Path{tree.Str("cap"), tree.Str("nope")}, "nchain", 0, "action", "get_value", "seq", 4)
	if r := next(); r["value"] != nil {
		t.Fatalf("missing key: %v", r)
	}
	send("action", "no_such_action", "seq", 5)
	if r := next(); r["error"] == nil {
		t.Fatalf("unknown action: %v", r)
	}

	// Watch with fetch: start, the current entry, uptodate, then a live
	// change made through MQTT's write path.
	send("path", p, "value", map[string]any{"x": 1}, "action", "set_value", "seq", 6)
	next()
	send("action", "watch", "path", tree.Path{tree.Str("cap")}, "fetch", true, "max_depth", 1, "wseq", 1, "seq", 7)
	if r := next(); r["state"] != "start" || r["seq"] == nil {
		t.Fatalf("watch start: %v", r)
	}
	if r := next(); r["value"] == nil || fmt.Sprint(r["path"]) != "[a]" || r["depth"] == nil {
		t.Fatalf("watch initial item: %v", r)
	}
	if r := next(); r["state"] != "uptodate" {
		t.Fatalf("watch uptodate: %v", r)
	}
	if err := n.Write(context.Background(), tree.Path{tree.Str("cap"), tree.Str("b")}, msgp.AppendString(nil, "live")); err != nil {
		t.Fatal(err)
	}
	if r := next(); r["value"] != "live" || fmt.Sprint(r["path"]) != "[b]" {
		t.Fatalf("watch live item: %v", r)
	}
	if err := n.Write(context.Background(), tree.Path{tree.Str("cap"), tree.Str("b")}, nil); err != nil {
		t.Fatal(err)
	}
	// Same path as the previous item: shortened to depth 1 and no suffix.
	if r := next(); r["value"] != nil || fmt.Sprint(r["path"]) != "[]" || fmt.Sprint(r["depth"]) != "1" || r["tock"] == nil {
		t.Fatalf("watch deletion: %v", r)
	}

	send("action", "get_tock", "seq", 8)
	if r := next(); r["tock"] == nil || fmt.Sprint(r["seq"]) != "8" {
		t.Fatalf("get_tock: %v", r)
	}
	send("action", "get_tree", "path", tree.Path{tree.Str("cap")}, "seq", 9)
	if r := next(); r["state"] != "start" {
		t.Fatalf("get_tree start: %v", r)
	}
	if r := next(); fmt.Sprint(r["path"]) != "[a]" || r["value"] == nil {
		t.Fatalf("get_tree item: %v", r)
	}
	if r := next(); r["state"] != "end" {
		t.Fatalf("get_tree end (b was deleted, so a is the only entry): %v", r)
	}
	send("action", "enum", "path", tree.Path{tree.Str("cap")}, "seq", 10)
	if r := next(); fmt.Sprint(r["result"]) != "[a]" {
		t.Fatalf("enum: %v", r)
	}
	send("action", "stop", "task", 7, "seq", 11)
	if r := next(); r["result"] != true || fmt.Sprint(r["seq"]) != "11" {
		t.Fatalf("stop of the watch: %v", r)
	}
	send("action", "stop", "task", 7, "seq", 12)
	if r := next(); r["result"] != false {
		t.Fatalf("second stop of the same task: %v", r)
	}

	// The meta tree through the *_internal actions: MoaT-KV's deleter group.
	del := tree.Path{tree.Str("actor"), tree.Str("del")}
	send("path", del, "value", map[string]any{"nodes": []any{"solo"}}, "action", "set_internal", "seq", 13)
	if r := next(); r["changed"] != true {
		t.Fatalf("set_internal: %v", r)
	}
	send("path", del, "action", "get_internal", "seq", 14)
	if r := next(); fmt.Sprint(r["value"]) != "map[nodes:[solo]]" {
		t.Fatalf("get_internal: %v", r)
	}
	if _, ok, _ := n.Get(context.Background(), tree.Path{tree.Nil(), tree.Str("actor"), tree.Str("del")}); !ok {
		t.Fatal("set_internal did not write (nil, actor, del)")
	}
	send("path", tree.Path{}, "action", "get_tree_internal", "seq", 15)
	if r := next(); r["state"] != "start" {
		t.Fatalf("get_tree_internal start: %v", r)
	}
	if r := next(); fmt.Sprint(r["path"]) != "[actor del]" {
		t.Fatalf("get_tree_internal item: %v", r)
	}
	if r := next(); fmt.Sprint(r["path"]) != "[edgekv runner solo]" { // the job runner's groups
		t.Fatalf("get_tree_internal item: %v", r)
	}
	if r := next(); r["state"] != "end" {
		t.Fatalf("get_tree_internal end: %v", r)
	}

	// get_value by node and tick: find cap.a's tick, then look it up.
	send("path", p, "nchain", 1, "action", "get_value", "seq", 16)
	r = next()
	head, _ := r["chain"].(map[string]any)
	send("node", "solo", "tick", head["tick"], "nchain", 1, "action", "get_value", "seq", 16)
	{
		// The reply's path is ext 3, which msgp's generic decoder refuses:
		// walk the map by hand.
		b, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		cnt, rest, err := msgp.ReadMapHeaderBytes(b)
		got := map[string]string{}
		for i := uint32(0); err == nil && i < cnt; i++ {
			var k string
			if k, rest, err = msgp.ReadStringBytes(rest); err != nil {
				break
			}
			if k == "path" {
				var pp tree.Path
				pp, rest, err = tree.ReadPath(rest)
				got[k] = pp.String()
				continue
			}
			var v any
			v, rest, err = msgp.ReadIntfBytes(rest)
			got[k] = fmt.Sprint(v)
		}
		if err != nil || got["value"] != "map[x:1]" || got["path"] != "cap.a" {
			t.Fatalf("get_value by tick %v: %v %v", head["tick"], got, err)
		}
	}
	// The first tick was superseded by the overwrite.
	send("node", "solo", "tick", 1, "action", "get_value", "seq", 16)
	if r := next(); r["kind"] != "not found" {
		t.Fatalf("get_value by a superseded tick: %v", r)
	}
	send("node", "solo", "tick", 999, "action", "get_value", "seq", 17)
	if r := next(); r["error"] == nil || r["kind"] != "not found" {
		t.Fatalf("get_value by an unknown tick: %v", r)
	}
	// save: a MoaT-KV save file in the dump directory, and nowhere else;
	// never over an existing file unless asked, never a store file.
	send("path", "backup.dkv", "action", "save", "seq", 18)
	if r := next(); r["result"] != true {
		t.Fatalf("save: %v", r)
	}
	data, err := os.ReadFile(filepath.Join(n.cfg.Data.DumpDir(), "backup.dkv"))
	if err != nil {
		t.Fatal(err)
	}
	rd2 := wire.NewDKVReader(data)
	if rec, err := rd2.Next(); err != nil || rec.Kind != wire.RecordState {
		t.Fatalf("save file starts with %v %v", rec.Kind, err)
	}
	for i, bad := range []struct {
		path, kind string
	}{{"../escape.dkv", "invalid"}, {"log-000000000001.ekv", "invalid"}, {"node.ekv", "invalid"}, {".hidden", "invalid"}, {"backup.dkv", "conflict"}} {
		send("path", bad.path, "action", "save", "seq", 100+i)
		if r := next(); r["error"] == nil || r["kind"] != bad.kind {
			t.Fatalf("save %s: %v, want a %s error", bad.path, r, bad.kind)
		}
	}
	send("path", "backup.dkv", "action", "save", "replace", true, "seq", 19)
	if r := next(); r["result"] != true {
		t.Fatalf("save with replace: %v", r)
	}
	// delete_tree: every value below cap.
	send("path", tree.Path{tree.Str("cap")}, "action", "delete_tree", "seq", 20)
	if r := next(); fmt.Sprint(r["changed"]) != "1" {
		t.Fatalf("delete_tree: %v", r)
	}
	if _, ok, _ := n.Get(context.Background(), p); ok {
		t.Fatal("delete_tree left cap.a")
	}
}

// TestGoClient drives the node with the Go client (broker/kvclient).
func TestGoClient(t *testing.T) {
	nodes := startBenchNodes(t, []string{"gc"}, [][]int{{}}, func(_ int, c *boards.Config) {
		c.Listen.Client = "127.0.0.1:0"
		c.PeerUsers = nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := kvclient.Dial(ctx, nodes[0].clientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Hello().Node != "gc" {
		t.Fatalf("hello %+v", c.Hello())
	}
	p := tree.Path{tree.Str("room"), tree.Int(1)}
	res, err := c.Set(ctx, p, msgp.AppendFloat64(nil, 21.5), kvclient.WriteOpts{})
	if err != nil || !res.Changed || len(res.Chain) != 1 || res.Chain[0].Node != "gc" {
		t.Fatalf("set: %+v %v", res, err)
	}
	e, found, err := c.Get(ctx, p, 2)
	if err != nil || !found || len(e.Chain) != 1 {
		t.Fatalf("get: %+v %v %v", e, found, err)
	}
	if _, err := c.Set(ctx, p, msgp.AppendFloat64(nil, 1), kvclient.WriteOpts{MustNotExist: true}); !errors.Is(err, tree.ErrConflict) {
		t.Fatalf("must-not-exist on an existing entry: %v, want a conflict", err)
	}
	wrong := tree.Link{Node: "gc", Tick: 99}
	if _, err := c.Set(ctx, p, msgp.AppendFloat64(nil, 1), kvclient.WriteOpts{Head: &wrong}); !errors.Is(err, tree.ErrConflict) {
		t.Fatalf("wrong head: %v, want a conflict", err)
	}
	if _, err := c.Set(ctx, p, msgp.AppendFloat64(nil, 22), kvclient.WriteOpts{Head: &e.Chain[0]}); err != nil {
		t.Fatalf("right head: %v", err)
	}
	var paths []string
	if err := c.Tree(ctx, tree.Path{tree.Str("room")}, func(it kvclient.Item) error {
		paths = append(paths, it.Path.String())
		return nil
	}); err != nil || fmt.Sprint(paths) != "[room:1]" {
		t.Fatalf("tree: %v %v", paths, err)
	}
	// Watch: the current state, uptodate, then a change by someone else.
	wctx, wcancel := context.WithCancel(ctx)
	got := make(chan kvclient.Item, 10)
	werr := make(chan error, 1)
	go func() {
		werr <- c.Watch(wctx, tree.Path{tree.Str("room")}, true, func(it kvclient.Item) error {
			got <- it
			return nil
		})
	}()
	if it := <-got; it.Path.String() != "room:1" {
		t.Fatalf("watch initial: %+v", it)
	}
	if it := <-got; !it.UpToDate {
		t.Fatalf("watch uptodate: %+v", it)
	}
	if err := nodes[0].Write(ctx, tree.Path{tree.Str("room"), tree.Int(2)}, msgp.AppendString(nil, "x")); err != nil {
		t.Fatal(err)
	}
	if it := <-got; it.Path.String() != "room:2" || it.Value == nil {
		t.Fatalf("watch change: %+v", it)
	}
	wcancel()
	if err := <-werr; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v", err)
	}
	if _, err := c.Delete(ctx, p, kvclient.WriteOpts{}); err != nil {
		t.Fatal(err)
	}
	if _, found, err := c.Get(ctx, p, 0); err != nil || found {
		t.Fatalf("after delete: found=%v err=%v", found, err)
	}
}

// TestWatchUnderConcurrentWriters: 8 clients write the same 20 keys at
// once while 3 watchers follow them and one client opens a watch and never
// reads. Every watcher sees each key's versions only moving forward and
// ends with every key's final value; the stuck reader stalls neither the
// node nor the other watchers.
func TestWatchUnderConcurrentWriters(t *testing.T) {
	// A queue smaller than the 8,000 changes, so that the stuck reader
	// (which never acks, so its stream stops after qlen messages)
	// overflows, while watchers that keep up do not.
	c := boards.DefaultConfig("wn")
	c.Data.Dir = filepath.Join(t.TempDir(), "wn")
	port := ports(t, 1)[0]
	c.Listen.MQTT = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	c.Listen.Client = "127.0.0.1:0"
	c.LogLevel = boards.LogWarn
	nodes := []*benchNode{runBenchNode(t, c, port, func(ec *node.Config) { ec.WatchQueue = 5000 })}
	addr := nodes[0].clientAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The stuck reader: a raw connection that asks for a watch and never
	// reads a byte.
	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	req := msgp.AppendMapHeader(nil, 2)
	req = msgp.AppendString(req, "seq")
	req = msgp.AppendUint64(req, 0)
	req = msgp.AppendString(req, "qlen")
	req = msgp.AppendUint64(req, 10)
	req = msgp.AppendMapHeader(req, 4)
	req = tree.AppendPath(msgp.AppendString(req, "path"), tree.Path{tree.Str("k")})
	req = msgp.AppendBool(msgp.AppendString(req, "fetch"), true)
	req = msgp.AppendString(msgp.AppendString(req, "action"), "watch")
	req = msgp.AppendUint64(msgp.AppendString(req, "seq"), 1)
	if _, err := stuck.Write(req); err != nil {
		t.Fatal(err)
	}

	const writers, keys, rounds, watchers = 8, 20, 1000, 3
	pad := strings.Repeat("x", 1000) // 8 MB of changes: more than socket buffers hold
	type seen struct {
		mu    sync.Mutex
		last  map[string]uint64
		final map[string]string
		err   error
	}
	results := make([]*seen, watchers)
	ready := make(chan struct{}, watchers)
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range watchers {
		c, err := kvclient.Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s := &seen{last: map[string]uint64{}, final: map[string]string{}}
		results[w] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Watch(wctx, tree.Path{tree.Str("k")}, true, func(it kvclient.Item) error {
				if it.UpToDate {
					ready <- struct{}{}
					return nil
				}
				k := it.Path.String()
				s.mu.Lock()
				defer s.mu.Unlock()
				if it.Tock <= s.last[k] {
					return fmt.Errorf("%s went backwards: tock %d after %d", k, it.Tock, s.last[k])
				}
				s.last[k] = it.Tock
				v, _, _ := msgp.ReadStringBytes(it.Value)
				s.final[k] = v
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
			}
		}()
	}
	for range watchers {
		<-ready
	}
	var wwg sync.WaitGroup
	for w := range writers {
		c, err := kvclient.Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for r := range rounds {
				p := tree.Path{tree.Str("k"), tree.Int(int64((r*writers + w) % keys))}
				if _, err := c.Set(ctx, p, msgp.AppendString(nil, fmt.Sprintf("w%d-%d%s", w, r, pad)), kvclient.WriteOpts{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wwg.Wait()
	// The final state, read directly.
	want := map[string]string{}
	for k := range keys {
		p := tree.Path{tree.Str("k"), tree.Int(int64(k))}
		v, ok, err := nodes[0].Get(ctx, p)
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", p, ok, err)
		}
		s, _, _ := msgp.ReadStringBytes(v)
		want[p.String()] = s
	}
	allSeen := func(s *seen) (bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err != nil {
			return false, s.err
		}
		for k, v := range want {
			if s.final[k] != v {
				return false, nil
			}
		}
		return true, nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for w, s := range results {
		for {
			ok, err := allSeen(s)
			if err != nil {
				t.Fatalf("watcher %d: %v", w, err)
			}
			if ok || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wcancel()
	wg.Wait()
	if n := nodes[0].n.Engine().WatchOverflows(); n != 1 {
		t.Errorf("%d watches overflowed, want exactly the stuck one", n)
	}
	for w, s := range results {
		if s.err != nil {
			t.Fatalf("watcher %d: %v", w, s.err)
		}
		for k, v := range want {
			if s.final[k] != v {
				t.Fatalf("watcher %d: %s ends as %q, the node has %q", w, k, s.final[k], v)
			}
		}
	}
}

// TestClientProtocolBadFrames: malformed input gets an error reply or a
// clean close, and the node keeps serving other connections.
func TestClientProtocolBadFrames(t *testing.T) {
	nodes := startBenchNodes(t, []string{"bf"}, [][]int{{}}, func(_ int, c *boards.Config) {
		c.Listen.Client = "127.0.0.1:0"
		c.PeerUsers = nil
	})
	addr := nodes[0].clientAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good, err := kvclient.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	m := func(kv ...any) []byte {
		b := msgp.AppendMapHeader(nil, uint32(len(kv)/2))
		for i := 0; i < len(kv); i += 2 {
			b = msgp.AppendString(b, kv[i].(string))
			b, _ = msgp.AppendIntf(b, kv[i+1])
		}
		return b
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"garbage", []byte{0xc1, 0xff, 0x00, 0x13}},
		{"not a map", msgp.AppendArrayHeader(nil, 2)},
		{"truncated map", m("action", "get_value", "seq", 3)[:9]},
		{"oversized map header", []byte{0xdf, 0x7f, 0xff, 0xff, 0xff}},
		{"oversized string", []byte{0x81, 0xdb, 0x7f, 0xff, 0xff, 0xff}},
		{"wrong types", m("action", 42, "seq", 3)},
		{"path of the wrong type", m("action", "get_value", "path", 7, "seq", 3)},
		{"huge seq", m("action", "get_tock", "seq", uint64(1)<<63)},
		{"negative seq", m("action", "get_tock", "seq", -5)},
		{"unknown action", m("action", "explode", "seq", 3)},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			rd := kvproto.NewReader(conn, 0)
			if _, err := rd.Next(); err != nil { // greeting
				t.Fatal(err)
			}
			conn.Write(m("seq", 0, "qlen", 10))
			conn.Write(tc.data)
			// End the stream: a truncated message is only known to be
			// truncated when no more bytes can come.
			conn.(*net.TCPConn).CloseWrite()
			msg, err := rd.Next()
			switch {
			case err != nil:
				// A clean close is fine, a timeout is not.
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("no reply and no close: %v", err)
				}
			default:
				v, _, err := msgp.ReadIntfBytes(msg)
				r, _ := v.(map[string]any)
				if err != nil || r["error"] == nil {
					t.Fatalf("reply %v (%v), want an error", v, err)
				}
			}
			// The node still serves other connections.
			p := tree.Path{tree.Str("after"), tree.Int(int64(i))}
			if _, err := good.Set(ctx, p, msgp.AppendInt(nil, i), kvclient.WriteOpts{}); err != nil {
				t.Fatalf("good client after %s: %v", tc.name, err)
			}
		})
	}
}
