package kvproto

import (
	"context"
	"sync"
)

// window is one connection's flow control for the streams it serves
// (MoaT-KV §4.2): after the client answered the greeting with its qlen, a
// stream may have at most qlen messages beyond the highest wseq the client
// acknowledged ({seq, state: ack, ack: wseq}). Without a qlen from the
// client there is no limit.
type window struct {
	mu    sync.Mutex
	qlen  uint64
	open  bool              // no more acks can come: no limit (see unlimit)
	acked map[uint64]uint64 // stream seq → highest acknowledged wseq
	wake  chan struct{}     // closed and replaced on every ack
}

func newWindow() *window {
	return &window{acked: make(map[uint64]uint64), wake: make(chan struct{})}
}

func (w *window) setQLen(q uint64) {
	w.mu.Lock()
	w.qlen = q
	w.mu.Unlock()
}

// ack records the client's acknowledgement of stream seq up to wseq.
func (w *window) ack(seq, wseq uint64) {
	w.mu.Lock()
	if wseq > w.acked[seq] {
		w.acked[seq] = wseq
	}
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// wait blocks until stream seq may send message wseq, or ctx ends.
func (w *window) wait(ctx context.Context, seq, wseq uint64) error {
	for {
		w.mu.Lock()
		if acked := w.acked[seq]; w.qlen == 0 || w.open || wseq <= acked || wseq-acked <= w.qlen {
			w.mu.Unlock()
			return nil
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// unlimit lifts the limit for good: once the client has closed its side
// no ack can come, and a finite stream (get_tree) still sends all it has
// rather than waiting forever.
func (w *window) unlimit() {
	w.mu.Lock()
	w.open = true
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// end forgets stream seq.
func (w *window) end(seq uint64) {
	w.mu.Lock()
	delete(w.acked, seq)
	w.mu.Unlock()
}

// streamSend sends a stream message with its wseq once the window allows.
type streamSend func(wseq uint64, msg []byte)

// flowSend wraps send with the connection's window for stream seq.
func flowSend(ctx context.Context, w *window, seq uint64, send func([]byte)) streamSend {
	return func(wseq uint64, msg []byte) {
		// A stopped stream sends nothing more, window or not.
		if ctx.Err() == nil && w.wait(ctx, seq, wseq) == nil {
			send(msg)
		}
	}
}
