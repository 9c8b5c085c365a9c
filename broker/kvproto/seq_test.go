package kvproto

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// A seq in use by a running stream is refused for a new request (it
// would take over the stream's name), and the stream still ends when the
// client hangs up.
func TestSeqInUseRefused(t *testing.T) {
	c, bt := startBus(t)
	c.send(req("topic", "t", "action", "msg_monitor", "seq", 5))
	if m := decode(t, c.recv()); m["state"] != "start" {
		t.Fatalf("monitor start: %v", m)
	}
	bt.bus.waitMonitor(t)
	c.send(req("action", "get_tock", "seq", 5))
	if m := decode(t, c.recv()); m["seq"] != int64(5) || m["kind"] != "invalid" || m["error"] == nil {
		t.Fatalf("a request reusing a running seq: %v, want an invalid error", m)
	}
	// So is a request that does not parse but has that seq.
	c.send(req("seq", 5, "action", 7))
	if m := decode(t, c.recv()); m["seq"] != int64(5) || m["kind"] != "invalid" {
		t.Fatalf("a malformed request reusing a running seq: %v, want an invalid error", m)
	}
	// The monitor still answers to its seq: stop ends it.
	c.send(req("action", "stop", "task", 5, "seq", 8))
	if m := decode(t, c.recv()); m["seq"] != int64(8) || m["result"] != true {
		t.Fatalf("stop of the monitor: %v", m)
	}
	c.send(req("topic", "t", "action", "msg_monitor", "seq", 5))
	if m := decode(t, c.recv()); m["state"] != "start" {
		t.Fatalf("a new monitor on the freed seq: %v", m)
	}
	bt.bus.waitMonitor(t)
	// A finished request's seq is free again at once.
	for range 3 {
		c.send(req("action", "get_tock", "seq", 6))
		if m := decode(t, c.recv()); m["seq"] != int64(6) || m["error"] != nil {
			t.Fatalf("get_tock with a reused, finished seq: %v", m)
		}
	}
	c.c.Close()
	select {
	case err := <-c.done:
		c.done <- err // for the cleanup's check
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn still runs 5 s after the client hung up")
	}
}

// A client that sends get_tree and closes its side without acking gets
// the whole tree and the end, not a stream cut at the window.
func TestGetTreeAfterHalfClose(t *testing.T) {
	bt := busTree{fakeTree: newFakeTree("ref1", 2007, 6144), bus: newFakeBus(5)}
	const n = 40 // four windows of 10
	for i := range n {
		if _, err := bt.Set(context.Background(), tree.Path{tree.Str("h"), tree.Int(int64(i))}, msgp.AppendInt(nil, i), Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- (&Server{Tree: bt}).ServeConn(context.Background(), conn)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := NewReader(conn, 0)
	if _, err := r.Next(); err != nil { // greeting
		t.Fatal(err)
	}
	out := AppendQLenReply(nil, 10)
	out = append(out, req("action", "get_tree", "path", tree.Path{tree.Str("h")}, "seq", 1)...)
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	items, ended := 0, false
	for !ended {
		msg, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d items: %v", items, err)
		}
		m := decode(t, msg)
		switch {
		case m["state"] == "end":
			ended = true
		case m["value"] != nil:
			items++
		}
	}
	if items != n || !ended {
		t.Fatalf("%d of %d items, end %v", items, n, ended)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeConn: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn still runs")
	}
}
