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
//
// Only open streams have state here: an ack for a seq that names no open
// stream is dropped, so what a connection holds is bounded by the streams
// it may open, whatever it sends.
type window struct {
	mu      sync.Mutex
	qlen    uint64
	open    bool                // no more acks can come: no limit (see unlimit)
	streams map[uint64]*flowPos // open stream seq → its position
	wake    chan struct{}       // closed and replaced on every ack
}

// flowPos is one open stream's highest acknowledged wseq.
type flowPos struct {
	acked  uint64
	notify func() // called (outside the lock) when acked moves; see onAck
}

func newWindow() *window {
	return &window{streams: make(map[uint64]*flowPos), wake: make(chan struct{})}
}

func (w *window) setQLen(q uint64) {
	w.mu.Lock()
	w.qlen = q
	w.mu.Unlock()
}

// begin opens stream seq (a later stream reusing the seq replaces it) and
// returns its position, for wait and end.
func (w *window) begin(seq uint64) *flowPos {
	p := &flowPos{}
	w.mu.Lock()
	w.streams[seq] = p
	w.mu.Unlock()
	return p
}

// ack records the client's acknowledgement of stream seq up to wseq; an
// ack for no open stream is dropped.
func (w *window) ack(seq, wseq uint64) {
	var notify func()
	w.mu.Lock()
	if p := w.streams[seq]; p != nil && wseq > p.acked {
		p.acked = wseq
		notify = p.notify
		close(w.wake)
		w.wake = make(chan struct{})
	}
	w.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// onAck makes every ack that moves the stream at p call notify (which
// must not block).
func (w *window) onAck(p *flowPos, notify func()) {
	w.mu.Lock()
	p.notify = notify
	w.mu.Unlock()
}

// wait blocks until the stream at p may send message wseq, or ctx ends.
func (w *window) wait(ctx context.Context, p *flowPos, wseq uint64) error {
	for {
		w.mu.Lock()
		if w.qlen == 0 || w.open || wseq <= p.acked || wseq-p.acked <= w.qlen {
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

// allows reports whether the stream at p may send message wseq now.
func (w *window) allows(p *flowPos, wseq uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.qlen == 0 || w.open || wseq <= p.acked || wseq-p.acked <= w.qlen
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

// end closes stream seq, if p is still what it names.
func (w *window) end(seq uint64, p *flowPos) {
	w.mu.Lock()
	if w.streams[seq] == p {
		delete(w.streams, seq)
	}
	w.mu.Unlock()
}

// size returns the number of open streams (for tests).
func (w *window) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.streams)
}

// streamSend sends a stream message with its wseq once the window allows.
type streamSend func(wseq uint64, msg []byte)

// flowSend wraps send with the connection's window for the stream at p.
func flowSend(ctx context.Context, w *window, p *flowPos, send func([]byte)) streamSend {
	return func(wseq uint64, msg []byte) {
		// A stopped stream sends nothing more, window or not.
		if ctx.Err() == nil && w.wait(ctx, p, wseq) == nil {
			send(msg)
		}
	}
}
