package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/tree"
)

// TestNodeInProcess runs two nodes in this process (so `make race` checks
// the node's goroutines): a write on one arrives on the other, a delete
// too, and both stop cleanly.
func TestNodeInProcess(t *testing.T) {
	nodes := startBenchNodes(t, []string{"n1", "n2"}, [][]int{{1}, {}}, nil)
	waitLinks(t, nodes, []int{1, 1})
	ctx := context.Background()
	p := tree.Path{tree.Str("room"), tree.Int(3), tree.Str("temp")}
	if err := nodes[0].n.Write(ctx, p, msgp.AppendFloat64(nil, 21.5)); err != nil {
		t.Fatal(err)
	}
	waitFor := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, ok, err := nodes[1].n.Get(ctx, p)
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
	if err := nodes[1].n.Write(ctx, p, nil); err != nil {
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

// TestRestartedNodeDoesNotReuseTicks: a node (sync interval) whose data is
// lost after its peer received its changes must not write again with the
// same ticks (the peer would ignore those writes as already seen). Its
// local writes wait until the peer's digest has told it its own tick; the
// lost changes come back from the peer.
func TestRestartedNodeDoesNotReuseTicks(t *testing.T) {
	nodes := startBenchNodes(t, []string{"a", "b"}, [][]int{{1}, {}}, nil)
	waitLinks(t, nodes, []int{1, 1})
	ctx := context.Background()
	for i := range 10 {
		if err := nodes[0].n.Write(ctx, tree.Path{tree.Str("k"), tree.Int(int64(i))}, msgp.AppendInt(nil, i)); err != nil {
			t.Fatal(err)
		}
	}
	key9 := tree.Path{tree.Str("k"), tree.Int(9)}
	waitValue := func(bn *benchNode, p tree.Path) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, ok, _ := bn.n.Get(ctx, p); ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never got %s", bn.n.cfg.Name, p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitValue(nodes[1], key9)
	// a loses everything on disk, then comes back.
	cfgA := nodes[0].n.cfg
	nodes[0].stop()
	if err := os.RemoveAll(cfgA.DataDir); err != nil {
		t.Fatal(err)
	}
	c := boards.DefaultConfig("a")
	c.Data.Dir = cfgA.DataDir
	c.Listen.MQTT = []string{fmt.Sprintf("127.0.0.1:%d", nodes[0].port)}
	c.Listen.Client = ""
	c.Sync.Heartbeat = boards.Duration(200 * time.Millisecond)
	c.LogLevel = boards.LogWarn
	c.PeerUsers = []boards.PeerUser{{Username: "b", Password: "pw-b"}}
	c.Peers = []boards.Link{{Name: "b", Addr: fmt.Sprintf("127.0.0.1:%d", nodes[1].port), Username: "a", Password: "pw-a"}}
	a := runBenchNode(t, c, nodes[0].port)
	fresh := tree.Path{tree.Str("after"), tree.Str("restart")}
	if err := a.n.Write(ctx, fresh, msgp.AppendString(nil, "new")); err != nil {
		t.Fatal(err)
	}
	// The new write must reach b: with a reused tick b would drop it.
	waitValue(nodes[1], fresh)
	// And a gets its lost changes back from b.
	waitValue(a, key9)
	done := make(chan uint64, 1)
	a.n.post(func() { done <- a.n.r.Tree().Node("a").Tick() })
	if tick := <-done; tick <= 10 {
		t.Fatalf("a's tick after restart is %d, want > 10", tick)
	}
}
