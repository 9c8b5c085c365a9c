package kvproto

import (
	"context"
	"errors"
	"fmt"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// WatchItem is one message of a watch stream: an entry's current state
// (Value nil: deleted), or the marker that the initial state is complete.
type WatchItem struct {
	Path     tree.Path // full path
	Value    []byte
	Chain    tree.Chain
	Tock     uint64
	UpToDate bool
}

// Watcher is implemented by a Tree that supports watch. Watch sends, in
// order, the current entries below p (if fetch), an UpToDate item (if
// fetch), then every later change below p, until ctx ends or send fails.
// A watcher that cannot keep up must end with an error rather than skip
// changes; changes must never be sent older after newer.
type Watcher interface {
	Watch(ctx context.Context, p tree.Path, fetch bool, send func(WatchItem) error) error
}

// ErrStopped ends a stream whose task was stopped by the client.
var ErrStopped = errors.New("kvproto: stopped by the client")

// watchArgs are watch's own request keys.
type watchArgs struct {
	fetch              bool
	minDepth, maxDepth int // maxDepth < 0: no limit
}

func parseWatchArgs(raw []byte) (watchArgs, error) {
	a := watchArgs{maxDepth: -1}
	n, rest, err := msgp.ReadMapHeaderBytes(raw)
	if err != nil {
		return a, err
	}
	for range n {
		var k []byte
		if k, rest, err = msgp.ReadMapKeyZC(rest); err != nil {
			return a, err
		}
		switch string(k) {
		case "fetch":
			if msgp.NextType(rest) == msgp.BoolType {
				a.fetch, rest, err = msgp.ReadBoolBytes(rest)
			} else {
				rest, err = msgp.Skip(rest)
			}
		case "min_depth", "max_depth":
			var v int64
			if msgp.NextType(rest) == msgp.NilType {
				rest, err = msgp.ReadNilBytes(rest)
				break
			}
			if v, rest, err = msgp.ReadInt64Bytes(rest); err != nil {
				return a, fmt.Errorf("%s: %w", k, err)
			}
			if string(k) == "min_depth" {
				a.minDepth = int(max(v, 0))
			} else {
				a.maxDepth = int(v)
			}
		default:
			rest, err = msgp.Skip(rest)
		}
		if err != nil {
			return a, err
		}
	}
	return a, nil
}

// stream is one streamed reply: it numbers the messages (wseq), shortens
// paths against the previous item's, and applies the depth limits.
type stream struct {
	s    *Server
	ctx  context.Context
	seq  uint64    // the request's
	path tree.Path // the request's
	send streamSend
	args watchArgs
	// nchain: chain links per item
	nchain int
	wseq   uint64
	prev   tree.Path // the previous item's relative path
}

// openStream checks a streamed request and sends {state: start}; if the
// tree cannot serve it or the request is malformed it sends the error
// reply instead and returns nil.
func (s *Server) openStream(ctx context.Context, req Request, send streamSend, supported bool) *stream {
	st := s.newStream(ctx, req, send, supported)
	if st != nil {
		st.state("start")
	}
	return st
}

// newStream is openStream without the {state: start}.
func (s *Server) newStream(ctx context.Context, req Request, send streamSend, supported bool) *stream {
	fail := func(err error) *stream {
		send(0, s.handle(ctx, req, err))
		return nil
	}
	if !supported {
		return fail(&RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: req.Action + " is not supported by this server"})
	}
	if !req.HasPath {
		return fail(invalid(req, "%s: no path", req.Action))
	}
	args, err := parseWatchArgs(req.Raw)
	if err != nil {
		return fail(invalid(req, "%s: %v", req.Action, err))
	}
	st := &stream{s: s, ctx: ctx, seq: req.Seq, path: req.Path, send: send, args: args}
	if req.HasNChain {
		st.nchain = req.NChain
	}
	return st
}

func (st *stream) tock() uint64 { t, _ := st.s.Tree.Tock(st.ctx); return t }

// state sends {state, seq, wseq, tock}.
func (st *stream) state(name string) {
	st.send(st.wseq+1, st.stateMsg(name))
}

// stateMsg numbers and returns {state, seq, wseq, tock}.
func (st *stream) stateMsg(name string) []byte {
	st.wseq++
	return appendState(make([]byte, 0, stateSize), name, st.seq, st.wseq, st.tock())
}

