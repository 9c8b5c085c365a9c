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
	if err := w.wait(ctx, 7, 50); err != nil {
		t.Fatal("no qlen yet: must not block")
	}
	w.setQLen(10)
	for wseq := uint64(1); wseq <= 10; wseq++ {
		if err := w.wait(ctx, 7, wseq); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := w.wait(short, 7, 11); err == nil {
		t.Fatal("message 11 went out without an ack")
	}
	done := make(chan error, 1)
	go func() { done <- w.wait(ctx, 7, 14) }()
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
	if err := w.wait(short, 8, 1); err != nil {
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
	fs := flowSend(ctx, w, 3, send)
	fs(1, []byte("a"))
	cancel()
	fs(2, []byte("b")) // within the window, but stopped
	if len(sent) != 1 || string(sent[0]) != "a" {
		t.Fatalf("sent %q, want only a", sent)
	}
	w.unlimit()
	live := flowSend(context.Background(), w, 4, send)
	for wseq := uint64(1); wseq <= 10; wseq++ { // far past qlen 2, no acks
		live(wseq, []byte("x"))
	}
	if len(sent) != 11 {
		t.Fatalf("%d sent after unlimit, want 11", len(sent))
	}
}
