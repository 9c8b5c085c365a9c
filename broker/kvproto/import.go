package kvproto

import (
	"context"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// Importer is implemented by a Tree that accepts events and node state as
// they are (for MoaT-KV's update and fake_info actions, which `dump load`
// uses): Import applies an event with its own chain and tock and reports
// whether it was new; ImportInfo raises ticks and marks ticks superseded.
type Importer interface {
	Import(ctx context.Context, ev tree.Event) (bool, error)
	ImportInfo(ctx context.Context, ticks map[string]uint64, known map[string]tree.RangeSet) error
}

func (s *Server) importer(req Request) (Importer, error) {
	im, ok := s.Tree.(Importer)
	if !ok {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: req.Action + " is not supported by this server"}
	}
	return im, nil
}

// update serves {action: update, path, value?, chain, tock} (or the
// originator shape): the event is applied as if a peer had sent it.
// Reply: {changed, tock, seq}.
func (s *Server) update(ctx context.Context, req Request) ([]byte, error) {
	im, err := s.importer(req)
	if err != nil {
		return nil, err
	}
	u, err := wire.DecodeUpdate(req.Raw)
	if err != nil {
		return nil, invalid(req, "update: %v", err)
	}
	fresh, err := im.Import(ctx, u.Event)
	if err != nil {
		return nil, err
	}
	tock, _ := s.Tree.Tock(ctx)
	return appendResult(nil, "changed", func(b []byte) []byte { return msgp.AppendBool(b, fresh) }, req.Seq, tock, true), nil
}

// fakeInfo serves {action: fake_info, node, ticks?, known?, deleted?,
// node_drop?}: node state applied locally (deleted and node_drop as a
// peer's info, nothing about this node itself). Reply: {result: true,
// tock, seq}.
func (s *Server) fakeInfo(ctx context.Context, req Request) ([]byte, error) {
	im, err := s.importer(req)
	if err != nil {
		return nil, err
	}
	in, err := wire.DecodeInfoFields(req.Raw) // MoaT-KV's client sends no node
	if err != nil {
		return nil, invalid(req, "fake_info: %v", err)
	}
	if err := im.ImportInfo(ctx, in.Ticks, in.Known); err != nil {
		return nil, err
	}
	if len(in.Deleted) > 0 || len(in.NodeDrop) > 0 {
		ops, err := s.nodeOps(req)
		if err != nil {
			return nil, err
		}
		if err := ops.ApplyClientInfo(ctx, wire.Info{Deleted: in.Deleted, NodeDrop: in.NodeDrop}); err != nil {
			return nil, err
		}
	}
	tock, _ := s.Tree.Tock(ctx)
	return appendResult(nil, "result", func(b []byte) []byte { return msgp.AppendBool(b, true) }, req.Seq, tock, true), nil
}
