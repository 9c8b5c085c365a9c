package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/broker"
	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// clientNode starts one in-process node with a client-protocol listener
// and returns it with a connected Go client.
func actionNode(t *testing.T, name string) (*benchNode, *kvclient.Client) {
	t.Helper()
	nodes := startBenchNodes(t, []string{name}, [][]int{{}}, func(_ int, c *boards.Config) {
		c.Listen.Client = "127.0.0.1:0"
		c.PeerUsers = nil
	})
	return nodes[0], actionClient(t, nodes[0])
}

func actionClient(t *testing.T, bn *benchNode) *kvclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := kvclient.Dial(ctx, bn.clientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// monitor runs MsgMonitor in the background until the test ends; its
// messages (after Started) arrive on the returned channel, its end on
// the error channel.
func startMonitor(t *testing.T, c *kvclient.Client, filter []string, raw bool) (<-chan kvclient.Message, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	msgs := make(chan kvclient.Message, 100)
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		errc <- c.MsgMonitor(ctx, filter, raw, func(m kvclient.Message) error {
			if m.Started {
				close(started)
				return nil
			}
			msgs <- m
			return nil
		})
	}()
	t.Cleanup(cancel)
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("monitor %v: %v", filter, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("monitor %v did not start", filter)
	}
	return msgs, errc
}

func nextMsg(t *testing.T, msgs <-chan kvclient.Message) kvclient.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message on the monitor")
		return kvclient.Message{}
	}
}

func serverKind(err error) string {
	var se *kvclient.ServerError
	if errors.As(err, &se) {
		return se.Kind
	}
	return fmt.Sprintf("not a server error: %v", err)
}

