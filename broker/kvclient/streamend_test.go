package kvclient

import (
	"context"
	"errors"
	"testing"

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