// item sends one entry, unless the depth limits or the meta tree (from
// the root) leave it out.
func (st *stream) item(it WatchItem) {
	if msg := st.itemMsg(it); msg != nil {
		st.send(st.wseq, msg)
	}
}

// itemMsg numbers and returns the message for one entry; nil (and no
// number taken) if the depth limits or the meta tree (from the root) leave
// it out.
func (st *stream) itemMsg(it WatchItem) []byte {
	if len(st.path) == 0 && it.Path.IsMeta() {
		return nil // the meta tree only through the *_internal actions
	}
	rel := it.Path[len(st.path):]
	if len(rel) < st.args.minDepth || (st.args.maxDepth >= 0 && len(rel) > st.args.maxDepth) {
		return nil
	}
	depth := 0
	for depth < len(st.prev) && depth < len(rel) && st.prev[depth] == rel[depth] {
		depth++
	}
	st.prev = append(st.prev[:0], rel...)
	st.wseq++
	// One allocation of about the right size, not a growing append.
	size := 64 + len(it.Value) + 16*len(rel[depth:]) + 24*min(len(it.Chain), max(st.nchain, 0))
	return appendWatchItem(msgBuf(size), it, rel[depth:], depth, st.nchain, st.seq, st.wseq)
}

// fail sends the error that ended the stream (unless the connection or
// the task ended it).
func (st *stream) fail(err error) {
	if err != nil && st.ctx.Err() == nil {
		st.send(0, AppendError(nil, st.seq, tree.KindOf(err), err.Error(), st.tock()))
	}
}

// watch serves one watch request as a stream: {state: start}, the current
// entries and {state: uptodate} (with fetch), then every change; an error
// ends it with the error and {state: end}.
func (s *Server) watch(ctx context.Context, req Request, send streamSend) {
	w, ok := s.Tree.(Watcher)
	st := s.openStream(ctx, req, send, ok)
	if st == nil {
		return
	}
	err := w.Watch(ctx, req.Path, st.args.fetch, func(it WatchItem) error {
		if it.UpToDate {
			st.state("uptodate")
		} else {
			st.item(it)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		st.fail(err)
		st.state("end")
	}
}

// stateSize is the most a {state, seq, wseq, tock} message takes.
const stateSize = 1 + 6 + 9 + 4 + 9 + 5 + 9 + 5 + 9

// appendState appends {state, seq, wseq, tock} in MoaT-KV's key order.
func appendState(b []byte, state string, seq, wseq, tock uint64) []byte {
	b = msgp.AppendMapHeader(b, 4)
	b = appendKey(b, "state")
	b = msgp.AppendString(b, state)
	b = appendKey(b, "seq")
	b = msgp.AppendUint64(b, seq)
	b = appendKey(b, "wseq")
	b = msgp.AppendUint64(b, wseq)
	b = appendKey(b, "tock")
	return msgp.AppendUint64(b, tock)
}

// appendWatchItem appends {value?, chain?, tock, path, depth, seq, wseq}:
// path is the shortened relative path (a plain array), as MoaT-KV sends.
func appendWatchItem(b []byte, it WatchItem, path tree.Path, depth, nchain int, seq, wseq uint64) []byte {
	n := uint32(5)
	if it.Value != nil {
		n++
	}
	withChain := nchain != 0 && len(it.Chain) > 0
	if withChain {
		n++
	}
	b = msgp.AppendMapHeader(b, n)
	if it.Value != nil {
		b = appendKey(b, "value")
		b = append(b, it.Value...)
	}
	if withChain {
		b = appendKey(b, "chain")
		b = wire.AppendChain(b, it.Chain, chainLen(it.Chain, nchain))
	}
	b = appendKey(b, "tock")
	b = msgp.AppendUint64(b, it.Tock)
	b = appendKey(b, "path")
	b = tree.AppendPathArray(b, path)
	b = appendKey(b, "depth")
	b = msgp.AppendUint64(b, uint64(depth))
	b = appendKey(b, "seq")
	b = msgp.AppendUint64(b, seq)
	b = appendKey(b, "wseq")
	return msgp.AppendUint64(b, wseq)
}
