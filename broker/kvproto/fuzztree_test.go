package kvproto

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/edgekv/edgekv/tree"
)

// fuzzTree is the richest Tree of these tests: busTree (the base Tree,
// NodeLister, TickLookup, Walker, Messenger) plus Watcher, Stater,
// Importer and Saver, so that every action a client can send gets past
// "not supported" to its argument parsing and, for streams, its set-up.
// FuzzServe serves it.
//
// Watch is what the node does, in small: the initial entries and the
// marker from one consistent state, then every later change below the
// path, in order; a watcher whose queue overflows ends with an error.
type fuzzTree struct {
	busTree
	queue int // changes a watcher may have pending

	// wmu orders each change with its delivery to the watchers, and
	// guards watchers. It is taken before fakeTree's mu, never after.
	wmu      sync.Mutex
	watchers map[*treeWatch]struct{}
	saves    []string // names given to Save
}

type treeWatch struct {
	path tree.Path
	ch   chan WatchItem
}

func newFuzzTree() *fuzzTree {
	return &fuzzTree{
		busTree:  busTree{fakeTree: newFakeTree("ref1", 2007, 6144), bus: newFakeBus(5)},
		queue:    16,
		watchers: map[*treeWatch]struct{}{},
	}
}

// notify hands a change to the watchers below whose path it is; wmu is
// held.
func (f *fuzzTree) notify(it WatchItem) {
	for w := range f.watchers {
		if !it.Path.HasPrefix(w.path) {
			continue
		}
		select {
		case w.ch <- it:
		default:
			close(w.ch) // overflow: Watch ends with an error
			delete(f.watchers, w)
		}
	}
}

func (f *fuzzTree) Set(ctx context.Context, p tree.Path, value []byte, c Cond) (Result, error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	res, err := f.fakeTree.Set(ctx, p, value, c)
	if err == nil && !res.NoOp {
		f.notify(WatchItem{Path: p.Clone(), Value: slices.Clone(value), Chain: res.Chain, Tock: res.Tock})
	}
	return res, err
}

func (f *fuzzTree) Delete(ctx context.Context, p tree.Path, c Cond) (Result, error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	res, err := f.fakeTree.Delete(ctx, p, c)
	if err == nil {
		f.notify(WatchItem{Path: p.Clone(), Chain: res.Chain, Tock: res.Tock})
	}
	return res, err
}

func (f *fuzzTree) Watch(ctx context.Context, p tree.Path, fetch bool, send func(WatchItem) error) error {
	w := &treeWatch{path: p.Clone(), ch: make(chan WatchItem, f.queue)}
	var items []WatchItem
	f.wmu.Lock()
	if fetch {
		f.mu.Lock()
		f.t.Walk(p, func(e *tree.Entry) bool {
			if v, ok := e.Value(); ok {
				items = append(items, WatchItem{Path: e.Path(), Value: slices.Clone(v), Chain: slices.Clone(e.Chain()), Tock: e.Tock()})
			}
			return true
		})
		f.mu.Unlock()
	}
	f.watchers[w] = struct{}{}
	f.wmu.Unlock()
	defer func() {
		f.wmu.Lock()
		delete(f.watchers, w)
		f.wmu.Unlock()
	}()
	if fetch {
		for _, it := range items {
			if err := send(it); err != nil {
				return err
			}
		}
		if err := send(WatchItem{UpToDate: true}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case it, ok := <-w.ch:
			if !ok {
				return fmt.Errorf("watcher of %v fell %d changes behind", p, f.queue)
			}
			if err := send(it); err != nil {
				return err
			}
		}
	}
}

func (f *fuzzTree) State(ctx context.Context) (State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := State{Node: f.t.Self(), Tock: f.t.Tock(), Ticks: map[string]uint64{},
		Known: map[string]tree.RangeSet{}, Present: map[string]tree.RangeSet{},
		Deleted: map[string]tree.RangeSet{}, Missing: map[string]tree.RangeSet{}}
	for _, nd := range f.t.Nodes() {
		name := nd.Name()
		st.Ticks[name] = nd.Tick()
		st.Known[name] = nd.Superseded()
		st.Present[name] = nd.Present()
		st.Deleted[name] = nd.Deleted()
		st.Missing[name] = nd.Missing()
	}
	return st, nil
}

func (f *fuzzTree) Import(ctx context.Context, ev tree.Event) (bool, error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.mu.Lock()
	out, err := f.t.Apply(ev)
	f.mu.Unlock()
	if err != nil || !out.Changed() {
		return false, err
	}
	f.notify(WatchItem{Path: ev.Path.Clone(), Value: slices.Clone(ev.Value), Chain: slices.Clone(ev.Chain), Tock: ev.Tock})
	return true, nil
}

func (f *fuzzTree) ImportInfo(ctx context.Context, ticks map[string]uint64, known map[string]tree.RangeSet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, tick := range ticks {
		f.t.RaiseTick(name, tick)
	}
	for name, rs := range known {
		f.t.MarkSuperseded(name, rs)
	}
	return nil
}

// Save counts the entries a save would write; it writes nothing.
func (f *fuzzTree) Save(ctx context.Context, name string, full, replace bool) (int, error) {
	f.wmu.Lock()
	f.saves = append(f.saves, name)
	f.wmu.Unlock()
	n := 0
	err := f.Walk(ctx, tree.Path{}, func(it WatchItem) error {
		if full || !it.Path.IsMeta() {
			n++
		}
		return nil
	})
	return n, err
}

var (
	_ Tree       = (*fuzzTree)(nil)
	_ Watcher    = (*fuzzTree)(nil)
	_ Walker     = (*fuzzTree)(nil)
	_ Stater     = (*fuzzTree)(nil)
	_ Importer   = (*fuzzTree)(nil)
	_ Saver      = (*fuzzTree)(nil)
	_ TickLookup = (*fuzzTree)(nil)
	_ NodeLister = (*fuzzTree)(nil)
	_ Messenger  = (*fuzzTree)(nil)
)
