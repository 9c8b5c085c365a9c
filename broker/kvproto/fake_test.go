package kvproto

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/edgekv/edgekv/tree"
)

// fakeTree implements Tree over a real tree.Tree behind a mutex, the way
// cmd/edgekv will (there: on the node's owning goroutine).
type fakeTree struct {
	mu sync.Mutex
	t  *tree.Tree
}

func newFakeTree(node string, tick, tock uint64) *fakeTree {
	t := tree.New(tree.Config{Self: node})
	t.RaiseTick(node, tick)
	t.SeeTock(tock)
	return &fakeTree{t: t}
}

// setTock moves the tock to exactly tock (it never goes down).
func (f *fakeTree) setTock(tock uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t.SeeTock(tock)
}

func (f *fakeTree) fresh() uint64 {
	f.t.SeeTock(f.t.Tock() + 1)
	return f.t.Tock()
}

func (f *fakeTree) Hello(ctx context.Context) (Hello, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	self := f.t.Self()
	return Hello{Node: self, Tick: f.t.Node(self).Tick(), Tock: f.fresh()}, nil
}

func (f *fakeTree) Tock(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fresh(), nil
}

func (f *fakeTree) Get(ctx context.Context, p tree.Path) (Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.t.Get(p)
	if e == nil {
		return Entry{}, nil
	}
	v, _ := e.Value()
	return Entry{Value: bytes.Clone(v), Chain: slices.Clone(e.Chain()), Tock: e.Tock()}, nil
}

func (f *fakeTree) write(p tree.Path, value []byte, c Cond) (Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var old []byte
	var cur tree.Chain
	var curTock uint64
	if e := f.t.Get(p); e != nil {
		v, _ := e.Value()
		old, cur, curTock = bytes.Clone(v), slices.Clone(e.Chain()), e.Tock()
	}
	if c.Prev != nil && !bytes.Equal(c.Prev, old) {
		return Result{}, fmt.Errorf("%w: %v does not hold the expected value", tree.ErrConflict, p)
	}
	tc := tree.Cond{MustNotExist: c.MustNotExist, Head: c.Head, Idem: c.Idem}
	if value == nil {
		ev, err := f.t.Delete(p, tc)
		if err != nil {
			return Result{}, err
		}
		return Result{Prev: old, Chain: slices.Clone(ev.Chain), Tock: ev.Tock}, nil
	}
	ev, changed, err := f.t.Set(p, bytes.Clone(value), tc)
	if err != nil {
		return Result{}, err
	}
	if !changed {
		return Result{NoOp: true, Prev: old, Chain: cur, Tock: curTock}, nil
	}
	return Result{Prev: old, Chain: slices.Clone(ev.Chain), Tock: ev.Tock}, nil
}

func (f *fakeTree) Set(ctx context.Context, p tree.Path, value []byte, c Cond) (Result, error) {
	return f.write(p, value, c)
}

func (f *fakeTree) Delete(ctx context.Context, p tree.Path, c Cond) (Result, error) {
	return f.write(p, nil, c)
}

// chainOf builds a chain from node, tick pairs.
func chainOf(args ...any) tree.Chain {
	var c tree.Chain
	for i := 0; i+1 < len(args); i += 2 {
		c = append(c, tree.Link{Node: args[i].(string), Tick: uint64(args[i+1].(int))})
	}
	return c
}
