package kvproto

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/internal/budget"
	"github.com/edgekv/edgekv/tree"
)

// startMessage returns the first part (n bytes) of a set_value request
// whose value is a binary string of size bytes: a message that is still
// arriving.
func startMessage(seq, size, n int) []byte {
	full := req("path", tree.Path{tree.Str("big")}, "action", "set_value", "seq", seq, "value", msgp.AppendBytes(nil, make([]byte, size)))
	return full[:n]
}

// tcpServer serves the connections of one listener with one Server.
type tcpServer struct {
	ln   net.Listener
	done chan error
}

func newTCPServer(t *testing.T, s *Server) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &tcpServer{ln: ln, done: make(chan error, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { ts.done <- s.ServeConn(ctx, c) }()
		}
	}()
	t.Cleanup(func() { cancel(); ln.Close() })
	return ts
}

func (ts *tcpServer) dial(t *testing.T) *conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cc := &conn{t: t, c: c, r: NewReader(c, 0)}
	cc.recv() // greeting
	return cc
}

// Unfinished messages of all connections together hold at most the
// budget: a connection that needs more waits, then is closed with an
// error that names the limit; the budget comes back when the holder goes,
// and a complete large message passes.
func TestBudgetBoundsUnfinishedMessages(t *testing.T) {
	b := budget.New("limits.receiving", 1<<20, 300*time.Millisecond)
	ts := newTCPServer(t, &Server{Tree: newFakeTree("n", 1, 1), Budget: b})

	holder := ts.dial(t)
	holder.send(startMessage(1, 2<<20, 900<<10)) // 900 KiB of a 2 MiB message: a 1 MiB buffer
	deadline := time.Now().Add(5 * time.Second)
	for b.Used() < 900<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("the holder took %d bytes of the budget after 5 s", b.Used())
		}
		time.Sleep(5 * time.Millisecond)
	}

	late := ts.dial(t)
	late.send(startMessage(1, 2<<20, 300<<10))
	start := time.Now()
	m := decode(t, late.recv())
	if m["kind"] != "unavailable" || !strings.Contains(m["error"].(string), "limits.receiving") {
		t.Fatalf("over budget: got %v, want a fatal unavailable error naming limits.receiving", m)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("cut off after %s, before the 300ms wait", waited)
	}
	if u := b.Used(); u > 1<<20 {
		t.Fatalf("budget used %d > 1 MiB", u)
	}

	holder.c.Close()
	deadline = time.Now().Add(5 * time.Second)
	for b.Used() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still taken 5 s after the holder closed", b.Used())
		}
		time.Sleep(5 * time.Millisecond)
	}
	ok := ts.dial(t)
	ok.send(req("path", tree.Path{tree.Str("big")}, "action", "set_value", "seq", 7, "value", msgp.AppendBytes(nil, bytes.Repeat([]byte{1}, 700<<10))))
	if m := decode(t, ok.recv()); m["seq"] != int64(7) || m["error"] != nil {
		t.Fatalf("a complete 700 KiB message: %v", m)
	}
	if u := b.Used(); u != 0 {
		t.Fatalf("%d bytes taken after the message was complete", u)
	}
}

// A large message that stops coming is cut off once it falls behind
// budget.MinRate (after budget.Grace), with a reason.
func TestBudgetStalledMessageCut(t *testing.T) {
	if testing.Short() {
		t.Skip("waits budget.Grace")
	}
	b := budget.New("limits.receiving", 64<<20, time.Second)
	ts := newTCPServer(t, &Server{Tree: newFakeTree("n", 1, 1), Budget: b})
	c := ts.dial(t)
	c.send(startMessage(1, 4<<20, 256<<10))
	start := time.Now()
	_ = c.c.SetReadDeadline(time.Now().Add(budget.Grace + 10*time.Second))
	msg, err := c.r.Next()
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, msg)
	if !strings.Contains(m["error"].(string), "slower than the 64 KiB/s") {
		t.Fatalf("got %v, want a fatal error about the rate", m)
	}
	if waited := time.Since(start); waited < budget.Grace {
		t.Fatalf("cut off after %s, before the grace of %s", waited, budget.Grace)
	}
	select {
	case err := <-ts.done:
		if err == nil {
			t.Fatal("ServeConn returned nil for a cut-off connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn still running")
	}
	if u := b.Used(); u != 0 {
		t.Fatalf("%d bytes still taken after the connection ended", u)
	}
}

// One connection more than MaxConns gets a fatal error naming the limit.
func TestMaxConns(t *testing.T) {
	ts := newTCPServer(t, &Server{Tree: newFakeTree("n", 1, 1), MaxConns: 2})
	a, b := ts.dial(t), ts.dial(t)
	c, err := net.Dial("tcp", ts.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := decode(t, (&conn{t: t, c: c, r: NewReader(c, 0)}).recv())
	if m["kind"] != "unavailable" || !strings.Contains(m["error"].(string), "at most 2 client connections (limits.client_connections)") {
		t.Fatalf("third connection: %v", m)
	}
	a.c.Close()
	<-ts.done
	<-ts.done // the refused one
	d := ts.dial(t)
	d.send(req("path", tree.Path{tree.Str("k")}, "action", "get_value", "seq", 1))
	if m := decode(t, d.recv()); m["seq"] != int64(1) {
		t.Fatalf("a connection after one closed: %v", m)
	}
	_ = b
}

// countingTree counts the gets it has served.
type countingTree struct {
	*fakeTree
	gets atomic.Int32
}

func (c *countingTree) Get(ctx context.Context, p tree.Path) (Entry, error) {
	c.gets.Add(1)
	return c.fakeTree.Get(ctx, p)
}

// A client that does not read its replies stops being served once
// MaxQueued bytes of replies wait for it: requests wait rather than pile
// up replies; once it reads, every reply comes.
func TestMaxQueuedRepliesBytes(t *testing.T) {
	tr := &countingTree{fakeTree: newFakeTree("n", 1, 1)}
	big := msgp.AppendBytes(nil, make([]byte, 600<<10))
	if _, err := tr.Set(context.Background(), tree.Path{tree.Str("big")}, big, Cond{}); err != nil {
		t.Fatal(err)
	}
	cli, srv := net.Pipe()
	s := &Server{Tree: tr, MaxQueued: 1 << 20, MaxInFlight: 2}
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), srv) }()
	t.Cleanup(func() { cli.Close(); <-done })
	c := &conn{t: t, c: cli, r: NewReader(cli, 0)}
	c.recv() // greeting
	go func() {
		for seq := 1; seq <= 10; seq++ {
			if _, err := cli.Write(req("path", tree.Path{tree.Str("big")}, "action", "get_value", "seq", seq)); err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	// One reply being written (the pipe takes nothing until read), none
	// more fits the 1 MiB queue, and the two running requests wait with
	// theirs: 3 gets. (A queue counted in replies took 5.)
	if n := tr.gets.Load(); n > 3 {
		t.Fatalf("%d gets served to a client that reads nothing, want ≤ 3", n)
	}
	for range 10 {
		if m := decode(t, c.recv()); m["value"] == nil {
			t.Fatalf("reply without a value: %v", m)
		}
	}
}