// TestClientProtocolMsg: msg_send publishes on the node's MQTT broker (a
// real mosquitto_sub receives it); an MQTT publish (a real mosquitto_pub)
// reaches msg_monitor, decoded when it is msgpack, raw with an error when
// it is not, raw on request; ':' topics live under the sync prefix; the
// KV and peer sync topics are refused with kind permission, malformed
// topics with kind invalid.
func TestClientProtocolMsg(t *testing.T) {
	bn, c := actionNode(t, "mq")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port := fmt.Sprint(bn.port)

	// msg_send → mosquitto_sub (hex payload). Resend until the
	// subscriber, which takes one message, has got one.
	var out bytes.Buffer
	sub := exec.Command(needTool(t, "mosquitto_sub", "mosquitto-clients"), "-h", "127.0.0.1", "-p", port, "-V", "mqttv5",
		"-t", "app/#", "-F", "%t %x", "-C", "1", "-W", "20")
	sub.Stdout = &out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sub.Wait() }()
	data := msgp.AppendString(msgp.AppendArrayHeader(nil, 2), "Hello")
	data = msgp.AppendInt(data, 42)
	for done := false; !done; {
		if err := c.MsgSend(ctx, []string{"app", "x"}, data); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("mosquitto_sub: %v", err)
			}
			done = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	if got := strings.TrimSpace(out.String()); got != "app/x 92a548656c6c6f2a" {
		t.Errorf("mosquitto_sub got %q", got)
	}

	// mosquitto_pub → msg_monitor.
	msgs, _ := startMonitor(t, c, []string{"app", "#"}, false)
	rawMsgs, _ := startMonitor(t, c, []string{"app", "+"}, true)
	file := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(needTool(t, "mosquitto_pub", "mosquitto-clients"), "-h", "127.0.0.1", "-p", port,
		"-q", "1", "-t", "app/y", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	if m := nextMsg(t, msgs); !slices.Equal(m.Topic, []string{"app", "y"}) || !bytes.Equal(m.Data, data) || m.Raw != nil || m.Err != "" {
		t.Errorf("msgpack publish seen as %+v", m)
	}
	if m := nextMsg(t, rawMsgs); !bytes.Equal(m.Raw, data) || m.Data != nil || m.Err != "" {
		t.Errorf("raw monitor: %+v", m)
	}
	pub(t, bn.port, "app/z/deep", "hello")
	if m := nextMsg(t, msgs); !slices.Equal(m.Topic, []string{"app", "z", "deep"}) || string(m.Raw) != "hello" || m.Err == "" || m.Data != nil {
		t.Errorf("text publish seen as %+v", m)
	}

	// ':' is the sync prefix; the peers' part of it is not reachable.
	syncMsgs, _ := startMonitor(t, c, []string{":", "#"}, false)
	if err := c.MsgSend(ctx, []string{":ping"}, msgp.AppendNil(nil)); err != nil {
		t.Fatal(err)
	}
	if m := nextMsg(t, syncMsgs); strings.Join(m.Topic, "/") != "edgekv/sync/ping" || !bytes.Equal(m.Data, []byte{0xc0}) {
		t.Errorf(":ping seen as %+v", m)
	}
	for _, topic := range [][]string{{"kv", "room"}, {"edgekv", "sync", "to", "x", "from", "mq", "update"}, {":to", "x"}} {
		if err := c.MsgSend(ctx, topic, []byte{1}); serverKind(err) != "permission" {
			t.Errorf("msg_send %v: %v, want a permission error", topic, err)
		}
	}
	for _, topic := range [][]string{{"a", "+"}, {}, {"a\x00"}} {
		if err := c.MsgSend(ctx, topic, []byte{1}); serverKind(err) != "invalid" {
			t.Errorf("msg_send %v: %v, want an invalid error", topic, err)
		}
	}
	if err := c.MsgMonitor(ctx, []string{"a", "#", "b"}, false, func(kvclient.Message) error { return nil }); serverKind(err) != "invalid" {
		t.Errorf("msg_monitor a/#/b: %v, want an invalid error", err)
	}
	// Nothing else arrived: the refused sends published nothing.
	select {
	case m := <-syncMsgs:
		t.Errorf("unexpected %+v", m)
	case m := <-msgs:
		t.Errorf("unexpected %+v", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestClientProtocolMsgMonitorSlow: a monitor whose client stops reading
// holds up neither MQTT publishers nor other clients; its queue
// overflows and, once the client reads again, the stream ends with an
// error after the messages queued before.
func TestClientProtocolMsgMonitorSlow(t *testing.T) {
	defer func(q int) { edgekv.MonitorQueue = q }(edgekv.MonitorQueue)
	edgekv.MonitorQueue = 20
	bn, c := actionNode(t, "slow")
	other := actionClient(t, bn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	overflows := broker.MonitorOverflows()

	block := make(chan struct{})
	started := make(chan struct{})
	var got []int64
	errc := make(chan error, 1)
	go func() {
		errc <- c.MsgMonitor(ctx, []string{"flood"}, false, func(m kvclient.Message) error {
			if m.Started {
				close(started)
				return nil
			}
			<-block // a client that stops reading
			v, _, err := msgp.ReadInt64Bytes(m.Data)
			if err != nil {
				return fmt.Errorf("message %+v: %w", m, err)
			}
			got = append(got, v)
			return nil
		})
	}()
	<-started
	// Numbered messages first, then 200 publishes of a real MQTT client,
	// all while the monitor is stuck: none of them waits for it.
	begin := time.Now()
	for i := range 50 {
		if err := other.MsgSend(ctx, []string{"flood"}, msgp.AppendInt(nil, i)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(needTool(t, "mosquitto_pub", "mosquitto-clients"), "-h", "127.0.0.1", "-p", fmt.Sprint(bn.port),
		"-q", "1", "-t", "flood", "-m", "x", "--repeat", "200").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("250 publishes took %v with a stuck monitor", d)
	}
	if _, err := other.Set(ctx, tree.Path{tree.Str("still")}, msgp.AppendBool(nil, true), kvclient.WriteOpts{}); err != nil {
		t.Fatalf("another client's write while a monitor is stuck: %v", err)
	}
	eventually(t, 10*time.Second, "the monitor overflowed", func() error {
		if broker.MonitorOverflows() == overflows {
			return errors.New("no overflow yet")
		}
		return nil
	})
	select {
	case err := <-errc:
		t.Fatalf("monitor ended early: %v", err)
	default:
	}
	close(block)
	select {
	case err := <-errc:
		if serverKind(err) != "unavailable" || !strings.Contains(err.Error(), "fell too many messages behind") {
			t.Errorf("monitor ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the overflowed monitor did not end")
	}
	// Before the error it delivered what it held (the flow-control
	// window of 10 and the queue of 20), in order, without a gap.
	if len(got) < edgekv.MonitorQueue || len(got) > edgekv.MonitorQueue+10 {
		t.Errorf("got %d messages before the error, want the queue (%d) plus at most the window", len(got), edgekv.MonitorQueue)
	}
	for i, v := range got {
		if v != int64(i) {
			t.Fatalf("message %d is %d: %v", i, v, got)
		}
	}
}

// TestClientProtocolRoot: after root the connection's paths are relative
// to it, in requests and in replies (get_tree, watch), and other
// connections are unaffected; test_acl answers as MoaT-KV's super-root.
func TestClientProtocolRoot(t *testing.T) {
	bn, c := actionNode(t, "rt")
	other := actionClient(t, bn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	home := tree.Path{tree.Str("home"), tree.Str("kitchen")}
	if err := bn.Write(ctx, home, msgp.AppendString(nil, "room")); err != nil {
		t.Fatal(err)
	}
	e, err := c.Root(ctx, home)
	if err != nil || string(e.Value) != "\xa4room" || len(e.Chain) != 1 || e.Chain[0].Node != "rt" {
		t.Fatalf("root: %+v %v", e, err)
	}
	temp := tree.Path{tree.Str("temp")}
	if _, err := c.Set(ctx, temp, msgp.AppendFloat64(nil, 21.5), kvclient.WriteOpts{}); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := bn.Get(ctx, home.Append(temp...)); !ok || !bytes.Equal(v, msgp.AppendFloat64(nil, 21.5)) {
		t.Fatalf("the node holds %x at home.kitchen.temp", v)
	}
	if _, found, _ := other.Get(ctx, temp, 0); found {
		t.Error("another connection sees temp at the top")
	}
	var paths []string
	if err := c.Tree(ctx, tree.Path{}, func(it kvclient.Item) error {
		paths = append(paths, it.Path.String())
		return nil
	}); err != nil || fmt.Sprint(paths) != "[: temp]" {
		t.Errorf("tree after root: %v %v", paths, err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	items := make(chan kvclient.Item, 10)
	go c.Watch(wctx, tree.Path{}, true, func(it kvclient.Item) error { items <- it; return nil })
	for it := range items {
		if it.UpToDate {
			break
		}
	}
	if _, err := other.Set(ctx, home.Append(tree.Str("light")), msgp.AppendBool(nil, true), kvclient.WriteOpts{}); err != nil {
		t.Fatal(err)
	}
	select {
	case it := <-items:
		if it.Path.String() != "light" {
			t.Errorf("watch after root got %s", it.Path)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch after root saw no change")
	}
	a, err := c.TestACL(ctx, temp, "w", "")
	if err != nil || !a.Allowed {
		t.Errorf("test_acl: %+v %v", a, err)
	}
	if _, err := c.TestACL(ctx, temp, "", "guest"); serverKind(err) != "unavailable" {
		t.Errorf("test_acl of a named ACL: %v", err)
	}
	if _, err := c.TestACL(ctx, temp, "?", ""); serverKind(err) != "invalid" {
		t.Errorf("test_acl mode ?: %v", err)
	}
}

// TestClientProtocolEnumNode: on two linked nodes, enum_node lists the
// ticks whose entries hold a node on their chain, current only those it
// heads.
func TestClientProtocolEnumNode(t *testing.T) {
	nodes := startBenchNodes(t, []string{"e1", "e2"}, [][]int{{1}, {}}, func(_ int, c *boards.Config) {
		c.Listen.Client = "127.0.0.1:0"
	})
	waitLinks(t, nodes, []int{1, 1})
	c1, c2 := actionClient(t, nodes[0]), actionClient(t, nodes[1])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, q := tree.Path{tree.Str("p")}, tree.Path{tree.Str("q")}
	r1, err := c1.Set(ctx, p, msgp.AppendInt(nil, 1), kvclient.WriteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	rq, err := c1.Set(ctx, q, msgp.AppendInt(nil, 1), kvclient.WriteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	t1, tq := r1.Chain[0].Tick, rq.Chain[0].Tick
	// e2 overwrites p once it has e1's version: chain e2:u, e1:t1.
	eventually(t, 10*time.Second, "p reached e2", func() error {
		if _, ok, _ := nodes[1].Get(ctx, p); !ok {
			return errors.New("not yet")
		}
		return nil
	})
	r2, err := c2.Set(ctx, p, msgp.AppendInt(nil, 2), kvclient.WriteOpts{Head: &r1.Chain[0]})
	if err != nil {
		t.Fatal(err)
	}
	u := r2.Chain[0].Tick
	if len(r2.Chain) != 2 || r2.Chain[1] != r1.Chain[0] {
		t.Fatalf("e2's chain %v", r2.Chain)
	}
	eventually(t, 10*time.Second, "e2's version reached e1", func() error {
		if e, _, _ := c1.Get(ctx, p, 1); len(e.Chain) == 0 || e.Chain[0].Node != "e2" {
			return errors.New("not yet")
		}
		return nil
	})
	all, err := c1.EnumNode(ctx, "e1", 0, false)
	if err != nil || !slices.Contains(all, t1) || !slices.Contains(all, tq) || !slices.IsSorted(all) {
		t.Errorf("enum_node e1: %v %v (want %d and %d among them)", all, err, t1, tq)
	}
	cur, err := c1.EnumNode(ctx, "e1", 0, true)
	if err != nil || slices.Contains(cur, t1) || !slices.Contains(cur, tq) {
		t.Errorf("enum_node e1 current: %v %v (want %d, not %d)", cur, err, tq, t1)
	}
	if cur2, err := c1.EnumNode(ctx, "e2", 0, true); err != nil || !slices.Contains(cur2, u) {
		t.Errorf("enum_node e2 current on e1: %v %v (want %d)", cur2, err, u)
	}
	if one, err := c1.EnumNode(ctx, "e1", 1, false); err != nil || len(one) != 1 || one[0] != all[0] {
		t.Errorf("enum_node e1 max 1: %v %v", one, err)
	}
	if _, err := c1.EnumNode(ctx, "nobody", 0, false); !errors.Is(err, tree.ErrNotFound) {
		t.Errorf("enum_node of an unknown node: %v", err)
	}
	if _, err := c1.EnumNode(ctx, "", 0, false); serverKind(err) != "invalid" {
		t.Errorf("enum_node without a name: %v", err)
	}
}

// TestCLIMsg: "edgekv msg send" publishes YAML as msgpack (and --raw as
// it is); "edgekv msg monitor -C 1" prints one message and exits.
func TestCLIMsg(t *testing.T) {
	bn, c := actionNode(t, "cli")
	addr := bn.clientAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, _ := startMonitor(t, c, []string{"home", "#"}, false)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"msg", "send", "-s", addr, "home/door", "{open: true}"}, &stdout, &stderr); code != 0 {
		t.Fatalf("msg send: exit %d: %s", code, stderr.String())
	}
	m := nextMsg(t, msgs)
	if v, _, err := msgp.ReadMapStrIntfBytes(m.Data, nil); err != nil || strings.Join(m.Topic, "/") != "home/door" || v["open"] != true {
		t.Errorf("msg send delivered %+v (%v)", m, err)
	}
	if code := run([]string{"msg", "send", "-s", addr, "--raw", "home/note", "hi"}, &stdout, &stderr); code != 0 {
		t.Fatalf("msg send --raw: exit %d: %s", code, stderr.String())
	}
	if m := nextMsg(t, msgs); string(m.Raw) != "hi" || m.Err == "" {
		t.Errorf("msg send --raw delivered %+v", m)
	}
	stderr.Reset()
	if code := run([]string{"msg", "send", "-s", addr, "kv/x", "1"}, &stdout, &stderr); code != exitServer || !strings.Contains(stderr.String(), "permission") {
		t.Errorf("msg send to kv/x: exit %d: %s", code, stderr.String())
	}

	// msg monitor -C 1: send until the monitor has printed one.
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"msg", "monitor", "-s", addr, "-o", "json", "-C", "1", "home/+"}, &out, &errOut)
	}()
	for finished := false; !finished; {
		if err := c.MsgSend(ctx, []string{"home", "temp"}, msgp.AppendFloat64(nil, 21.5)); err != nil {
			t.Fatal(err)
		}
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("msg monitor: exit %d: %s", code, errOut.String())
			}
			finished = true
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("msg monitor did not exit")
		}
	}
	if got := strings.TrimSpace(out.String()); got != `{"topic":"home/temp","value":21.5}` {
		t.Errorf("msg monitor printed %q", got)
	}
}
