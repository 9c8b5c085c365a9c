package kvclient_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// Connect to a node, write a value, read it back, and watch a subtree.
// (Not run as a test: it needs a node listening on 127.0.0.1:27586.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := kvclient.Dial(ctx, "127.0.0.1:27586")
	if err != nil {
		fmt.Println("no node:", err)
		return
	}
	defer c.Close()

	temp := tree.Path{tree.Str("room"), tree.Str("temp")}
	if _, err := c.Set(ctx, temp, msgp.AppendFloat64(nil, 21.5), kvclient.WriteOpts{}); err != nil {
		fmt.Println(err)
		return
	}
	e, found, err := c.Get(ctx, temp, 1)
	if err != nil || !found {
		fmt.Println("not found", err)
		return
	}
	v, _, _ := msgp.ReadFloat64Bytes(e.Value)
	fmt.Println(v, "written by", e.Chain[0].Node)

	// A conditional write: only if nobody changed it since we read it.
	if _, err := c.Set(ctx, temp, msgp.AppendFloat64(nil, 22), kvclient.WriteOpts{Head: &e.Chain[0]}); err != nil {
		fmt.Println("someone else wrote first:", err)
	}

	// Watch: the current entries, an up-to-date marker, then changes.
	_ = c.Watch(ctx, tree.Path{tree.Str("room")}, true, func(it kvclient.Item) error {
		if it.UpToDate {
			return context.Canceled // stop after the initial state
		}
		fmt.Println(it.Path)
		return nil
	})
}
