package node

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/store"
	"github.com/edgekv/edgekv/tree/wire"
)

// request is one call handed to the loop. Exactly one of the loop (take)
// and the caller (abandon) wins it: a request the caller gave up on is
// never carried out, and one the loop took is always answered.
type request struct {
	state atomic.Int32 // 0 queued, 1 taken, 2 abandoned
	run   func(e *Engine)
	write writeOp // a local write, if run is nil: in the request, one allocation per write
}

// writeOp is a local write handed to the loop.
type writeOp struct {
	p     tree.Path
	value []byte // nil: delete
	cond  Cond
	reply chan writeResult
}

func (q *request) take() bool    { return q.state.CompareAndSwap(0, 1) }
func (q *request) abandon() bool { return q.state.CompareAndSwap(0, 2) }

// take runs q on the loop unless its caller gave up.
func (e *Engine) take(q *request) {
	defer e.queued.Add(-1)
	if !q.take() {
		return
	}
	if q.run == nil {
		w := &q.write
		e.applyWrite(w.p, w.value, w.cond, w.reply)
		return
	}
	q.run(e)
}

// submit queues q for the loop.
func (e *Engine) submit(ctx context.Context, q *request) error {
	e.queued.Add(1) // before the send: see writeDirect
	select {        // the common case, without looking at ctx
	case e.reqs <- q:
		return nil
	default:
	}
	select {
	case e.reqs <- q:
		return nil
	case <-ctx.Done():
		e.queued.Add(-1)
		return ctx.Err()
	case <-e.stopping:
		e.queued.Add(-1)
		return e.unavailable("stopped")
	}
}

// call runs f on the loop and returns its result, which comes back over a
// channel. If ctx ends or the engine stops first and the loop has not
// taken the request, it never runs.
func call[T any](e *Engine, ctx context.Context, f func(e *Engine) T) (T, error) {
	reply := make(chan T, 1)
	q := &request{run: func(e *Engine) { reply <- f(e) }}
	var zero T
	if err := e.submit(ctx, q); err != nil {
		return zero, err
	}
	select {
	case v := <-reply:
		return v, nil
	case <-ctx.Done():
		if q.abandon() {
			return zero, ctx.Err()
		}
	case <-e.stopping:
		if q.abandon() {
			return zero, e.unavailable("stopped")
		}
	}
	return <-reply, nil // taken: it runs now, and answers at once
}

// Entry is one entry as the API returns it: copies, never the tree's own
// slices. The zero Entry stands for "no such entry".
type Entry struct {
	Value []byte // msgpack; nil: no value (a deletion)
	Chain tree.Chain
	Tock  uint64
}

// Exists reports whether there is an entry with a version (a value or a
// tombstone).
func (en Entry) Exists() bool { return len(en.Chain) > 0 }

func entryOf(x *tree.Entry) Entry {
	if x == nil || len(x.Chain()) == 0 {
		return Entry{}
	}
	v, _ := x.Value()
	return Entry{Value: slices.Clone(v), Chain: slices.Clone(x.Chain()), Tock: x.Tock()}
}

// Item is one entry with its path, as Walk and Watch deliver it. UpToDate
// marks the end of a watch's initial entries (no path, no value). The
// Entry's Value and Chain are shared with the tree (which replaces them on
// a change, never alters them): read them, never modify them.
type Item struct {
	Path     tree.Path
	Entry    Entry
	UpToDate bool
}

// Cond is a condition on a write: the tree's conditions, plus Prev, the
// value (msgpack) the entry must hold now (MoaT-KV's prev).
type Cond struct {
	tree.Cond
	Prev []byte
}

// Result is what a write did: the entry's previous value, its new chain and
// tock, or NoOp for an idempotent write that changed nothing (then Chain
// and Tock are the entry's current ones).
type Result struct {
	Prev  []byte
	Chain tree.Chain
	Tock  uint64
	NoOp  bool
}

type writeResult struct {
	res Result
	err error
}

