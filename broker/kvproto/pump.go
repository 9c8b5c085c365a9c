package kvproto

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/edgekv/edgekv/tree"
)

// Subscriber is implemented by a Tree whose watches can be served without
// a goroutine each: Subscribe registers the watch and returns at once;
// the tree calls notify (which does not block) whenever the watch has
// something new, and the server takes it with Drain. A connection's
// watches then cost what their queues hold, not a goroutine and its stack
// each. A Tree that is only a Watcher gets a goroutine per watch.
type Subscriber interface {
	Subscribe(ctx context.Context, p tree.Path, fetch bool, notify func()) (Subscription, error)
}

// Subscription is one watch registered with Subscribe. Tock is the tock
// when it was registered (for its {state: start}). Drain calls fn with
// what the watch has, in Watcher's order (with fetch: the current entries,
// an UpToDate item, then the changes), until fn returns false (that item
// stays for the next Drain) or nothing is left; it returns nil, or, once
// everything before it was given out, the error that ended the watch.
// Close ends the watch. Both are called by one goroutine at a time.
type Subscription interface {
	Tock() uint64
	Drain(fn func(WatchItem) bool) error
	Close()
}

// pumpRound bounds the messages one watch sends in a turn before the
// other ready watches get theirs.
const pumpRound = 256

// pump serves the subscribed watches of one connection on one goroutine.
// A watch is put on the ready list when it has something new (its
// subscription's notify), when the client acknowledges messages of it
// (its window position's notify), or when it is stopped; the pump serves
// the ready watches in turn, each as far as its window allows. The work
// done for a change is that of the watches it concerns, however many
// others the connection holds.
type pump struct {
	win    *window
	send   func([]byte)
	signal chan struct{} // capacity 1: the ready list is not empty
	// sendStream sends a watch's first and last messages: the pump's
	// watches wait on no window but in serve.
	sendStream streamSend

	mu      sync.Mutex
	ready   []*watchStream            // to be served; each at most once (queued)
	open    map[*watchStream]struct{} // every watch handed over and not closed
	stopped bool                      // run has ended: add closes what it is given
	done    chan struct{}             // closed by stop: run closes every watch and ends
}

// watchStream is one watch the pump serves. It has no context or
// goroutine of its own: the client's stop sets stopped and readies it.
type watchStream struct {
	p       *pump
	st      *stream
	sub     Subscription
	pos     *flowPos
	end     func() // ends the request: frees its seq and its stream slot
	stopped atomic.Bool
	queued  bool // on the ready list (under p.mu)

	// One turn's state, for item (a method value made once, so that a
	// turn allocates nothing).
	itemFn func(WatchItem) bool
	sent   int
	full   bool
}

// over reports whether the watch was stopped or its connection ended.
func (ws *watchStream) over() bool { return ws.stopped.Load() || ws.st.ctx.Err() != nil }

// notify puts ws on its pump's ready list.
func (ws *watchStream) notify() { ws.p.readyUp(ws) }

func newPump(win *window, send func([]byte)) *pump {
	return &pump{win: win, send: send, signal: make(chan struct{}, 1), done: make(chan struct{}),
		open: make(map[*watchStream]struct{}), sendStream: func(_ uint64, msg []byte) { send(msg) }}
}

// readyUp puts ws on the ready list (once) and wakes run.
func (p *pump) readyUp(ws *watchStream) {
	p.mu.Lock()
	if _, open := p.open[ws]; !open || ws.queued {
		p.mu.Unlock()
		return // not handed over yet (add readies it), or closed
	}
	ws.queued = true
	p.ready = append(p.ready, ws)
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// add hands a watch to the pump, ready; it may be called from any
// goroutine. Once the pump has ended the watch is closed at once.
func (p *pump) add(ws *watchStream) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		p.close(ws)
		return
	}
	p.open[ws] = struct{}{}
	p.mu.Unlock()
	p.readyUp(ws)
}

// stop makes run close every watch and end; run must have been started.
func (p *pump) stop() { close(p.done) }

