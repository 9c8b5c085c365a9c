package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
)

// watcher is one watch: changes at or below prefix queue up in q for the
// watch's goroutine. The queue grows as it fills, up to Config.WatchQueue
// items, and shrinks again once drained: an idle watch costs a few hundred
// bytes, not a queue allocated up front.
type watcher struct {
	prefix tree.Path
	max    int
	notify func() // something was queued, or the watch ended; must not block

	mu    sync.Mutex
	q     []Item
	ended bool // by overflow or the engine's stop; set on the loop
}

func newWatcher(p tree.Path, max int, notify func()) *watcher {
	return &watcher{prefix: p.Clone(), max: max, notify: notify}
}

// push queues it; it reports false, and ends the watch, if the queue is
// full.
func (w *watcher) push(it Item) bool {
	w.mu.Lock()
	ok := len(w.q) < w.max
	if ok {
		w.q = append(w.q, it)
	} else {
		w.ended = true
	}
	w.mu.Unlock()
	w.notify()
	return ok
}

// end ends the watch (the engine stops).
func (w *watcher) end() {
	w.mu.Lock()
	w.ended = true
	w.mu.Unlock()
	w.notify()
}

// take returns what is queued, leaving spare (emptied) as the new queue,
// and whether the watch has ended.
func (w *watcher) take(spare []Item) ([]Item, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	items := w.q
	w.q = spare[:0]
	return items, w.ended
}

// ErrWatchOverflow ends a watch that fell more than Config.WatchQueue
// changes behind; other watches and clients are unaffected.
var ErrWatchOverflow = fmt.Errorf("%w: watcher fell too many changes behind; watch ended", tree.ErrUnavailable)