// Get returns the entry at p (the zero Entry if there is none). It reads
// the tree on the caller's goroutine, under the lock the loop holds while
// it works (no hand-off to the loop and back: a get costs what reading
// the entry costs), and sees every write whose Set has returned.
func (e *Engine) Get(ctx context.Context, p tree.Path) (Entry, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	if e.looping.Load() {
		e.treeMu.RLock()
		if e.looping.Load() { // the loop has not ended meanwhile
			en := entryOf(e.r.Tree().Get(p))
			e.treeMu.RUnlock()
			return en, nil
		}
		e.treeMu.RUnlock()
	}
	// Not running yet, driven by a Stepper, or stopping.
	return call(e, ctx, func(e *Engine) Entry { return entryOf(e.r.Tree().Get(p)) })
}

// Set writes value (one msgpack value) at p as this node, under c. It
// returns once the write is in the store (fsynced under sync "always").
// Errors wrap tree.ErrInvalidPath, tree.ErrInvalidValue, tree.ErrConflict
// or tree.ErrUnavailable.
func (e *Engine) Set(ctx context.Context, p tree.Path, value []byte, c Cond) (Result, error) {
	if value == nil {
		return Result{}, fmt.Errorf("%w: Set with no value (use Delete)", tree.ErrInvalidValue)
	}
	return e.write(ctx, p, value, c)
}

// WriteNoWait queues a write of value at p (nil: a delete) as this node,
// with no condition, and returns once it is queued, not once it is
// applied: for callers that have no one to answer (an MQTT publish at
// QoS 0 is acknowledged by nobody). Writes queued from one goroutine are
// applied in order, and before any write that goroutine makes later
// through the engine. What the loop would refuse for any value (status
// entries) is refused here; a later failure (a delete of nothing, the
// engine stopping) is not reported. It waits while the engine's queue is
// full, as long as ctx lets it: a client that writes faster than the node
// applies is slowed, not buffered.
func (e *Engine) WriteNoWait(ctx context.Context, p tree.Path, value []byte) error {
	if p.HasPrefix(replica.StatusPrefix) {
		return fmt.Errorf("%w: %s: status entries are written by their nodes alone", tree.ErrPermission, p)
	}
	if e.writeDirect(p, value, Cond{}, nil) {
		return nil
	}
	return e.submit(ctx, &request{write: writeOp{p: p, value: value}})
}

// Delete deletes the value at p as this node, under c. Deleting an entry
// that holds no value fails with tree.ErrNotFound and writes nothing.
func (e *Engine) Delete(ctx context.Context, p tree.Path, c Cond) (Result, error) {
	return e.write(ctx, p, nil, c)
}

// replies recycles the reply channels of local writes: a channel comes
// back to the pool empty (its one answer received, or never sent because
// the request was abandoned before the engine took it).
var replies = sync.Pool{New: func() any { return make(chan writeResult, 1) }}

func (e *Engine) write(ctx context.Context, p tree.Path, value []byte, c Cond) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	reply := replies.Get().(chan writeResult)
	if e.writeDirect(p, value, c, reply) {
		wr := <-reply // answered by applyWrite or the flush
		replies.Put(reply)
		return wr.res, wr.err
	}
	q := &request{write: writeOp{p: p, value: value, cond: c, reply: reply}}
	if err := e.submit(ctx, q); err != nil {
		replies.Put(reply)
		return Result{}, err
	}
	var wr writeResult
	select {
	case wr = <-reply:
	case <-ctx.Done():
		if q.abandon() {
			replies.Put(reply)
			return Result{}, ctx.Err()
		}
		wr = <-reply // taken: answered after the next flush
	case <-e.stopping:
		if q.abandon() {
			replies.Put(reply)
			return Result{}, e.unavailable("stopped")
		}
		wr = <-reply
	}
	replies.Put(reply)
	return wr.res, wr.err
}

