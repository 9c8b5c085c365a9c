package kvclient

import (
	"net"
	"runtime"
	"slices"
	"sync"
)

// writer sends requests on the connection, combining those that arrive
// while a write is under way into the next write: concurrent callers on
// one connection then cost one syscall per batch rather than one each,
// and a lone caller still writes at once, without a hand-off.
type writer struct {
	conn net.Conn

	mu      sync.Mutex
	pending []byte // requests waiting for the current write to end
	spare   []byte // the last written buffer, reused
	busy    bool   // a caller (or a drain goroutine) is writing
	err     error  // the first write error; later sends fail with it
}

// ownPasses bounds how many writes of other callers' requests a caller
// makes after its own before it hands the rest to a goroutine: under
// steady load on one connection a caller is not held writing for others.
const ownPasses = 2

// send queues b (one or more encoded requests) and, unless another caller
// is already writing, writes everything queued. crowd says that other
// requests are in flight on the connection (more callers may be about to
// send). A nil error means b was written or handed to the writer of the
// moment; a write error that writer meets ends the connection, so the
// read loop fails the requests.
func (w *writer) send(b []byte, crowd bool) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if w.busy {
		w.pending = append(w.pending, b...)
		w.mu.Unlock()
		return nil
	}
	w.busy = true
	if crowd {
		// Give the other callers on this connection that are about to
		// send a moment to queue behind this one: one write then
		// carries them all. A lone caller does not yield: on a machine
		// with idle cores, yielding can move it to another thread that
		// first has to be woken (tens of µs on a VM).
		w.mu.Unlock()
		runtime.Gosched()
		w.mu.Lock()
	}
	out := b
	if len(w.pending) > 0 {
		out = append(slices.Clip(b), w.pending...)
		w.pending = w.pending[:0]
	}
	return w.writeLoop(out, b, ownPasses)
}

// writeLoop writes out, then what was queued meanwhile, until nothing is
// queued; after passes further writes (passes < 0: no limit) it hands the
// rest to a new goroutine. w.mu is held on entry and released on return.
// own is the caller's buffer, which is not reused.
func (w *writer) writeLoop(out, own []byte, passes int) error {
	for pass := 0; ; pass++ {
		w.mu.Unlock()
		_, err := w.conn.Write(out)
		w.mu.Lock()
		if err != nil {
			w.err = err
			w.pending = nil
			w.busy = false
			w.mu.Unlock()
			w.conn.Close()
			return err
		}
		if len(w.pending) == 0 {
			w.busy = false
			w.mu.Unlock()
			return nil
		}
		if own == nil || &out[0] != &own[0] {
			w.spare = out[:0]
		}
		own = nil
		out, w.pending, w.spare = w.pending, w.spare, nil
		if passes >= 0 && pass+1 >= passes {
			w.mu.Unlock()
			go func() {
				w.mu.Lock()
				w.writeLoop(out, nil, -1)
			}()
			return nil
		}
	}
}

// failed reports whether a write has failed (the connection is then closed).
func (w *writer) failed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}
