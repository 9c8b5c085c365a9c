package node

import (
	"context"
	"fmt"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
)

// watcher is one watch: changes at or below prefix go to ch. The loop
// closes ch when the watcher cannot keep up, or when the engine stops.
type watcher struct {
	prefix tree.Path
	ch     chan Item
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
	w := &watcher{prefix: p.Clone(), ch: make(chan Item, e.cfg.WatchQueue)}
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
	if fetch {
		if err := send(Item{UpToDate: true}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case it, ok := <-w.ch:
			if !ok {
				select {
				case <-e.stopping:
					return e.unavailable("stopped")
				default:
					return ErrWatchOverflow
				}
			}
			if err := send(it); err != nil {
				return err
			}
		}
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
		select {
		case w.ch <- Item{Path: c.Path, Entry: Entry{Value: c.Value, Chain: c.Chain, Tock: c.Tock}}:
		default:
			close(w.ch)
			delete(e.watchers, w)
			e.watchOverflows.Add(1)
			e.log.Warn("a watcher fell behind; its watch ended", "path", w.prefix.String())
		}
	}
}
