package main

import (
	"context"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

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
