package kvproto

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// Walker is implemented by a Tree that can list entries: Walk calls fn for
// the entry at p and every entry below it that holds a value, in canonical
// order (parents first), from one consistent state.
type Walker interface {
	Walk(ctx context.Context, p tree.Path, fn func(WatchItem) error) error
}

// EmptyWalker is a Walker that can also give the entries holding no value
// (WatchItem.Value nil: inner entries, deletions not yet purged), for the
// `empty` flag of get_tree and enum.
type EmptyWalker interface {
	WalkEmpty(ctx context.Context, p tree.Path, fn func(WatchItem) error) error
}

// walk is w.Walk, or with empty (and a tree that can) WalkEmpty.
func (s *Server) walk(ctx context.Context, w Walker, p tree.Path, empty bool, fn func(WatchItem) error) error {
	if ew, ok := s.Tree.(EmptyWalker); ok && empty {
		return ew.WalkEmpty(ctx, p, fn)
	}
	return w.Walk(ctx, p, fn)
}

// tasks tracks one connection's running requests, for the stop action and
// for ending the streams when the client goes away.
type tasks struct {
	mu      sync.Mutex
	running map[uint64]task
	next    uint64 // numbers the tasks
	streams int    // running tasks that are streams
}

type task struct {
	id      uint64
	cancel  func()
	endless bool // a stream that ends only when stopped (watch, msg_monitor)
	stream  bool // a stream (watch, get_tree, msg_monitor)
}

func newTasks() *tasks { return &tasks{running: make(map[uint64]task)} }

// start registers request seq and returns its context and the function
// that ends it. That function may be called more than once; it forgets
// only this request, not a later one with the same seq.
func (t *tasks) start(ctx context.Context, seq uint64, endless, stream bool) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	end := t.startFunc(seq, endless, stream, cancel)
	return ctx, func() {
		end()
		cancel()
	}
}

// startFunc registers request seq, which stop ends by calling cancel, and
// returns the function that forgets it (see start).
func (t *tasks) startFunc(seq uint64, endless, stream bool, cancel func()) func() {
	t.mu.Lock()
	t.next++
	id := t.next
	t.running[seq] = task{id: id, cancel: cancel, endless: endless, stream: stream}
	if stream {
		t.streams++
	}
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		if tk, ok := t.running[seq]; ok && tk.id == id {
			t.forget(seq, tk)
		}
		t.mu.Unlock()
	}
}

// forget removes running task tk (under mu).
func (t *tasks) forget(seq uint64, tk task) {
	delete(t.running, seq)
	if tk.stream {
		t.streams--
	}
}

// openStreams returns the number of running streams: a stopped one no
// longer counts, though its goroutine may take a moment to end.
// idle reports whether no request is running.
func (t *tasks) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.running) == 0
}

func (t *tasks) openStreams() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.streams
}

// stop cancels request seq and reports whether it was running. The seq
// is free again at once, for a client that reuses it right away.
func (t *tasks) stop(seq uint64) bool {
	t.mu.Lock()
	tk, ok := t.running[seq]
	if ok {
		t.forget(seq, tk)
	}
	t.mu.Unlock()
	if ok {
		tk.cancel()
	}
	return ok
}

// isRunning reports whether request seq is still running.
func (t *tasks) isRunning(seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.running[seq]
	return ok
}

// stopEndless cancels the running watches and monitors: once the client
// has closed its side nobody is left to stop them, and one would
// otherwise stay registered on the node until its next message failed to
// send.
func (t *tasks) stopEndless() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tk := range t.running {
		if tk.endless {
			tk.cancel()
		}
	}
}

// appendResult appends {key: value, tock?, seq}: MoaT-KV wraps a plain
// return value as {result: value}.
func appendResult(b []byte, key string, val func([]byte) []byte, seq, tock uint64, withTock bool) []byte {
	n := uint32(2)
	if withTock {
		n++
	}
	b = msgp.AppendMapHeader(b, n)
	b = appendKey(b, key)
	b = val(b)
	if withTock {
		b = appendKey(b, "tock")
		b = msgp.AppendUint64(b, tock)
	}
	b = appendKey(b, "seq")
	return msgp.AppendUint64(b, seq)
}

// stop serves {action: stop, task: seq}: it ends that running request
// (a watch, say) and answers {result: true|false, tock, seq}.
func (s *Server) stop(ctx context.Context, req Request, ts *tasks) []byte {
	task, ok, err := uintKey(req.Raw, "task")
	if err != nil || !ok {
		return s.handle(ctx, req, invalid(req, "stop: want the task's seq in \"task\""))
	}
	stopped := ts.stop(task)
	tock, _ := s.Tree.Tock(ctx)
	return appendResult(nil, "result", func(b []byte) []byte { return msgp.AppendBool(b, stopped) }, req.Seq, tock, true)
}

