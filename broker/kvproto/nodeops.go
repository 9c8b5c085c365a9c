package kvproto

import (
	"context"
	"slices"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// NodeOps is implemented by a Tree that can act on what the node knows of
// other nodes, as MoaT-KV's internal commands do (reference spec §2.6,
// §2.7, §4.4).
type NodeOps interface {
	// KillNode forgets a node that heads no entry and tells the other
	// nodes (info{node_drop}).
	KillNode(ctx context.Context, name string) error
	// CheckDeleted broadcasts info{deleted} for the asked ticks that the
	// node knows but holds on no entry, and returns them.
	CheckDeleted(ctx context.Context, nodes map[string]tree.RangeSet) (map[string]tree.RangeSet, error)
	// SendInfo broadcasts info fields with node "" and tick 0.
	SendInfo(ctx context.Context, in wire.Info, fake bool) error
	// ApplyClientInfo applies deleted and node_drop info fields here
	// (fake_info; its ticks and known go through Importer.ImportInfo).
	ApplyClientInfo(ctx context.Context, in wire.Info) error
}

func (s *Server) nodeOps(req Request) (NodeOps, error) {
	ops, ok := s.Tree.(NodeOps)
	if !ok {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: req.Action + " is not supported by this server"}
	}
	return ops, nil
}

// nilResult is the reply to an action whose MoaT-KV handler returns None:
// {seq, tock}.
func (s *Server) nilResult(ctx context.Context, req Request) []byte {
	tock, _ := s.Tree.Tock(ctx)
	b := msgp.AppendMapHeader(nil, 2)
	b = msgp.AppendUint64(appendKey(b, "tock"), tock)
	return msgp.AppendUint64(appendKey(b, "seq"), req.Seq)
}

// opsArgs returns the tree's node operations and the request's keys.
func (s *Server) opsArgs(req Request) (NodeOps, args, error) {
	ops, err := s.nodeOps(req)
	if err != nil {
		return nil, nil, err
	}
	a, err := readArgs(req)
	if err != nil {
		return nil, nil, err
	}
	return ops, a, nil
}

// killNode serves kill_node {node}: an error if the node still heads an
// entry (or is this node, or unknown); else {seq, tock}.
func (s *Server) killNode(ctx context.Context, req Request) ([]byte, error) {
	ops, a, err := s.opsArgs(req)
	if err != nil {
		return nil, err
	}
	name, ok, err := a.str("node")
	if err != nil || !ok || name == "" {
		return nil, invalid(req, "kill_node: want key \"node\", a node name")
	}
	if err := ops.KillNode(ctx, name); err != nil {
		return nil, err
	}
	return s.nilResult(ctx, req), nil
}

// checkDeleted serves check_deleted {nodes: {name: rangeset}}: the ticks
// this node knows but holds on no entry are broadcast as info{deleted}.
// The reply is {seq, tock} as MoaT-KV's, plus "deleted": what was sent
// (MoaT-KV clients ignore it).
func (s *Server) checkDeleted(ctx context.Context, req Request) ([]byte, error) {
	ops, a, err := s.opsArgs(req)
	if err != nil {
		return nil, err
	}
	if !a.has("nodes") {
		return nil, invalid(req, "check_deleted: want key \"nodes\", {node: range set}")
	}
	nodes, err := wire.DecodeRangeSetMap(a["nodes"])
	if err != nil {
		return nil, invalid(req, "check_deleted: key \"nodes\": %v", err)
	}
	sent, err := ops.CheckDeleted(ctx, nodes)
	if err != nil {
		return nil, err
	}
	tock, _ := s.Tree.Tock(ctx)
	b := msgp.AppendMapHeader(nil, 3)
	b = appendKey(b, "deleted")
	names := sortedNames(sent)
	b = msgp.AppendMapHeader(b, uint32(len(names)))
	for _, name := range names {
		b = wire.AppendRangeSet(msgp.AppendString(b, name), sent[name])
	}
	b = msgp.AppendUint64(appendKey(b, "tock"), tock)
	return msgp.AppendUint64(appendKey(b, "seq"), req.Seq), nil
}

// fakeInfoSend serves fake_info_send {ticks?, missing?, known?, deleted?,
// node_drop?}: broadcast as info with node "" and tick 0; {seq, tock}.
func (s *Server) fakeInfoSend(ctx context.Context, req Request) ([]byte, error) {
	ops, err := s.nodeOps(req)
	if err != nil {
		return nil, err
	}
	in, err := wire.DecodeInfoFields(req.Raw)
	if err != nil {
		return nil, invalid(req, "fake_info_send: %v", err)
	}
	if len(in.Ticks)+len(in.Known)+len(in.Deleted)+len(in.NodeDrop) == 0 && in.Missing == nil {
		return nil, invalid(req, "fake_info_send: no info fields (ticks, missing, known, deleted, node_drop)")
	}
	in.Skipped = nil // edgekv's own; a client cannot declare skips for nodes
	in.NodeDrop = slices.Compact(in.NodeDrop)
	if err := ops.SendInfo(ctx, in, true); err != nil {
		return nil, err
	}
	return s.nilResult(ctx, req), nil
}
