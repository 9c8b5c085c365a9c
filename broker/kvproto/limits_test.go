package kvproto

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tree"
)

// idleWatchTree is a fakeTree whose watches send nothing and last until
// their context ends; it counts the watches running.
type idleWatchTree struct {
	*fakeTree
	running atomic.Int32
}

func (w *idleWatchTree) Watch(ctx context.Context, p tree.Path, fetch bool, send func(WatchItem) error) error {
	w.running.Add(1)
	defer w.running.Add(-1)
	<-ctx.Done()
	return nil
}

// serveTCP serves one loopback TCP connection with s and returns the
// client's side and ServeConn's result.
func serveTCP(t *testing.T, s *Server) (net.Conn, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- s.ServeConn(context.Background(), c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, done
}

// A client that closes its connection with more endless watches open than
// a connection may run requests at once (64) is noticed at once: the
// reader never waits on a stream, so it sees the close, and every watch
// ends. (Before, the reader waited for a free slot that no watch would
// ever give back, the close went unseen, and the watches stayed.)
func TestClosedClientWithManyWatches(t *testing.T) {
	tr := &idleWatchTree{fakeTree: newFakeTree("n", 1, 1)}
	c, done := serveTCP(t, &Server{Tree: tr})
	// Send everything without reading a reply: 200 watches, the most a
	// connection may keep open at once is 256.
	var b []byte
	for seq := 1; seq <= 200; seq++ {
		b = append(b, req("path", tree.Path{tree.Str("w")}, "action", "watch", "seq", seq)...)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.running.Load() < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 200 watches running after 5 s", tr.running.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	select {
	case err := <-done:
		// A close with replies unread is a reset: nil or that error.
		t.Logf("ServeConn ended: %v", err)
	case <-time.After(2 * time.Second):
		t.Fatalf("the client's close went unseen for 2 s (%d watches running)", tr.running.Load())
	}
	if n := tr.running.Load(); n != 0 {
		t.Fatalf("%d watches still running after the connection ended", n)
	}
}

// A connection may keep MaxStreams streams open; one more is refused with
// an error, not queued, and a stop makes room at once.
func TestMaxStreams(t *testing.T) {
	tr := &idleWatchTree{fakeTree: newFakeTree("n", 1, 1)}
	cli, srv := net.Pipe()
	s := &Server{Tree: tr, MaxStreams: 3}
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), srv) }()
	c := &conn{t: t, c: cli, r: NewReader(cli, 0), done: done}
	t.Cleanup(func() {
		cli.Close()
		<-done
	})
	c.recv() // greeting
	watch := func(seq int) map[string]any {
		c.send(req("path", tree.Path{tree.Str("w")}, "action", "watch", "seq", seq))
		return decode(t, c.recv())
	}
	for seq := 1; seq <= 3; seq++ {
		if m := watch(seq); m["state"] != "start" {
			t.Fatalf("watch %d: %v", seq, m)
		}
	}
	if m := watch(4); m["kind"] != "unavailable" || m["seq"] != int64(4) {
		t.Fatalf("a fourth stream: %v, want an unavailable error", m)
	}
	c.send(req("task", 2, "action", "stop", "seq", 5))
	if m := decode(t, c.recv()); m["result"] != true {
		t.Fatalf("stop: %v", m)
	}
	if m := watch(6); m["state"] != "start" {
		t.Fatalf("a stream after a stop: %v", m)
	}
	// Short requests are not held up by open streams.
	c.send(req("path", tree.Path{tree.Str("k")}, "action", "get_value", "seq", 7))
	if m := decode(t, c.recv()); m["seq"] != int64(7) {
		t.Fatalf("get_value beside three streams: %v", m)
	}
}