// uintKey reads a non-negative integer key of a request map.
func uintKey(raw []byte, key string) (uint64, bool, error) {
	n, rest, err := msgp.ReadMapHeaderBytes(raw)
	if err != nil {
		return 0, false, err
	}
	for range n {
		var k []byte
		if k, rest, err = msgp.ReadMapKeyZC(rest); err != nil {
			return 0, false, err
		}
		if string(k) == key {
			v, _, err := msgp.ReadUint64Bytes(rest)
			return v, err == nil, err
		}
		if rest, err = msgp.Skip(rest); err != nil {
			return 0, false, err
		}
	}
	return 0, false, nil
}

// boolKey reads a bool key of a request map (absent or not a bool: false).
func boolKey(raw []byte, key string) bool {
	n, rest, err := msgp.ReadMapHeaderBytes(raw)
	if err != nil {
		return false
	}
	for range n {
		var k []byte
		if k, rest, err = msgp.ReadMapKeyZC(rest); err != nil {
			return false
		}
		if string(k) == key {
			v, _, err := msgp.ReadBoolBytes(rest)
			return err == nil && v
		}
		if rest, err = msgp.Skip(rest); err != nil {
			return false
		}
	}
	return false
}

// getTree serves get_tree as a stream: {state: start}, one message per
// entry with a value at or below path ({value, chain?, tock, path, depth},
// paths shortened), then {state: end}. With `empty`, entries without a
// value come too, without `value` (and at the root, the meta tree).
func (s *Server) getTree(ctx context.Context, req Request, send streamSend) {
	w, ok := s.Tree.(Walker)
	st := s.openStream(ctx, req, send, ok)
	if st == nil {
		return
	}
	empty := boolKey(req.Raw, "empty")
	st.fail(s.walk(ctx, w, req.Path, empty, func(it WatchItem) error {
		st.item(it)
		return ctx.Err()
	}))
	st.state("end")
}

// enum serves enum/enumerate: {result: [names]} of the children of path
// that hold a value (with `empty`, all of them), or with with_data
// {result: {name: value}} (None for those without one).
func (s *Server) enum(ctx context.Context, req Request) ([]byte, error) {
	w, ok := s.Tree.(Walker)
	if !ok {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: "enum is not supported by this server"}
	}
	if !req.HasPath {
		return nil, invalid(req, "enum: no path")
	}
	withData := boolKey(req.Raw, "with_data")
	empty := boolKey(req.Raw, "empty") // children without a value too (MoaT-KV's None for their data)
	var names []tree.Elem
	var values [][]byte
	err := s.walk(ctx, w, req.Path, empty, func(it WatchItem) error {
		if len(it.Path) == len(req.Path)+1 && (len(req.Path) > 0 || !it.Path.IsMeta() || empty) {
			names = append(names, it.Path[len(req.Path)])
			values = append(values, it.Value)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	tock, _ := s.Tree.Tock(ctx)
	return appendResult(nil, "result", func(b []byte) []byte {
		if withData {
			b = msgp.AppendMapHeader(b, uint32(len(names)))
			for i, n := range names {
				b = tree.AppendElem(b, n)
				if values[i] == nil {
					b = msgp.AppendNil(b)
					continue
				}
				b = append(b, values[i]...)
			}
			return b
		}
		b = msgp.AppendArrayHeader(b, uint32(len(names)))
		for _, n := range names {
			b = tree.AppendElem(b, n)
		}
		return b
	}, req.Seq, tock, true), nil
}

// internalActions map MoaT-KV's *_internal actions, whose paths are
// relative to the meta tree (a nil first element), to the plain ones.
var internalActions = map[string]string{
	"get_internal":      "get_value",
	"set_internal":      "set_value",
	"delete_internal":   "delete_value",
	"enum_internal":     "enum",
	"get_tree_internal": "get_tree",
}

// internalize rewrites an *_internal request into the plain action on
// the meta-tree path.
func internalize(req Request) Request {
	base, ok := internalActions[req.Action]
	if !ok {
		return req
	}
	req.Action = base
	req.Path = tree.Path{tree.Nil()}.Append(req.Path...)
	req.HasPath = true
	return req
}

// TickLookup is implemented by a Tree that can find the entry whose chain
// holds a node's tick (get_value with node and tick instead of a path).
type TickLookup interface {
	ByTick(ctx context.Context, node string, tick uint64) (tree.Path, Entry, error)
}

// Saver is implemented by a Tree that can write a MoaT-KV save file (the
// save action) into the directory its configuration gives for that; full
// includes the meta tree; replace allows overwriting a file of that name.
type Saver interface {
	Save(ctx context.Context, name string, full, replace bool) (entries int, err error)
}

// ChangeLogger keeps MoaT-KV's change log (the `log` action): from now on
// every change goes to the file name (with fetch, after the whole tree);
// name "" stops logging.
type ChangeLogger interface {
	ChangeLog(ctx context.Context, name string, fetch bool) error
}

// changeLog serves `log`: {result: true} once the new log is live.
func (s *Server) changeLog(ctx context.Context, req Request) ([]byte, error) {
	cl, ok := s.Tree.(ChangeLogger)
	if !ok {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: "log is not supported by this server"}
	}
	name, _ := strKey(req.Raw, "path")
	if err := cl.ChangeLog(ctx, name, boolKey(req.Raw, "fetch")); err != nil {
		return nil, err
	}
	tock, _ := s.Tree.Tock(ctx)
	return appendResult(nil, "result", func(b []byte) []byte { return msgp.AppendBool(b, true) }, req.Seq, tock, true), nil
}

// strKey reads a string key of a request map ("" if absent).
func strKey(raw []byte, key string) (string, bool) {
	n, rest, err := msgp.ReadMapHeaderBytes(raw)
	if err != nil {
		return "", false
	}
	for range n {
		var k []byte
		if k, rest, err = msgp.ReadMapKeyZC(rest); err != nil {
			return "", false
		}
		if string(k) == key {
			v, _, err := msgp.ReadStringBytes(rest)
			return v, err == nil
		}
		if rest, err = msgp.Skip(rest); err != nil {
			return "", false
		}
	}
	return "", false
}

// getByTick serves get_value with node and tick: {value?, chain?, path,
// tock, seq}; an unknown or superseded tick is a not-found error.
func (s *Server) getByTick(ctx context.Context, req Request) ([]byte, error) {
	node, okN := strKey(req.Raw, "node")
	tick, okT, _ := uintKey(req.Raw, "tick")
	if !okN || !okT {
		return nil, invalid(req, "get_value: give a path, or node and tick")
	}
	tl, ok := s.Tree.(TickLookup)
	if !ok {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: "get_value by node and tick is not supported by this server"}
	}
	p, e, err := tl.ByTick(ctx, node, tick)
	if err != nil {
		return nil, err
	}
	if root := rootOf(ctx); len(root) > 0 {
		// After root: the path relative to it; nothing outside it.
		if !p.HasPrefix(root) {
			return nil, fmt.Errorf("%w: %s:%d is outside this connection's root", tree.ErrNotFound, node, tick)
		}
		p = p[len(root):]
	}
	n := uint32(3)
	if e.Value != nil {
		n++
	}
	withChain := req.NChain != 0 && len(e.Chain) > 0
	if withChain {
		n++
	}
	b := msgp.AppendMapHeader(nil, n)
	if e.Value != nil {
		b = append(appendKey(b, "value"), e.Value...)
	}
	if withChain {
		b = AppendChain(appendKey(b, "chain"), e.Chain, req.NChain)
	}
	b = tree.AppendPath(appendKey(b, "path"), p)
	b = msgp.AppendUint64(appendKey(b, "tock"), e.Tock)
	return msgp.AppendUint64(appendKey(b, "seq"), req.Seq), nil
}

