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

// watch serves one watch request as a stream: {state: start}, the items,
// and {state: end} when it ends with an error (the error message first).
func (s *Server) watch(ctx context.Context, req Request, send streamSend) {
	w, ok := s.Tree.(Watcher)
	if !ok {
		send(0, s.handle(ctx, req, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: "watch is not supported by this server"}))
		return
	}
	if !req.HasPath {
		send(0, s.handle(ctx, req, invalid(req, "watch: no path")))
		return
	}
	args, err := parseWatchArgs(req.Raw)
	if err != nil {
		send(0, s.handle(ctx, req, invalid(req, "watch: %v", err)))
		return
	}
	nchain := 0
	if req.HasNChain {
		nchain = req.NChain
	}
	var wseq uint64
	tock := func() uint64 { t, _ := s.Tree.Tock(ctx); return t }
	state := func(st string, t uint64) {
		wseq++
		send(wseq, appendState(nil, st, req.Seq, wseq, t))
	}
	state("start", tock())
	var prev tree.Path // the previous item's relative path, for shortening
	err = w.Watch(ctx, req.Path, args.fetch, func(it WatchItem) error {
		if it.UpToDate {
			state("uptodate", tock())
			return nil
		}
		if len(req.Path) == 0 && it.Path.IsMeta() {
			return nil // the meta tree is not watched from the root
		}
		rel := it.Path[len(req.Path):]
		if len(rel) < args.minDepth || (args.maxDepth >= 0 && len(rel) > args.maxDepth) {
			return nil
		}
		depth := 0
		for depth < len(prev) && depth < len(rel) && prev[depth] == rel[depth] {
			depth++
		}
		prev = rel.Clone()
		wseq++
		send(wseq, appendWatchItem(nil, it, rel[depth:], depth, nchain, req.Seq, wseq))
		return nil
	})
	if err != nil && ctx.Err() == nil {
		send(0, AppendError(nil, req.Seq, tree.KindOf(err), err.Error(), tock()))
		state("end", tock())
	}
}

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