// run serves the ready watches until stop.
func (p *pump) run() {
	defer func() {
		p.mu.Lock()
		p.stopped = true
		open := p.open
		p.open, p.ready = nil, nil
		p.mu.Unlock()
		for ws := range open {
			p.close(ws)
		}
	}()
	var turn []*watchStream
	for {
		p.mu.Lock()
		turn, p.ready = p.ready, turn[:0]
		for _, ws := range turn {
			ws.queued = false
		}
		p.mu.Unlock()
		for i, ws := range turn {
			turn[i] = nil
			select {
			case <-p.done:
				return
			default:
			}
			switch full, ended := p.serve(ws); {
			case ended:
				p.mu.Lock()
				_, ok := p.open[ws]
				delete(p.open, ws)
				p.mu.Unlock()
				if ok {
					p.close(ws)
				}
			case full:
				p.readyUp(ws) // the rest after the others' turns
			}
		}
		p.mu.Lock()
		idle := len(p.ready) == 0
		p.mu.Unlock()
		if !idle {
			continue
		}
		select {
		case <-p.done:
			return
		case <-p.signal:
		}
	}
}

// serve sends what ws has and its window allows, up to pumpRound
// messages; full: it stopped at pumpRound; ended: the watch is over (it
// was stopped, or it ended with an error, which is sent).
func (p *pump) serve(ws *watchStream) (full, ended bool) {
	if ws.over() {
		return false, true
	}
	ws.sent, ws.full = 0, false
	err := ws.sub.Drain(ws.itemFn)
	if err != nil {
		// The last two messages go out whatever the window says: the
		// pump does not wait on one client's acks.
		if st := ws.st; !ws.over() {
			p.send(AppendError(nil, st.seq, tree.KindOf(err), err.Error(), st.tock()))
			p.send(st.stateMsg("end"))
		}
		return false, true
	}
	return ws.full, ws.over()
}

// item sends one item of the watch if its window allows, and reports
// whether it did (or left it out: depth limits, the meta tree).
func (ws *watchStream) item(it WatchItem) bool {
	st := ws.st
	if ws.sent == pumpRound {
		ws.full = true
		return false
	}
	if ws.over() || !ws.p.win.allows(ws.pos, st.wseq+1) {
		return false
	}
	var msg []byte
	if it.UpToDate {
		msg = st.stateMsg("uptodate")
	} else {
		msg = st.itemMsg(it)
	}
	if msg != nil {
		ws.p.send(msg)
		ws.sent++
	}
	return true
}

// close ends ws: the watch, its flow state and its request.
func (p *pump) close(ws *watchStream) {
	ws.sub.Close()
	p.win.end(ws.st.seq, ws.pos)
	ws.end()
}

// subscribe opens a watch request on sub and hands it to the pump; if it
// ends at once, its error is sent and it is forgotten. ctx is the
// connection's.
func (s *Server) subscribe(ctx context.Context, req Request, sub Subscriber, p *pump, pos *flowPos, ts *tasks) {
	ws := &watchStream{p: p, pos: pos}
	ws.itemFn = ws.item
	ws.end = ts.startFunc(req.Seq, true, true, func() {
		ws.stopped.Store(true)
		if ws.st != nil {
			p.readyUp(ws)
		}
	})
	fail := func() {
		p.win.end(req.Seq, pos)
		ws.end()
	}
	st := s.newStream(ctx, req, p.sendStream, true)
	if st == nil {
		fail()
		return
	}
	ws.st = st
	sn, err := sub.Subscribe(ctx, req.Path, st.args.fetch, ws.notify)
	if err != nil {
		if ctx.Err() == nil {
			st.state("start")
			st.fail(err)
			st.state("end")
		}
		fail()
		return
	}
	st.wseq++
	p.send(appendState(make([]byte, 0, stateSize), "start", st.seq, st.wseq, sn.Tock()))
	ws.sub = sn
	p.win.onAck(pos, ws.notify)
	p.add(ws)
}