// deleteTree serves delete_tree: every value at and below path is deleted;
// {changed: count, tock, seq}. Entries the tree refuses to let a client
// delete (a node's status entries: a permission error) are left and not
// counted; any other error ends the request.
func (s *Server) deleteTree(ctx context.Context, req Request) ([]byte, error) {
	w, ok := s.Tree.(Walker)
	if !ok {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: "delete_tree is not supported by this server"}
	}
	if !req.HasPath || len(req.Path) == 0 {
		return nil, invalid(req, "delete_tree: give a path that is not the root")
	}
	var paths []tree.Path
	if err := w.Walk(ctx, req.Path, func(it WatchItem) error {
		paths = append(paths, it.Path)
		return nil
	}); err != nil {
		return nil, err
	}
	count := 0
	for _, p := range paths {
		_, err := s.Tree.Delete(ctx, p, Cond{})
		switch {
		case err == nil:
			count++
		case errors.Is(err, tree.ErrNotFound), tree.KindOf(err) == tree.KindPermission:
		default:
			return nil, err
		}
	}
	tock, _ := s.Tree.Tock(ctx)
	return appendResult(nil, "changed", func(b []byte) []byte { return msgp.AppendInt(b, count) }, req.Seq, tock, true), nil
}

// save serves {action: save, path: file name, full, replace}: a MoaT-KV
// save file written by the node into its dump directory (replace, an
// edgekv key, allows overwriting); {result: true, tock, seq}.
func (s *Server) save(ctx context.Context, req Request) ([]byte, error) {
	sv, ok := s.Tree.(Saver)
	if !ok {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: "save is not supported by this server"}
	}
	name, ok := strKey(req.Raw, "path")
	if !ok || name == "" {
		return nil, invalid(req, "save: path must be a file name (a string)")
	}
	if _, err := sv.Save(ctx, name, boolKey(req.Raw, "full"), boolKey(req.Raw, "replace")); err != nil {
		return nil, err
	}
	tock, _ := s.Tree.Tock(ctx)
	return appendResult(nil, "result", func(b []byte) []byte { return msgp.AppendBool(b, true) }, req.Seq, tock, true), nil
}
