package broker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tree/wire"
)

// linkEvents records a PeerLink's events in order.
type linkEvents struct {
	mu     sync.Mutex
	events []string
	ch     chan string
}

func newLinkEvents() *linkEvents { return &linkEvents{ch: make(chan string, 1000)} }

func (l *linkEvents) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.ch <- e:
	default:
	}
}

func (l *linkEvents) LinkUp(name string)   { l.add("up " + name) }
func (l *linkEvents) LinkDown(name string) { l.add("down " + name) }
func (l *linkEvents) LinkReceive(name string, kind wire.Kind, data []byte) {
	l.add("msg " + name + " " + kind.String() + " " + string(data))
}

func (l *linkEvents) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// next waits for the next event that want accepts.
func (l *linkEvents) next(t *testing.T, want func(string) bool) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-l.ch:
			if want(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("event not seen; events so far: %q", l.all())
			return ""
		}
	}
}

func is(s string) func(string) bool { return func(e string) bool { return e == s } }

// TestPeerLink: an outbound link to a real broker reports up once
// subscribed, carries messages both ways, resets itself (disconnect and
// redial, no test-only API) when its send queue overflows, and reports
// nothing after Run returned.
func TestPeerLink(t *testing.T) {
	tb := startBroker(t, nil)
	ev := newLinkEvents()
	l := NewPeerLink(PeerLinkConfig{Node: peer1, Name: testNode, Addr: tb.addr, Username: peer1, Password: peer1Pw, QueueLen: 4}, ev)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()

	ev.next(t, is("up "+testNode))
	tb.sync.waitFor(t, func(got []string) bool { return len(got) == 1 && got[0] == "up "+peer1 })
	if !l.Connected() {
		t.Fatal("Connected() false after LinkUp")
	}
	// Out: the broker's handler receives what the link sends.
	if err := l.Send(wire.KindHello, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-tb.sync.msgs:
		if m.peer != peer1 || m.kind != wire.KindHello || string(m.data) != "hi" {
			t.Fatalf("broker received %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the broker received nothing")
	}
	// In: what the broker sends to the peer arrives.
	if err := tb.SendToPeer(peer1, wire.KindDigest, []byte("dg")); err != nil {
		t.Fatal(err)
	}
	ev.next(t, is("msg "+testNode+" digest dg"))

	// Overflow: more than the queue holds at once resets the link.
	for range 2000 {
		l.Send(wire.KindUpdate, []byte("u"))
	}
	if l.Dropped() == 0 {
		t.Fatal("2000 sends into a queue of 4 dropped nothing")
	}
	ev.next(t, is("down "+testNode))
	ev.next(t, is("up "+testNode))
	if l.Resets() == 0 {
		t.Fatal("no reset counted")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	events := ev.all()
	if last := events[len(events)-1]; last != "down "+testNode {
		t.Fatalf("last event %q, want the link down", last)
	}
	n := len(events)
	time.Sleep(100 * time.Millisecond) // nothing may come after Run returned
	if got := ev.all(); len(got) != n {
		t.Fatalf("events after Run returned: %q", got[n:])
	}
}
