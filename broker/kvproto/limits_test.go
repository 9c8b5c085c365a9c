package kvproto

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

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

// subTree is a fakeTree that serves watches as a Subscriber: changes are
// pushed by the test with change.
type subTree struct {
	*fakeTree
	mu   sync.Mutex
	subs map[*fakeSub]bool
}

type fakeSub struct {
	t       *subTree
	prefix  tree.Path
	notify  func()
	mu      sync.Mutex
	q       []WatchItem
	initial []WatchItem
}

func newSubTree() *subTree {
	return &subTree{fakeTree: newFakeTree("n", 1, 1), subs: map[*fakeSub]bool{}}
}

func (t *subTree) Subscribe(ctx context.Context, p tree.Path, fetch bool, notify func()) (Subscription, error) {
	s := &fakeSub{t: t, prefix: p, notify: notify}
	if fetch {
		t.fakeTree.mu.Lock()
		t.fakeTree.t.Walk(p, func(e *tree.Entry) bool {
			if v, ok := e.Value(); ok {
				s.initial = append(s.initial, WatchItem{Path: e.Path(), Value: v, Tock: e.Tock()})
			}
			return true
		})
		t.fakeTree.mu.Unlock()
		s.initial = append(s.initial, WatchItem{UpToDate: true})
	}
	t.mu.Lock()
	t.subs[s] = true
	t.mu.Unlock()
	return s, nil
}

// change queues a change for every watch below whose prefix p lies.
func (t *subTree) change(p tree.Path, v string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		if p.HasPrefix(s.prefix) {
			s.mu.Lock()
			s.q = append(s.q, WatchItem{Path: p, Value: msgp.AppendString(nil, v), Tock: 1})
			s.mu.Unlock()
			s.notify()
		}
	}
}

func (t *subTree) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.subs)
}

func (s *fakeSub) Drain(fn func(WatchItem) bool) error {
	for len(s.initial) > 0 {
		if !fn(s.initial[0]) {
			return nil
		}
		s.initial = s.initial[1:]
	}
	for {
		s.mu.Lock()
		if len(s.q) == 0 {
			s.mu.Unlock()
			return nil
		}
		it := s.q[0]
		s.mu.Unlock()
		if !fn(it) {
			return nil
		}
		s.mu.Lock()
		s.q = s.q[1:]
		s.mu.Unlock()
	}
}

func (s *fakeSub) Tock() uint64 { return 1 }

func (s *fakeSub) Close() {
	s.t.mu.Lock()
	delete(s.t.subs, s)
	s.t.mu.Unlock()
}

// Watches of a Subscriber tree run on the connection's pump, not on a
// goroutine each: 200 watches on one connection add a handful of
// goroutines; each still gets start, its initial state, uptodate and its
// changes in order, within its flow-control window; the client's close
// ends them all.
func TestSubscribedWatches(t *testing.T) {
	tr := newSubTree()
	for i := range 3 {
		tr.Set(context.Background(), tree.Path{tree.Str("w"), tree.Int(int64(i))}, msgp.AppendInt(nil, i), Cond{})
	}
	g0 := runtime.NumGoroutine()
	c, done := serveTCP(t, &Server{Tree: tr})
	rd := NewReader(c, 0)
	next := func() map[string]any {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, b)
	}
	next() // greeting
	if _, err := c.Write(AppendQLenReply(nil, 5)); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for seq := 1; seq <= 200; seq++ {
		b = append(b, req("path", tree.Path{tree.Str("w")}, "fetch", true, "action", "watch", "seq", seq)...)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	// Each watch: start, 3 entries, uptodate = wseq 1..5, the whole window.
	got := map[int64][]string{}
	for range 200 * 5 {
		m := next()
		seq, _ := strconv.ParseInt(fmt.Sprint(m["seq"]), 10, 64)
		what := fmt.Sprint(m["state"])
		if m["state"] == nil {
			what = fmt.Sprint(m["value"])
		}
		got[seq] = append(got[seq], what)
	}
	for seq := int64(1); seq <= 200; seq++ {
		if s := strings.Join(got[seq], " "); s != "start 0 1 2 uptodate" {
			t.Fatalf("watch %d: %s", seq, s)
		}
	}
	if n := runtime.NumGoroutine() - g0; n > 20 {
		t.Errorf("%d goroutines more with 200 watches open", n)
	}
	// A change: beyond the window of 5, it waits for the ack.
	tr.change(tree.Path{tree.Str("w"), tree.Str("x")}, "changed")
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if b, err := rd.Next(); err == nil {
		t.Fatalf("a message beyond the window: %v", decode(t, b))
	}
	c.SetReadDeadline(time.Time{})
	rd = NewReader(c, 0) // the timed-out read left the old reader unusable
	if _, err := c.Write(req("seq", 7, "state", "ack", "ack", 1)); err != nil {
		t.Fatal(err)
	}
	next = func() map[string]any {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, b)
	}
	if m := next(); fmt.Sprint(m["seq"]) != "7" || m["value"] != "changed" || fmt.Sprint(m["wseq"]) != "6" {
		t.Fatalf("after the ack: %v", m)
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the client's close went unseen")
	}
	if n := tr.open(); n != 0 {
		t.Fatalf("%d watches still subscribed after the connection ended", n)
	}
}
