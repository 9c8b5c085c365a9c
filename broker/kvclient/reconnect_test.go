package kvclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

func wkey(s string) tree.Path { return tree.Path{tree.Str("w"), tree.Str(s)} }

func mstr(s string) []byte { return msgp.AppendString(nil, s) }

// waitFor polls cond for up to 10 s.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReconnectingSurvivesRestart: reads and writes work again once a
// restarted server is back on the same port, plain and over TLS; while it
// is down a call fails only when its context ends, naming the last
// attempt.
func TestReconnectingSurvivesRestart(t *testing.T) {
	certFile, keyFile, cert := selfSignedCert(t)
	for _, tt := range []struct {
		name   string
		server *tls.Config
		client *tls.Config
	}{
		{"plain", nil, nil},
		{"tls", serverTLS(t, certFile, keyFile), trusting(cert)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startMemServer(t, tt.server)
			var connects atomic.Int32
			r := NewReconnecting(s.addr, ReconnectOptions{
				DialOptions: DialOptions{TLS: tt.client},
				MinBackoff:  10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
				OnConnect: func(h Hello) {
					if h.Node == "fake" {
						connects.Add(1)
					}
				},
			})
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := r.Set(ctx, wkey("a"), mstr("1"), WriteOpts{}); err != nil {
				t.Fatal(err)
			}
			s.stop()
			short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
			_, _, err := r.Get(short, wkey("a"), 0)
			cancelShort()
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not connected") {
				t.Fatalf("get while down: %v, want not connected and the deadline", err)
			}
			s.start()
			e, found, err := r.Get(ctx, wkey("a"), 1)
			if err != nil || !found || string(e.Value) != string(mstr("1")) {
				t.Fatalf("get after restart: %+v %v %v", e, found, err)
			}
			if _, err := r.Set(ctx, wkey("b"), mstr("2"), WriteOpts{}); err != nil {
				t.Fatalf("set after restart: %v", err)
			}
			if n := connects.Load(); n != 2 {
				t.Fatalf("%d connections, want 2", n)
			}
		})
	}
}

// TestReconnectingLostReply: a write whose reply is lost with the
// connection fails with ErrUnknownOutcome and is not repeated, unless
// RetryWrites is set.
func TestReconnectingLostReply(t *testing.T) {
	for _, retry := range []bool{false, true} {
		t.Run(fmt.Sprintf("RetryWrites=%v", retry), func(t *testing.T) {
			s := startMemServer(t, nil)
			r := NewReconnecting(s.addr, ReconnectOptions{MinBackoff: 10 * time.Millisecond, RetryWrites: retry})
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := r.Client(ctx); err != nil {
				t.Fatal(err)
			}
			hang := make(chan struct{})
			defer close(hang)
			s.tree.mu.Lock()
			s.tree.hang = hang
			s.tree.mu.Unlock()
			errc := make(chan error, 1)
			go func() {
				_, err := r.Set(ctx, wkey("x"), mstr("v"), WriteOpts{})
				errc <- err
			}()
			pollUntil(t, "the write applied", func() bool { return s.tree.applied() == 1 })
			s.tree.mu.Lock()
			s.tree.hang = nil // a repeat is answered
			s.tree.mu.Unlock()
			s.drop() // the reply is lost
			err := <-errc
			if !retry {
				if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, ErrClosed) {
					t.Fatalf("set = %v, want ErrUnknownOutcome wrapping ErrClosed", err)
				}
				if n := s.tree.applied(); n != 1 {
					t.Fatalf("%d writes applied, want 1: the write was repeated", n)
				}
				// The client itself is fine: the next write connects again.
				if _, err := r.Set(ctx, wkey("y"), mstr("v"), WriteOpts{}); err != nil {
					t.Fatal(err)
				}
			} else if err != nil {
				t.Fatalf("set with RetryWrites = %v", err)
			}
			if n := s.tree.applied(); n != 2 {
				t.Fatalf("%d writes applied, want 2", n)
			}
		})
	}
}

