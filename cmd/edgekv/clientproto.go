package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/wire"
)

type replicaChange = replica.Change

// kvTree gives the MoaT-KV client-protocol server (broker/kvproto) access
// to the node: every call runs on the node's owning goroutine, and writes
// are answered after the store has them, like MQTT writes.
type kvTree struct{ n *node }

// call runs f on the owning goroutine and waits for it.
func (k kvTree) call(ctx context.Context, f func()) error {
	done := make(chan struct{})
	if !k.n.do(ctx, func() { defer close(done); f() }) {
		return fmt.Errorf("node %s is stopping", k.n.cfg.Name)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (k kvTree) Hello(ctx context.Context) (h kvproto.Hello, err error) {
	err = k.call(ctx, func() {
		t := k.n.r.Tree()
		h = kvproto.Hello{Node: k.n.cfg.Name, Tick: t.Node(k.n.cfg.Name).Tick(), Tock: t.Tock()}
	})
	return h, err
}

func (k kvTree) Tock(ctx context.Context) (tock uint64, err error) {
	err = k.call(ctx, func() { tock = k.n.r.Tree().Tock() })
	return tock, err
}

func (k kvTree) Get(ctx context.Context, p tree.Path) (e kvproto.Entry, err error) {
	err = k.call(ctx, func() {
		if x := k.n.r.Tree().Get(p); x != nil && len(x.Chain()) > 0 {
			v, _ := x.Value()
			e = kvproto.Entry{Value: slices.Clone(v), Chain: slices.Clone(x.Chain()), Tock: x.Tock()}
		}
	})
	return e, err
}

func (k kvTree) Set(ctx context.Context, p tree.Path, value []byte, c kvproto.Cond) (kvproto.Result, error) {
	return k.write(ctx, p, value, c)
}

func (k kvTree) Delete(ctx context.Context, p tree.Path, c kvproto.Cond) (kvproto.Result, error) {
	return k.write(ctx, p, nil, c)
}

// write applies a client-protocol write with its conditions; value nil
// deletes. It is held at start like any local write (holdLocalWrites).
func (k kvTree) write(ctx context.Context, p tree.Path, value []byte, c kvproto.Cond) (kvproto.Result, error) {
	n := k.n
	// The node fills res, then answers on done once: at once for a write
	// that failed or changed nothing, after persisting for one that
	// changed something. One channel and one wake-up per write.
	var res kvproto.Result
	done := make(chan error, 1)
	var write func()
	write = func() {
		if n.holding {
			n.held = append(n.held, write)
			return
		}
		cur := n.r.Tree().Get(p)
		if cur != nil {
			if v, ok := cur.Value(); ok {
				res.Prev = slices.Clone(v)
			}
		}
		if c.Prev != nil && !bytes.Equal(res.Prev, c.Prev) {
			done <- fmt.Errorf("%w: %s does not hold the expected previous value", tree.ErrConflict, p)
			return
		}
		cond := tree.Cond{MustNotExist: c.MustNotExist, Head: c.Head, Idem: c.Idem}
		var ev tree.Event
		var err error
		changed := true
		if value == nil {
			ev, err = n.r.Delete(p, cond)
		} else {
			ev, changed, err = n.r.Set(p, value, cond)
		}
		if err != nil {
			done <- err
			return
		}
		if !changed { // idempotent: nothing written
			res.NoOp = true
			if cur != nil {
				res.Chain, res.Tock = slices.Clone(cur.Chain()), cur.Tock()
			}
			done <- nil
			return
		}
		res.Chain, res.Tock = slices.Clone(ev.Chain), ev.Tock
		n.waiters = append(n.waiters, done) // answered after persisting
	}
	if !n.do(ctx, write) {
		return kvproto.Result{}, fmt.Errorf("node %s is stopping", n.cfg.Name)
	}
	select {
	case err := <-done:
		if err != nil && !res.NoOp && res.Chain == nil {
			return kvproto.Result{}, err // refused: no result
		}
		return res, err
	case <-ctx.Done():
		return kvproto.Result{}, ctx.Err()
	case <-n.stopped:
		select {
		case err := <-done:
			return res, err
		default:
			return kvproto.Result{}, fmt.Errorf("node %s stopped before the write was persisted", n.cfg.Name)
		}
	}
}

// serveClients accepts MoaT-KV client-protocol connections on ln until
// ctx is done, then waits for the connections to end.
func (n *node) serveClients(ctx context.Context, ln net.Listener) error {
	srv := &kvproto.Server{Tree: kvTree{n}, Logger: n.log}
	var wg sync.WaitGroup
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	defer wg.Wait()
	var pause time.Duration // after a failed accept (out of file descriptors, …)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			n.log.Warn("client protocol: accept failed", "error", err, "retry_in", pause)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		pause = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ServeConn(ctx, conn); err != nil && ctx.Err() == nil {
				n.log.Info("client connection ended", "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

// watcher is one client-protocol watch: changes below prefix go to ch.
// The owning goroutine closes ch when the watcher cannot keep up.
type watcher struct {
	prefix tree.Path
	ch     chan kvproto.WatchItem
}

// watchQueue bounds the changes a watcher may fall behind by before its
// watch ends with an error (other clients are unaffected). A variable only
// so that a test can make it small.
var watchQueue = 10000

// errWatchOverflow ends a watch that fell too far behind.
var errWatchOverflow = fmt.Errorf("%w: watcher fell too many changes behind; watch ended", tree.ErrInternal)

// Watch implements kvproto.Watcher: the current state (if fetch) and the
// registration happen in one step on the owning goroutine, so no change is
// missed or sent out of order.
func (k kvTree) Watch(ctx context.Context, p tree.Path, fetch bool, send func(kvproto.WatchItem) error) error {
	n := k.n
	w := &watcher{prefix: p.Clone(), ch: make(chan kvproto.WatchItem, watchQueue)}
	var initial []kvproto.WatchItem
	err := k.call(ctx, func() {
		if fetch {
			n.r.Tree().Walk(p, func(e *tree.Entry) bool {
				if v, ok := e.Value(); ok {
					initial = append(initial, kvproto.WatchItem{Path: e.Path(), Value: slices.Clone(v), Chain: slices.Clone(e.Chain()), Tock: e.Tock()})
				}
				return true
			})
		}
		n.watchers[w] = struct{}{}
	})
	if err != nil {
		return err
	}
	defer n.post(func() { delete(n.watchers, w) })
	for _, it := range initial {
		if err := send(it); err != nil {
			return err
		}
	}
	if fetch {
		if err := send(kvproto.WatchItem{UpToDate: true}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.stopped:
			return nil
		case it, ok := <-w.ch:
			if !ok {
				return errWatchOverflow
			}
			if err := send(it); err != nil {
				return err
			}
		}
	}
}

// notifyWatchers hands a change to every watcher below whose prefix it
// lies; a watcher whose queue is full is dropped (its watch ends).
func (n *node) notifyWatchers(c replicaChange) {
	for w := range n.watchers {
		if !c.Path.HasPrefix(w.prefix) {
			continue
		}
		select {
		case w.ch <- kvproto.WatchItem{Path: c.Path, Value: c.Value, Chain: c.Chain, Tock: c.Tock}:
		default:
			close(w.ch)
			delete(n.watchers, w)
			n.watchOverflows.Add(1)
			n.log.Warn("client protocol: a watcher fell behind; its watch ended", "path", w.prefix.String())
		}
	}
}

// Walk implements kvproto.Walker: the valued entries at and below p, in
// canonical order, copied on the owning goroutine and handed out after.
func (k kvTree) Walk(ctx context.Context, p tree.Path, fn func(kvproto.WatchItem) error) error {
	var items []kvproto.WatchItem
	if err := k.call(ctx, func() {
		k.n.r.Tree().Walk(p, func(e *tree.Entry) bool {
			if v, ok := e.Value(); ok {
				items = append(items, kvproto.WatchItem{Path: e.Path(), Value: slices.Clone(v), Chain: slices.Clone(e.Chain()), Tock: e.Tock()})
			}
			return true
		})
	}); err != nil {
		return err
	}
	for _, it := range items {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

// State implements kvproto.Stater.
func (k kvTree) State(ctx context.Context) (st kvproto.State, err error) {
	err = k.call(ctx, func() {
		t := k.n.r.Tree()
		st = kvproto.State{Node: k.n.cfg.Name, Tock: t.Tock(), Ticks: map[string]uint64{},
			Known: map[string]tree.RangeSet{}, Present: map[string]tree.RangeSet{},
			Deleted: map[string]tree.RangeSet{}, Missing: map[string]tree.RangeSet{}}
		for _, nd := range t.Nodes() {
			name := nd.Name()
			st.Ticks[name] = nd.Tick()
			st.Known[name] = nd.Superseded()
			st.Present[name] = nd.Present()
			st.Deleted[name] = nd.Deleted()
			st.Missing[name] = nd.Missing()
		}
	})
	return st, err
}

// Import implements kvproto.Importer: the event is applied as a peer's.
func (k kvTree) Import(ctx context.Context, ev tree.Event) (fresh bool, err error) {
	n := k.n
	persisted := make(chan error, 1)
	cerr := k.call(ctx, func() {
		fresh, err = n.r.Import(ev)
		if err == nil && fresh {
			n.waiters = append(n.waiters, persisted)
		} else {
			persisted <- nil
		}
	})
	if cerr != nil {
		return false, cerr
	}
	if err != nil {
		return false, err
	}
	select {
	case perr := <-persisted:
		return fresh, perr
	case <-ctx.Done():
		return fresh, ctx.Err()
	}
}

// ImportInfo implements kvproto.Importer.
func (k kvTree) ImportInfo(ctx context.Context, ticks map[string]uint64, known map[string]tree.RangeSet) error {
	return k.call(ctx, func() { k.n.r.ImportInfo(ticks, known) })
}

// ByTick implements kvproto.TickLookup.
func (k kvTree) ByTick(ctx context.Context, node string, tick uint64) (p tree.Path, e kvproto.Entry, err error) {
	cerr := k.call(ctx, func() {
		nd := k.n.r.Tree().LookupNode(node)
		var x *tree.Entry
		if nd != nil {
			x = nd.Entry(tick)
		}
		if x == nil {
			err = fmt.Errorf("%w: no current entry holds %s:%d (unknown or superseded)", tree.ErrNotFound, node, tick)
			return
		}
		v, _ := x.Value()
		p = x.Path()
		e = kvproto.Entry{Value: slices.Clone(v), Chain: slices.Clone(x.Chain()), Tock: x.Tock()}
	})
	if cerr != nil {
		return nil, e, cerr
	}
	return p, e, err
}

// Save implements kvproto.Saver: a MoaT-KV save file named name in the
// node's data directory (a plain file name, nothing else), written from
// one consistent state; full includes the meta tree.
func (k kvTree) Save(ctx context.Context, name string, full bool) (int, error) {
	if name != filepath.Base(name) || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return 0, fmt.Errorf("%w: save: %q must be a file name inside the data directory", tree.ErrInvalidValue, name)
	}
	var b []byte
	n := 0
	err := k.call(ctx, func() {
		t := k.n.r.Tree()
		st := wire.State{Node: k.n.cfg.Name, Tock: t.Tock(), Ticks: map[string]uint64{}, Known: map[string]tree.RangeSet{}}
		for _, nd := range t.Nodes() {
			st.Ticks[nd.Name()] = nd.Tick()
			st.Known[nd.Name()] = nd.Superseded()
		}
		b = wire.AppendState(nil, st)
		var w wire.DKVWriter
		t.Walk(nil, func(e *tree.Entry) bool {
			v, ok := e.Value()
			if !ok {
				return true
			}
			p := e.Path()
			if p.IsMeta() && !full {
				return true
			}
			b = w.AppendEntry(b, tree.Event{Path: p, Value: v, Chain: e.Chain(), Tock: e.Tock()})
			n++
			return true
		})
	})
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(k.n.cfg.DataDir, 0o755); err != nil {
		return 0, err
	}
	dst := filepath.Join(k.n.cfg.DataDir, name)
	if err := os.WriteFile(dst+".tmp", b, 0o644); err != nil {
		return 0, err
	}
	return n, os.Rename(dst+".tmp", dst)
}
