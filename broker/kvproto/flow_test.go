package kvproto

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestWindow: with the client's qlen 10, message 11 of a stream waits for
// an ack; an ack of 4 lets messages up to 14 through. It runs in a
// synctest bubble: the waits and timeouts use its fake clock, and
// synctest.Wait is the barrier that the waiter is blocked before the ack.
func TestWindow(t *testing.T) { synctest.Test(t, testWindow) }

func testWindow(t *testing.T) {
	w := newWindow()
	ctx := context.Background()
	p7, p8 := w.begin(7), w.begin(8)
	if err := w.wait(ctx, p7, 50); err != nil {
		t.Fatal("no qlen yet: must not block")
	}
	w.setQLen(10)
	for wseq := uint64(1); wseq <= 10; wseq++ {
		if err := w.wait(ctx, p7, wseq); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := w.wait(short, p7, 11); err == nil {
		t.Fatal("message 11 went out without an ack")
	}
	done := make(chan error, 1)
	go func() { done <- w.wait(ctx, p7, 14) }()
	synctest.Wait() // the waiter is blocked on the window
	select {
	case err := <-done:
		t.Fatalf("message 14 went out before the ack: %v", err)
	default:
	}
	w.ack(7, 4)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the ack did not release message 14")
	}
	if err := w.wait(short, p8, 1); err != nil {
		t.Fatal("another stream is not held back by this one")
	}
}

// A stream whose request was stopped sends nothing more, even within its
// window; the window's limit lifted (the client hung up) lets all through.
func TestFlowSendStoppedAndUnlimited(t *testing.T) {
	w := newWindow()
	w.setQLen(2)
	var sent [][]byte
	send := func(b []byte) { sent = append(sent, b) }
	ctx, cancel := context.WithCancel(context.Background())
	fs := flowSend(ctx, w, w.begin(3), send)
	fs(1, []byte("a"))
	cancel()
	fs(2, []byte("b")) // within the window, but stopped
	if len(sent) != 1 || string(sent[0]) != "a" {
		t.Fatalf("sent %q, want only a", sent)
	}
	w.unlimit()
	live := flowSend(context.Background(), w, w.begin(4), send)
	for wseq := uint64(1); wseq <= 10; wseq++ { // far past qlen 2, no acks
		live(wseq, []byte("x"))
	}
	if len(sent) != 11 {
		t.Fatalf("%d sent after unlimit, want 11", len(sent))
	}
}

// Acks for seqs that name no open stream leave nothing behind: what a
// connection holds is bounded by its open streams, however many acks it
// sends. A stream that ended does not take a later one with its seq along.
func TestWindowKeepsOpenStreamsOnly(t *testing.T) {
	w := newWindow()
	w.setQLen(2)
	for seq := uint64(1); seq <= 100_000; seq++ {
		w.ack(seq, seq)
	}
	if n := w.size(); n != 0 {
		t.Fatalf("%d streams held after acks for no stream", n)
	}
	old := w.begin(5)
	w.ack(5, 3)
	if old.acked != 3 {
		t.Fatalf("the open stream's ack: %d", old.acked)
	}
	fresh := w.begin(5) // seq 5 reused once the old stream was stopped
	w.end(5, old)       // the old stream's goroutine ends late
	if w.size() != 1 {
		t.Fatal("the old stream's end closed the new one")
	}
	w.ack(5, 9)
	if fresh.acked != 9 || old.acked != 3 {
		t.Fatalf("acks went to %d/%d, want the new stream", fresh.acked, old.acked)
	}
	w.end(5, fresh)
	if w.size() != 0 {
		t.Fatal("the stream's end left it open")
	}
}
