package kvproto

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// quickTree is a fakeTree whose writes do not wait for a disk.
type quickTree struct{ *fakeTree }

func (quickTree) QuickWrites() bool { return true }

// countingConn counts the server's writes.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// serveQuickTCP serves tr on a loopback TCP connection until the test
// ends and returns the client side and the server side's write counter.
func serveQuickTCP(t *testing.T, tr Tree) (net.Conn, *countingConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	srv := &countingConn{Conn: raw}
	serveConn(t, &Server{Tree: tr}, cli, srv)
	return cli, srv
}

// TestPipelinedQuick: a client of a QuickWriter sends 200 sets of one key
// and a get in one write. Every request is answered once, in the order
// sent (the reader answers them itself), the get sees the last set, and
// the replies go out in far fewer writes than requests.
func TestPipelinedQuick(t *testing.T) {
	cli, srv := serveQuickTCP(t, quickTree{newFakeTree("ref1", 1, 1)})
	r := NewReader(cli, 0)
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.Next(); err != nil { // greeting
		t.Fatal(err)
	}
	before := srv.writes.Load()
	const n = 200
	var batch []byte
	for i := 1; i <= n; i++ {
		batch = append(batch, req("path", pa, "value", i, "nchain", 0, "action", "set_value", "seq", i)...)
	}
	batch = append(batch, req("path", pa, "action", "get_value", "seq", n+1)...)
	if _, err := cli.Write(batch); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= n+1; want++ {
		msg, err := r.Next()
		if err != nil {
			t.Fatalf("reply %d: %v", want, err)
		}
		m := decode(t, msg)
		if num(m["seq"]) != int64(want) {
			t.Fatalf("reply %d has seq %v: %v", want, m["seq"], m)
		}
		if want <= n && m["changed"] != true {
			t.Fatalf("set %d: %v", want, m)
		}
		if want == n+1 && num(m["value"]) != int64(n) {
			t.Fatalf("get after %d sets in one write: %v", n, m)
		}
	}
	writes := srv.writes.Load() - before
	t.Logf("%d replies in %d writes", n+1, writes)
	if writes > (n+1)/4 {
		t.Errorf("%d replies took %d writes: replies to requests that came together should share writes", n+1, writes)
	}
}

// TestPipelinedQuickUnread: a client sends 20,000 requests (about 1 MB)
// before it reads any reply; the reader answers them itself. Its batches
// of replies queue for the writer goroutine (up to the queue's budget)
// rather than wait on the client's socket, so the client's write completes
// and every reply then arrives, in order. (A reply the reader makes when
// nothing more has come is written at once: a client that stops reading
// for longer than the socket buffers hold stalls its own connection.)
func TestPipelinedQuickUnread(t *testing.T) {
	cli, _ := serveQuickTCP(t, quickTree{newFakeTree("ref1", 1, 1)})
	r := NewReader(cli, 0)
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.Next(); err != nil { // greeting
		t.Fatal(err)
	}
	const n = 20000
	var batch []byte
	for i := 1; i <= n; i++ {
		p := tree.Path{tree.Str("k"), tree.Int(int64(i % 100))}
		batch = append(batch, req("path", p, "value", msgp.AppendString(nil, fmt.Sprintf("%032d", i)), "nchain", 3, "action", "set_value", "seq", i)...)
	}
	if _, err := cli.Write(batch); err != nil {
		t.Fatalf("writing %d bytes of requests before reading: %v", len(batch), err)
	}
	for want := 1; want <= n; want++ {
		msg, err := r.Next()
		if err != nil {
			t.Fatalf("reply %d: %v", want, err)
		}
		if m := decode(t, msg); num(m["seq"]) != int64(want) || m["changed"] != true {
			t.Fatalf("reply %d: %v", want, m)
		}
	}
}