// Watch calls send for every change at or below p (Item.Entry.Value nil:
// deleted), in the order they happen, until ctx ends (it returns nil), the
// engine stops (an error wrapping tree.ErrUnavailable), send fails (that
// error) or the watch falls behind (ErrWatchOverflow). With fetch it first
// sends every entry holding a value below p, then an Item with UpToDate;
// the current state and the registration happen in one step, so no change
// is missed or sent twice. send runs on the caller's goroutine. Watch is
// Subscribe for a caller that gives the watch a goroutine of its own.
func (e *Engine) Watch(ctx context.Context, p tree.Path, fetch bool, send func(Item) error) error {
	signal := make(chan struct{}, 1)
	s, err := e.Subscribe(ctx, p, fetch, func() {
		select {
		case signal <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return err
	}
	defer s.Close()
	var serr error
	for {
		err := s.Drain(func(it Item) bool {
			if ctx.Err() != nil {
				return false
			}
			serr = send(it)
			return serr == nil
		})
		switch {
		case serr != nil:
			return serr
		case err != nil:
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-signal:
		}
	}
}

// Subscription is a watch whose changes its owner takes when told, rather
// than on a goroutine of the watch's own: a server with thousands of
// watches serves them from a few goroutines. Drain and Close are for one
// goroutine at a time.
type Subscription struct {
	e        *Engine
	w        *watcher
	tock     uint64     // when it was registered
	initial  []Item     // with fetch: entries visited, not yet taken
	iter     *tree.Iter // with fetch: the walk, while entries are left
	chunk    []Item     // with fetch: the buffer initial is a part of, reused
	upToDate bool       // with fetch: the UpToDate item is still to come
	cur      []Item     // taken from the queue, cur[pos:] not yet given out
	pos      int
	closed   bool
}

// Subscribe registers a watch of the changes at or below p, like Watch,
// and returns at once. notify is called, under the engine's lock (on its
// goroutine or a writer's: see Observer), each time the watch has something new to give (a change queued, or its end)
// and must not block; the owner then calls Drain. Call Drain once after
// Subscribe (with fetch, the current entries are waiting), and Close when
// done.
func (e *Engine) Subscribe(ctx context.Context, p tree.Path, fetch bool, notify func()) (*Subscription, error) {
	s := &Subscription{e: e, w: newWatcher(p, e.cfg.WatchQueue, notify), upToDate: fetch}
	_, err := call(e, ctx, func(e *Engine) struct{} {
		if fetch {
			s.iter = e.r.Tree().Iter(p)
			c := e.step(s.iter, nil, false)
			s.initial, s.chunk = c.items, c.items
			if !c.more {
				s.iter = nil
			}
		}
		s.tock = e.r.Tree().Tock()
		e.watchers[s.w] = struct{}{}
		return struct{}{}
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Tock returns the tock when the watch was registered.
func (s *Subscription) Tock() uint64 { return s.tock }

// Drain calls fn with what the watch has, in order (with fetch, first the
// entries at the start and the UpToDate item), until fn returns false (the
// item it was given stays for the next Drain) or nothing is left. With
// fetch, the entries are visited a chunk at a time as fn takes them (see
// Walk), each chunk in one turn of the engine that Drain waits for. It
// returns nil, or, once everything before it has been given out, the error
// that ended the watch: ErrWatchOverflow, or one wrapping
// tree.ErrUnavailable when the engine stopped.
func (s *Subscription) Drain(fn func(Item) bool) error {
	for {
		for len(s.initial) > 0 {
			if !fn(s.initial[0]) {
				return nil
			}
			s.initial[0] = Item{}
			s.initial = s.initial[1:]
		}
		if s.iter == nil {
			s.initial, s.chunk = nil, nil
			break
		}
		// The next entries of the fetch: one turn of the engine, into
		// the same buffer. The watch is registered, so whatever changes
		// meanwhile is queued.
		it, buf := s.iter, s.chunk[:0]
		c, err := call(s.e, context.Background(), func(e *Engine) walkStep { return e.step(it, buf, false) })
		if err != nil {
			return err
		}
		s.initial, s.chunk = c.items, c.items
		if !c.more {
			s.iter = nil
		}
	}
	if s.upToDate {
		if !fn(Item{UpToDate: true}) {
			return nil
		}
		s.upToDate = false
	}
	for {
		for s.pos < len(s.cur) {
			if !fn(s.cur[s.pos]) {
				return nil
			}
			s.cur[s.pos] = Item{}
			s.pos++
		}
		// Hand the drained batch back as the next queue, unless a burst
		// grew it large: then let it go; the queue grows again if needed.
		spare := s.cur[:0]
		if cap(spare) > 256 {
			spare = nil
		}
		items, ended := s.w.take(spare)
		s.cur, s.pos = items, 0
		if len(items) > 0 {
			continue
		}
		if !ended {
			return nil
		}
		select {
		case <-s.e.stopping:
			return s.e.unavailable("stopped")
		default:
			return ErrWatchOverflow
		}
	}
}

// Close ends the watch; it may be called more than once.
func (s *Subscription) Close() {
	if !s.closed {
		s.closed = true
		s.e.unwatch(s.w)
	}
}

// unwatch removes w on the loop (if it still runs).
func (e *Engine) unwatch(w *watcher) {
	q := &request{run: func(e *Engine) { delete(e.watchers, w) }}
	select {
	case e.reqs <- q:
	case <-e.stopping:
	}
}

// notifyWatchers hands a change to every watcher below whose prefix it
// lies; a watcher whose queue is full is dropped (its watch ends).
func (e *Engine) notifyWatchers(c replica.Change) {
	for w := range e.watchers {
		if !c.Path.HasPrefix(w.prefix) {
			continue
		}
		if !w.push(Item{Path: c.Path, Entry: Entry{Value: c.Value, Chain: c.Chain, Tock: c.Tock}}) {
			delete(e.watchers, w)
			e.watchOverflows.Add(1)
			e.log.Warn("a watcher fell behind; its watch ended", "path", w.prefix.String())
		}
	}
}