// TestReconnectingUnsentWrite: a write on a connection already known to
// have ended was never sent, so it goes out on a new connection even
// without RetryWrites.
func TestReconnectingUnsentWrite(t *testing.T) {
	s := startMemServer(t, nil)
	r := NewReconnecting(s.addr, ReconnectOptions{})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.drop()
	pollUntil(t, "the client seeing the connection end", func() bool { return !c.alive() })
	// The connection's own error says "not sent".
	if _, err := c.Set(ctx, wkey("direct"), mstr("v"), WriteOpts{}); !errors.Is(err, ErrClosed) || !wasNotSent(err) {
		t.Fatalf("set on an ended connection: %v", err)
	}
	if _, err := r.Set(ctx, wkey("a"), mstr("v"), WriteOpts{}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if n := s.tree.applied(); n != 1 {
		t.Fatalf("%d writes applied, want 1", n)
	}
	// Tree, before any item, is repeated too.
	s.drop()
	pollUntil(t, "the client seeing the connection end", func() bool { c, _ := r.Client(ctx); return c != nil })
	var paths []string
	if err := r.Tree(ctx, tree.Path{tree.Str("w")}, func(it Item) error {
		paths = append(paths, it.Path.String())
		return nil
	}); err != nil || fmt.Sprint(paths) != "[w.a]" {
		t.Fatalf("tree: %v %v", paths, err)
	}
}

// TestReconnectingClose: Close ends a call that is waiting for a server
// that is down.
func TestReconnectingClose(t *testing.T) {
	s := startMemServer(t, nil)
	addr := s.addr
	s.stop()
	r := NewReconnecting(addr, ReconnectOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	errc := make(chan error, 1)
	go func() {
		_, _, err := r.Get(context.Background(), wkey("a"), 0)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond) // a few failed attempts
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("get = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the waiting call")
	}
	if _, err := r.Client(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestReconnectingBackoff(t *testing.T) {
	r := NewReconnecting("127.0.0.1:1", ReconnectOptions{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	for _, tt := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{1, 80 * time.Millisecond, 120 * time.Millisecond},
		{2, 160 * time.Millisecond, 240 * time.Millisecond},
		{4, 640 * time.Millisecond, 960 * time.Millisecond},
		{5, 800 * time.Millisecond, 1200 * time.Millisecond}, // capped
		{1000, 800 * time.Millisecond, 1200 * time.Millisecond},
	} {
		for range 100 {
			if d := r.backoff(tt.n); d < tt.lo || d > tt.hi {
				t.Fatalf("backoff(%d) = %v, want %v to %v", tt.n, d, tt.lo, tt.hi)
			}
		}
	}
}

// watchLog collects what a watch delivers, as text.
type watchLog chan string

func (l watchLog) fn(it Item) error {
	switch {
	case it.UpToDate:
		l <- "uptodate"
	case it.Value == nil && len(it.Chain) == 0:
		l <- it.Path.String() + " deleted (made up)"
	case it.Value == nil:
		l <- it.Path.String() + " deleted"
	default:
		v, _, _ := msgp.ReadStringBytes(it.Value)
		l <- it.Path.String() + "=" + v
	}
	return nil
}

// expect reads want from the log, in order, and fails on anything else.
func (l watchLog) expect(t *testing.T, want ...string) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-l:
			if got != w {
				t.Fatalf("item %d: %q, want %q (all wanted: %q)", i, got, w, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("item %d: nothing within 10 s, want %q", i, w)
		}
	}
}

// TestReconnectingWatch: a watch over a server restart sees what changed
// while it was away once (a deletion made up for an entry gone), nothing
// twice, UpToDate once, and then the live changes.
func TestReconnectingWatch(t *testing.T) {
	s := startMemServer(t, nil)
	for _, k := range []string{"a", "b", "e"} {
		s.tree.put(wkey(k), mstr("1"))
	}
	s.tree.put(tree.Path{tree.Str("other")}, mstr("x")) // not watched
	r := NewReconnecting(s.addr, ReconnectOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := make(watchLog, 100)
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, tree.Path{tree.Str("w")}, true, log.fn) }()
	log.expect(t, "w.a=1", "w.b=1", "w.e=1", "uptodate")
	s.tree.put(wkey("f"), mstr("1"))
	log.expect(t, "w.f=1")

	s.stop()
	s.tree.put(wkey("b"), mstr("2"))
	s.tree.put(wkey("a"), nil)
	s.tree.put(wkey("c"), mstr("1"))
	s.tree.put(wkey("c"), mstr("2")) // only the last is seen
	s.start()
	log.expect(t, "w.b=2", "w.c=2", "w.a deleted (made up)")
	s.tree.put(wkey("g"), mstr("1"))
	s.tree.put(wkey("b"), nil)
	log.expect(t, "w.g=1", "w.b deleted")

	// A dropped connection (no restart) and back: nothing new, nothing
	// repeated; the next live change is the next item.
	// (The server may keep the old connection's watch until its next
	// send fails: count registrations, not watchers.)
	watches := s.tree.watchCount()
	s.drop()
	pollUntil(t, "the watch re-issued", func() bool { return s.tree.watchCount() > watches })
	s.tree.put(wkey("h"), mstr("1"))
	log.expect(t, "w.h=1")

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v", err)
	}
	if len(log) != 0 {
		t.Fatalf("more items: %q", <-log)
	}
}

// TestReconnectingWatchSeqWithoutFetch: without fetch the iterator yields
// only changes, across a restart too, and breaking out ends it.
func TestReconnectingWatchSeqWithoutFetch(t *testing.T) {
	s := startMemServer(t, nil)
	s.tree.put(wkey("a"), mstr("1"))
	s.tree.put(wkey("b"), mstr("1"))
	r := NewReconnecting(s.addr, ReconnectOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	registered := func() {
		pollUntil(t, "the watch registered", func() bool {
			s.tree.mu.Lock()
			defer s.tree.mu.Unlock()
			return len(s.tree.watchers) == 1
		})
	}
	log := make(watchLog, 100)
	done := make(chan error, 1)
	go func() {
		n := 0
		for it, err := range r.WatchSeq(ctx, tree.Path{tree.Str("w")}, false) {
			if err != nil {
				done <- err
				return
			}
			log.fn(it)
			if n++; n == 3 {
				break
			}
		}
		done <- nil
	}()
	registered()
	s.tree.put(wkey("a"), mstr("2"))
	log.expect(t, "w.a=2")
	s.stop()
	s.tree.put(wkey("b"), mstr("2"))
	s.start()
	log.expect(t, "w.b=2")
	registered()
	s.tree.put(wkey("c"), mstr("1"))
	log.expect(t, "w.c=1")
	if err := <-done; err != nil {
		t.Fatalf("iterator: %v", err)
	}
	pollUntil(t, "the watch stopped on the server", func() bool {
		s.tree.mu.Lock()
		defer s.tree.mu.Unlock()
		return len(s.tree.watchers) == 0
	})
}

// TestReconnectingRetriesAtOnce: after a dropped connection the first
// retry does not wait for the backoff, whether or not the client had
// noticed the drop before the call.
func TestReconnectingRetriesAtOnce(t *testing.T) {
	s := startMemServer(t, nil)
	s.tree.put(wkey("a"), mstr("1"))
	r := NewReconnecting(s.addr, ReconnectOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		if _, found, err := r.Get(ctx, wkey("a"), 0); err != nil || !found {
			t.Fatalf("get %d: %v %v", i, found, err)
		}
		s.drop()
		if i%2 == 0 { // sometimes let the client see it first
			time.Sleep(5 * time.Millisecond)
		}
	}
}
