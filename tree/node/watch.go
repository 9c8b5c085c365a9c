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
	signal chan struct{} // capacity 1: something was queued, or the watch ended

	mu    sync.Mutex
	q     []Item
	ended bool // by overflow or the engine's stop; set on the loop
}

func newWatcher(p tree.Path, max int) *watcher {
	return &watcher{prefix: p.Clone(), max: max, signal: make(chan struct{}, 1)}
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
	w.wake()
	return ok
}

// end ends the watch (the engine stops).
func (w *watcher) end() {
	w.mu.Lock()
	w.ended = true
	w.mu.Unlock()
	w.wake()
}

func (w *watcher) wake() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
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
// is missed or sent twice. send runs on the caller's goroutine.
func (e *Engine) Watch(ctx context.Context, p tree.Path, fetch bool, send func(Item) error) error {
	w := newWatcher(p, e.cfg.WatchQueue)
	initial, err := call(e, ctx, func(e *Engine) []Item {
		var items []Item
		if fetch {
			items = e.collect(p)
		}
		e.watchers[w] = struct{}{}
		return items
	})
	if err != nil {
		return err
	}
	defer e.unwatch(w)
	for _, it := range initial {
		if err := send(it); err != nil {
			return err
		}
	}
	initial = nil
	if fetch {
		if err := send(Item{UpToDate: true}); err != nil {
			return err
		}
	}
	var spare []Item
	for ctx.Err() == nil {
		items, ended := w.take(spare)
		for _, it := range items {
			if err := send(it); err != nil {
				return err
			}
		}
		if ended {
			select {
			case <-e.stopping:
				return e.unavailable("stopped")
			default:
				return ErrWatchOverflow
			}
		}
		// Keep the drained queue for the next round, unless a burst grew
		// it large: then let it go, and the queue grows again if needed.
		clear(items)
		if cap(items) <= 256 {
			spare = items
		} else {
			spare = nil
		}
		if len(items) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.signal:
		}
	}
	return nil
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
