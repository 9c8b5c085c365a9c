package kvclient

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tree"
)

// A client that goes away ends its watch on the server at once, not at
// the watched subtree's next change (which may never come).
func TestClosedClientEndsServerWatch(t *testing.T) {
	s := startMemServer(t, nil)
	c, err := Dial(context.Background(), s.addr)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(context.Background(), tree.Path{tree.Str("w")}, true, func(it Item) error {
			if it.UpToDate {
				close(ready)
			}
			return nil
		})
	}()
	<-ready
	if n := s.tree.liveWatchers(); n != 1 {
		t.Fatalf("%d watches registered on the server, want 1", n)
	}
	c.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Watch after Close = %v, want ErrClosed", err)
	}
	pollUntil(t, "the server ended the watch", func() bool { return s.tree.liveWatchers() == 0 })
}

// A Reconnecting client's Root holds on every connection it makes.
func TestReconnectingKeepsRoot(t *testing.T) {
	s := startMemServer(t, nil)
	s.tree.put(wkey("a"), mstr("1"))
	r := NewReconnecting(s.addr, ReconnectOptions{Root: tree.Path{tree.Str("w")}})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		e, found, err := r.Get(ctx, tree.Path{tree.Str("a")}, 0)
		if err != nil || !found || !bytes.Equal(e.Value, mstr("1")) {
			t.Fatalf("get %d below the root: %v %v % x", i, found, err, e.Value)
		}
		if _, found, err := r.Get(ctx, wkey("a"), 0); err != nil || found {
			t.Fatalf("get %d of the full path below the root: found %v, %v; want not found", i, found, err)
		}
		s.drop()
	}
}

// A Root the node refuses is an error at once, not a node to wait for.
func TestReconnectingRootRefused(t *testing.T) {
	s := startMemServer(t, nil)
	r := NewReconnecting(s.addr, ReconnectOptions{Root: tree.Path{tree.Str("w"), tree.Nil()}})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err := r.Get(ctx, tree.Path{tree.Str("a")}, 0)
	var se *ServerError
	if !errors.As(err, &se) || se.Kind != "invalid" {
		t.Fatalf("Get with a refused root = %v, want the server's invalid error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v: retried a refused root", d)
	}
}
