package main

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// A client's fake_info with an absurd tick for the node itself is refused
// and changes nothing: the node keeps writing with ticks that count on.
// (Accepted, it made the next local tick wrap to 0 and every later write
// fail.)
func TestHugeTickRefused(t *testing.T) {
	_, c := actionNode(t, "lim")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tick := range []uint64{math.MaxUint64, tree.MaxCounter + 1} {
		err := c.ImportInfo(ctx, "x", map[string]uint64{"lim": tick}, nil)
		var se *kvclient.ServerError
		if !errors.As(err, &se) || se.Kind != "invalid" {
			t.Fatalf("fake_info with tick %d: %v, want an invalid error", tick, err)
		}
	}
	var huge tree.RangeSet
	huge.AddRange(1, math.MaxUint64)
	err := c.ImportInfo(ctx, "x", nil, map[string]tree.RangeSet{"lim": huge})
	var se *kvclient.ServerError
	if !errors.As(err, &se) || se.Kind != "invalid" {
		t.Fatalf("fake_info with a known range up to 2^64-1: %v, want an invalid error", err)
	}
	var last uint64
	for i := range 3 {
		res, err := c.Set(ctx, tree.Path{tree.Str("a"), tree.Int(int64(i))}, msgp.AppendInt(nil, i), kvclient.WriteOpts{})
		if err != nil {
			t.Fatalf("set %d after the refused fake_info: %v", i, err)
		}
		h, _ := res.Chain.Head()
		if h.Node != "lim" || h.Tick <= last || h.Tick > 1<<51 { // a fresh node starts below 2^50
			t.Fatalf("set %d: head %+v after tick %d", i, h, last)
		}
		last = h.Tick
	}
}
