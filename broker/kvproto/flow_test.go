package kvproto

import (
	"context"
	"testing"
	"time"
)

// TestWindow: with the client's qlen 10, message 11 of a stream waits for
// an ack; an ack of 4 lets messages up to 14 through.
func TestWindow(t *testing.T) {
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
	time.Sleep(10 * time.Millisecond)
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