// writeDirect applies a local write on the caller's goroutine, as the loop
// would, and reports whether it did. It does so only while the loop waits
// for input (the caller takes treeMu, the lock the loop works under,
// without waiting for it), with no request queued for the loop or in its
// hands (one queued by the caller itself must be applied first: see
// WriteNoWait), and unless every write is fsynced (sync "always": there
// the loop's turns let one fsync serve many writes). Otherwise the write
// goes to the loop. It saves the two goroutine hand-offs of a write that
// nothing competes with; the answer is on reply (nil: nobody waits) when
// it returns.
//
// The flush that follows is the loop's: records, answer, messages to
// peers, changes to watches and the Observer, all under treeMu, so they
// are seen in the same order as the loop's own. If the store fails here,
// the loop notices at its next turn (at most TickEvery later) and stops.
// SyncsEachWrite reports whether Set and Delete wait for an fsync of
// their record before they answer (sync always). Under interval or never
// they answer as soon as the write is applied.
func (e *Engine) SyncsEachWrite() bool { return e.cfg.Store.Sync == store.SyncAlways }

func (e *Engine) writeDirect(p tree.Path, value []byte, c Cond, reply chan writeResult) bool {
	if e.cfg.Store.Sync == store.SyncAlways || e.queued.Load() != 0 || !e.looping.Load() || !e.treeMu.TryLock() {
		return false
	}
	defer e.treeMu.Unlock()
	// Under treeMu the loop waits in its select, or waits for treeMu with
	// a request in hand, or has ended (then looping is false). A request
	// of the caller's own is counted in queued until it is applied, so
	// that it cannot be overtaken; those of other goroutines may be.
	if !e.looping.Load() {
		return false
	}
	e.directWrites.Add(1)
	e.applyWrite(p, value, c, reply)
	if err := e.flush(); err != nil {
		e.log.Debug("flush after a direct write failed", "error", err)
	}
	return true
}

// applyWrite applies a local write on the loop and answers on reply (nil:
// nobody waits, WriteNoWait): at once if it failed or changed nothing,
// after the flush that persists it otherwise.
func (e *Engine) applyWrite(p tree.Path, value []byte, c Cond, reply chan<- writeResult) {
	if e.failed != nil {
		answer(reply, writeResult{err: e.unavailable("stopped")})
		return
	}
	if p.HasPrefix(replica.StatusPrefix) {
		answer(reply, writeResult{err: fmt.Errorf("%w: %s: status entries are written by their nodes alone", tree.ErrPermission, p)})
		return
	}
	var res Result
	cur := e.r.Tree().Get(p)
	if cur != nil && (reply != nil || c.Prev != nil) {
		if v, ok := cur.Value(); ok {
			res.Prev = slices.Clone(v)
		}
	}
	if c.Prev != nil && !bytes.Equal(res.Prev, c.Prev) {
		answer(reply, writeResult{err: fmt.Errorf("%w: %s does not hold the expected previous value", tree.ErrConflict, p)})
		return
	}
	var ev tree.Event
	var err error
	changed := true
	if value == nil {
		ev, err = e.r.Delete(p, c.Cond)
	} else {
		ev, changed, err = e.r.Set(p, value, c.Cond)
	}
	switch {
	case err != nil:
		answer(reply, writeResult{err: err})
	case !changed: // idempotent: nothing written
		res.NoOp = true
		if cur != nil {
			res.Chain, res.Tock = slices.Clone(cur.Chain()), cur.Tock()
		}
		answer(reply, writeResult{res: res})
	default:
		res.Chain, res.Tock = slices.Clone(ev.Chain), ev.Tock
		e.waiters = append(e.waiters, waiter{reply: reply, res: writeResult{res: res}})
	}
}

// walkChunk is how many entries a walk visits per turn of the engine.
const walkChunk = 256

// Walk calls fn for every entry holding a value at or below p, in
// canonical order. The engine visits walkChunk entries per turn and hands
// them to fn on the caller's goroutine before it visits more, so a walk of
// a large subtree neither holds the engine's goroutine nor copies the
// subtree, and a caller that is slow to take entries (fn blocks) slows only
// its own walk. Entries present from the start to the end of the walk are
// each given once, as they are when their turn comes (tree.Iter); an entry
// written meanwhile may be given with its newer value, one added meanwhile
// may be left out.
func (e *Engine) Walk(ctx context.Context, p tree.Path, fn func(Item) error) error {
	return e.walk(ctx, p, false, fn)
}

