package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"

	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/tree"
)

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
	type answer struct {
		res kvproto.Result
		err error
	}
	reply := make(chan answer, 1)
	persisted := make(chan error, 1)
	var write func()
	write = func() {
		if n.holding {
			n.held = append(n.held, write)
			return
		}
		var res kvproto.Result
		cur := n.r.Tree().Get(p)
		if cur != nil {
			if v, ok := cur.Value(); ok {
				res.Prev = slices.Clone(v)
			}
		}
		if c.Prev != nil && !bytes.Equal(res.Prev, c.Prev) {
			reply <- answer{err: fmt.Errorf("%w: %s does not hold the expected previous value", tree.ErrConflict, p)}
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
			reply <- answer{err: err}
			return
		}
		if !changed { // idempotent: nothing written
			res.NoOp = true
			if cur != nil {
				res.Chain, res.Tock = slices.Clone(cur.Chain()), cur.Tock()
			}
			reply <- answer{res: res}
			return
		}
		res.Chain, res.Tock = slices.Clone(ev.Chain), ev.Tock
		reply <- answer{res: res}
		n.waiters = append(n.waiters, persisted)
	}
	if !n.do(ctx, write) {
		return kvproto.Result{}, fmt.Errorf("node %s is stopping", n.cfg.Name)
	}
	var a answer
	select {
	case a = <-reply:
	case <-ctx.Done():
		return kvproto.Result{}, ctx.Err()
	case <-n.stopped:
		return kvproto.Result{}, fmt.Errorf("node %s stopped", n.cfg.Name)
	}
	if a.err != nil || a.res.NoOp {
		return a.res, a.err
	}
	select {
	case err := <-persisted:
		return a.res, err
	case <-ctx.Done():
		return kvproto.Result{}, ctx.Err()
	case <-n.stopped:
		return kvproto.Result{}, fmt.Errorf("node %s stopped before the write was persisted", n.cfg.Name)
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
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			n.log.Warn("client protocol: accept failed", "error", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ServeConn(ctx, conn); err != nil && ctx.Err() == nil {
				n.log.Info("client connection ended", "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}