// WalkEmpty is Walk that also gives the entries that hold no value
// (Entry.Value nil): the inner entries of paths, and deleted ones not yet
// purged, as MoaT-KV's get_tree and enum with `empty` do.
func (e *Engine) WalkEmpty(ctx context.Context, p tree.Path, fn func(Item) error) error {
	return e.walk(ctx, p, true, fn)
}

func (e *Engine) walk(ctx context.Context, p tree.Path, empty bool, fn func(Item) error) error {
	var it *tree.Iter
	var buf []Item // reused from chunk to chunk: fn gets copies of the items
	for {
		c, err := call(e, ctx, func(e *Engine) walkStep {
			if it == nil {
				it = e.r.Tree().Iter(p)
			}
			return e.step(it, buf, empty)
		})
		if err != nil {
			return err
		}
		for _, x := range c.items {
			if err := fn(x); err != nil {
				return err
			}
		}
		if !c.more {
			return nil
		}
		clear(c.items)
		buf = c.items[:0]
	}
}

// Cursor is a walk whose steps run on the engine's goroutine, in order
// with the Observer: the broker serves retained messages from it and
// needs to know, for each change the Observer is shown, whether its walk
// has seen that change already. Make one with Engine.Cursor; it is for one
// goroutine at a time.
type Cursor struct {
	e     *Engine
	p     tree.Path
	depth int
	it    *tree.Iter
	buf   []Item
}

// Cursor returns a walk of the entries at p and below it, at most depth
// levels below (negative: all).
func (e *Engine) Cursor(p tree.Path, depth int) *Cursor {
	return &Cursor{e: e, p: p.Clone(), depth: depth}
}

// Next visits up to walkChunk more entries (fewer once their values come
// to cursorBytes) in canonical order (parents
// first) and calls fn with them on the engine's goroutine, having first
// shown the Observer every change made so far: a change of an entry that
// fn is given was shown to the Observer before fn runs, and any later
// change is shown after fn returns. Entries without a value (deleted, not
// yet purged) are given too, with a nil Value, so that fn learns how far
// the walk has come; entries added meanwhile under a level the walk has
// reached are not visited (tree.Iter). The items share the tree's slices
// (the values may be kept, never modified; the slice of items only during
// fn), which must not block or call the engine. Next reports whether
// entries are left; it fails if ctx ends, the engine stops, or the changes
// cannot be shown first (then fn has not run).
func (c *Cursor) Next(ctx context.Context, fn func([]Item)) (more bool, err error) {
	var flushErr error
	more, err = call(c.e, ctx, func(e *Engine) bool {
		// Show pending changes first (this turn may have applied writes
		// whose Changed calls come at the end of the turn).
		if flushErr = e.flush(); flushErr != nil {
			return false
		}
		if c.it == nil {
			if c.depth < 0 {
				c.it = e.r.Tree().Iter(c.p)
			} else {
				c.it = e.r.Tree().IterDepth(c.p, c.depth)
			}
		}
		c.buf = c.buf[:0]
		size, more := 0, true
		for more && len(c.buf) < walkChunk && size < cursorBytes {
			more = c.it.Next(1, func(x *tree.Entry) {
				v, _ := x.Value()
				size += len(v)
				c.buf = append(c.buf, Item{Path: x.Path(), Entry: Entry{Value: v, Chain: x.Chain(), Tock: x.Tock()}})
			})
		}
		fn(c.buf)
		clear(c.buf)
		return more
	})
	if err == nil && flushErr != nil {
		return false, flushErr
	}
	return more, err
}

// cursorBytes bounds the values a Cursor gives per step: the broker queues
// a step's entries at once.
const cursorBytes = 64 << 10

// walkStep is one turn's worth of a walk.
type walkStep struct {
	items []Item
	more  bool
}

// step visits the next walkChunk entries of it, appending the items to
// buf (which may be nil).
func (e *Engine) step(it *tree.Iter, buf []Item, empty bool) walkStep {
	if buf == nil {
		buf = make([]Item, 0, walkChunk)
	}
	c := walkStep{items: buf}
	c.more = it.Next(walkChunk, func(x *tree.Entry) {
		if v, ok := x.Value(); ok {
			c.items = append(c.items, Item{Path: x.Path(), Entry: Entry{Value: v, Chain: x.Chain(), Tock: x.Tock()}})
		} else if empty {
			c.items = append(c.items, Item{Path: x.Path(), Entry: Entry{Chain: x.Chain(), Tock: x.Tock()}})
		}
	})
	return c
}

// Hello returns the node's name, its own tick and the current tock.
func (e *Engine) Hello(ctx context.Context) (node string, tick, tock uint64, err error) {
	type hello struct{ tick, tock uint64 }
	h, err := call(e, ctx, func(e *Engine) hello {
		return hello{e.r.Tree().Node(e.name).Tick(), e.r.Tree().Tock()}
	})
	return e.name, h.tick, h.tock, err
}

// Tock returns the current tock.
func (e *Engine) Tock(ctx context.Context) (uint64, error) {
	return call(e, ctx, func(e *Engine) uint64 { return e.r.Tree().Tock() })
}

// NodeState is what the engine knows of one node's ticks.
type NodeState struct {
	Tick       uint64
	Superseded tree.RangeSet // seen, no longer on any chain
	Present    tree.RangeSet // on some current chain
	Deleted    tree.RangeSet // on tombstones' chains
	Missing    tree.RangeSet // known to exist, not held
	Skipped    tree.RangeSet // declared skipped by the node
}

// State is the engine's view of every node it knows, by name.
type State struct {
	Node    string
	Tock    uint64
	Entries int // entries holding a value
	Nodes   map[string]NodeState
}

// State returns the engine's view of every node's ticks.
func (e *Engine) State(ctx context.Context) (State, error) {
	return call(e, ctx, func(e *Engine) State {
		t := e.r.Tree()
		st := State{Node: e.name, Tock: t.Tock(), Entries: t.Len(), Nodes: make(map[string]NodeState)}
		for _, n := range t.Nodes() {
			st.Nodes[n.Name()] = NodeState{Tick: n.Tick(), Superseded: n.Superseded(), Present: n.Present(),
				Deleted: n.Deleted(), Missing: n.Missing(), Skipped: n.Skipped().Clone()}
		}
		return st
	})
}

// NodeSummary is one node's line in a Summary.
type NodeSummary struct {
	Tick  uint64
	Known tree.RangeSet // ticks seen (present or superseded)
	Heads uint64        // hash of its ticks that head an entry (tree.Node.HeadsHash)
}

// Summary is a cheap fingerprint of the engine's state: the entries holding
// a value, and per node its tick, the ticks seen and the heads hash. Two
// engines with equal summaries have seen the same changes and hold the same
// versions. Unlike State it costs no walk of the tree.
type Summary struct {
	Entries int
	Nodes   map[string]NodeSummary
}

// Summary returns the engine's summary.
func (e *Engine) Summary(ctx context.Context) (Summary, error) {
	return call(e, ctx, func(e *Engine) Summary {
		t := e.r.Tree()
		s := Summary{Entries: t.Len(), Nodes: make(map[string]NodeSummary)}
		for _, n := range t.Nodes() {
			s.Nodes[n.Name()] = NodeSummary{Tick: n.Tick(), Known: n.Known().Clone(), Heads: n.HeadsHash()}
		}
		return s
	})
}

// Import applies an event given by a client (MoaT-KV's update action, or a
// save file being loaded) as if a peer had sent it, and reports whether it
// was new here. It returns once the event is in the store.
func (e *Engine) Import(ctx context.Context, ev tree.Event) (fresh bool, err error) {
	reply := make(chan writeResult, 1)
	q := &request{run: func(e *Engine) {
		if e.failed != nil {
			reply <- writeResult{err: e.unavailable("stopped")}
			return
		}
		fresh, err := e.r.Import(ev)
		switch {
		case err != nil:
			reply <- writeResult{err: err}
		case !fresh:
			reply <- writeResult{res: Result{NoOp: true}}
		default:
			e.waiters = append(e.waiters, waiter{reply: reply})
		}
	}}
	if err := e.submit(ctx, q); err != nil {
		return false, err
	}
	var wr writeResult
	select {
	case wr = <-reply:
	case <-ctx.Done():
		if q.abandon() {
			return false, ctx.Err()
		}
		wr = <-reply
	case <-e.stopping:
		if q.abandon() {
			return false, e.unavailable("stopped")
		}
		wr = <-reply
	}
	return wr.err == nil && !wr.res.NoOp, wr.err
}

// ImportInfo applies node state from a client or a save file: ticks raise
// what is known of nodes, known marks ticks as seen and superseded.
func (e *Engine) ImportInfo(ctx context.Context, ticks map[string]uint64, known map[string]tree.RangeSet) error {
	ierr, err := call(e, ctx, func(e *Engine) error { return e.r.ImportInfo(ticks, known) })
	if err != nil {
		return err
	}
	return ierr
}

// ByTick returns the entry whose chain holds node's tick, with its path.
// An unknown or superseded tick is an error wrapping tree.ErrNotFound.
func (e *Engine) ByTick(ctx context.Context, node string, tick uint64) (tree.Path, Entry, error) {
	type found struct {
		p   tree.Path
		en  Entry
		err error
	}
	f, err := call(e, ctx, func(e *Engine) found {
		var x *tree.Entry
		if nd := e.r.Tree().LookupNode(node); nd != nil {
			x = nd.Entry(tick)
		}
		if x == nil {
			return found{err: fmt.Errorf("%w: no current entry holds %s:%d (unknown or superseded)", tree.ErrNotFound, node, tick)}
		}
		return found{p: x.Path(), en: entryOf(x)}
	})
	if err != nil {
		return nil, Entry{}, err
	}
	return f.p, f.en, f.err
}

// NodeTicks lists node's ticks that are on some current chain (current:
// only chains it heads), at most max of them (≤ 0: all).
func (e *Engine) NodeTicks(ctx context.Context, node string, max int, current bool) ([]uint64, error) {
	type res struct {
		ticks []uint64
		err   error
	}
	r, err := call(e, ctx, func(e *Engine) res {
		nd := e.r.Tree().LookupNode(node)
		if nd == nil {
			return res{err: fmt.Errorf("%w: node %q is not known here", tree.ErrNotFound, node)}
		}
		var out []uint64
		for t := range nd.Present().All {
			if current {
				if h, ok := nd.Entry(t).Chain().Head(); !ok || h.Node != node {
					continue
				}
			}
			out = append(out, t)
			if max > 0 && len(out) == max {
				break
			}
		}
		return res{ticks: out}
	})
	if err != nil {
		return nil, err
	}
	return r.ticks, r.err
}

// SaveFile encodes the tree as a MoaT-KV save file (a state record, then
// every entry holding a value; full includes the meta tree) from one
// consistent state, and returns it with the number of entries.
func (e *Engine) SaveFile(ctx context.Context, full bool) ([]byte, int, error) {
	type res struct {
		b []byte
		n int
	}
	r, err := call(e, ctx, func(e *Engine) res {
		t := e.r.Tree()
		st := wire.State{Node: e.name, Tock: t.Tock(), Ticks: map[string]uint64{}, Known: map[string]tree.RangeSet{}}
		for _, nd := range t.Nodes() {
			st.Ticks[nd.Name()] = nd.Tick()
			st.Known[nd.Name()] = nd.Superseded()
		}
		b := wire.AppendState(nil, st)
		var w wire.DKVWriter
		n := 0
		t.Walk(nil, func(x *tree.Entry) bool {
			v, ok := x.Value()
			if !ok {
				return true
			}
			p := x.Path()
			if p.IsMeta() && !full {
				return true
			}
			b = w.AppendEntry(b, tree.Event{Path: p, Value: v, Chain: x.Chain(), Tock: x.Tock()})
			n++
			return true
		})
		return res{b, n}
	})
	return r.b, r.n, err
}

// LinkInfo describes one sync link.
type LinkInfo struct {
	Name   string // "in:P", "out:P", "hub:H"
	Peer   string // the peer's node name, from its hello ("" until then, or a hub)
	Active bool   // carries the sync (false: idle, the pair's other link does)
}

// Links lists the links that are up, by name.
func (e *Engine) Links(ctx context.Context) ([]LinkInfo, error) {
	return call(e, ctx, func(e *Engine) []LinkInfo {
		peers := make(map[replica.LinkID]string)
		for _, ls := range e.r.Links() {
			peers[ls.ID] = ls.Peer
		}
		var out []LinkInfo
		for _, name := range slices.Sorted(mapKeys(e.links)) {
			l := e.links[name]
			out = append(out, LinkInfo{Name: name, Peer: peers[l.id], Active: l.id != 0})
		}
		return out
	})
}

// Members reports the other nodes this engine has heard of through
// heartbeats (relayed across the mesh, not only from direct peers), each
// with whether it is live: heard from within four heartbeats.
func (e *Engine) Members(ctx context.Context) (map[string]bool, error) {
	return call(e, ctx, func(e *Engine) map[string]bool {
		out := map[string]bool{}
		for _, m := range e.r.Members() {
			out[m.Node] = m.Live
		}
		return out
	})
}

// StateRecord returns a MoaT-KV state record of the node's view now
// ({node, tock, nodes, known}), as a save file or a change log starts.
func (e *Engine) StateRecord(ctx context.Context) ([]byte, error) {
	return call(e, ctx, func(e *Engine) []byte {
		t := e.r.Tree()
		st := wire.State{Node: e.name, Tock: t.Tock(), Ticks: map[string]uint64{}, Known: map[string]tree.RangeSet{}}
		for _, nd := range t.Nodes() {
			st.Ticks[nd.Name()] = nd.Tick()
			st.Known[nd.Name()] = nd.Superseded()
		}
		return wire.AppendState(nil, st)
	})
}

// KillNode forgets node name, which must head no entry (MoaT-KV's
// kill_node; see replica.Replica.KillNode), and tells every link.
func (e *Engine) KillNode(ctx context.Context, name string) error {
	kerr, err := call(e, ctx, func(e *Engine) error { return e.r.KillNode(name) })
	if err != nil {
		return err
	}
	return kerr
}

// CheckDeleted broadcasts info{deleted} for the asked ticks this node knows
// but holds on no entry, and returns them (MoaT-KV's check_deleted).
func (e *Engine) CheckDeleted(ctx context.Context, nodes map[string]tree.RangeSet) (map[string]tree.RangeSet, error) {
	return call(e, ctx, func(e *Engine) map[string]tree.RangeSet { return e.r.CheckDeleted(nodes) })
}

// SendInfo broadcasts an info message on every link (MoaT-KV's
// fake_info_send when fake: node "" and tick 0).
func (e *Engine) SendInfo(ctx context.Context, in wire.Info, fake bool) error {
	_, err := call(e, ctx, func(e *Engine) struct{} { e.r.SendInfo(in, fake); return struct{}{} })
	return err
}

// ApplyClientInfo applies info fields a client gave (MoaT-KV's fake_info:
// deleted and node_drop; see replica.Replica.ApplyClientInfo).
func (e *Engine) ApplyClientInfo(ctx context.Context, in wire.Info) error {
	_, err := call(e, ctx, func(e *Engine) struct{} { e.r.ApplyClientInfo(in); return struct{}{} })
	return err
}
