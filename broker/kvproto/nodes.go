package kvproto

import (
	"context"
	"fmt"
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// NodeLister is implemented by a Tree that can list what it holds of a
// node (enum_node).
type NodeLister interface {
	// NodeTicks returns, in ascending order, the ticks of node that are on
	// the chain of a current entry (one with a value or a tombstone); with
	// current, only those of entries whose chain node heads. max > 0
	// bounds the count. A node the tree does not know is an error
	// wrapping tree.ErrNotFound.
	NodeTicks(ctx context.Context, node string, max int, current bool) ([]uint64, error)
}

// enumNode serves {action: enum_node, node, max?, current?}: {result:
// [ticks], tock, seq}. MoaT-KV lists them in the order its node cache
// learnt them; edgekv in ascending order. max ≤ 0 (or absent) is no limit,
// as in MoaT-KV.
func (s *Server) enumNode(ctx context.Context, req Request) ([]byte, error) {
	nl, ok := s.Tree.(NodeLister)
	if !ok {
		return nil, unsupported(req)
	}
	a, err := readArgs(req)
	if err != nil {
		return nil, err
	}
	node, ok, err := a.str("node")
	if err != nil {
		return nil, invalid(req, "enum_node: %v", err)
	}
	if !ok || node == "" {
		return nil, invalid(req, "enum_node: no node name in \"node\"")
	}
	limit, err := a.int("max", 0)
	if err != nil {
		return nil, invalid(req, "enum_node: %v", err)
	}
	current, err := a.bool("current")
	if err != nil {
		return nil, invalid(req, "enum_node: %v", err)
	}
	ticks, err := nl.NodeTicks(ctx, node, int(max(min(limit, 1<<31), 0)), current)
	if err != nil {
		return nil, err
	}
	tock, _ := s.Tree.Tock(ctx)
	return appendResult(nil, "result", func(b []byte) []byte {
		b = msgp.AppendArrayHeader(b, uint32(len(ticks)))
		for _, t := range ticks {
			b = msgp.AppendUint64(b, t)
		}
		return b
	}, req.Seq, tock, true), nil
}

// aclLetters are MoaT-KV's ACL letters (reference spec §5.3), W the
// pseudo-letter "w or c".
const aclLetters = "arwcdxenW"

// testACL serves {action: test_acl, path, mode?, acl?}: {access, tock,
// seq}.
//
// edgekv has no users and ACLs yet, so every connection acts as MoaT-KV's
// super-root, whose ACL is MoaT-KV's NullACL: it allows every letter but
// "a" (reading ACL flags). MoaT-KV's cmd_test_acl then answers
// {access: true} for any path and mode (the ACL letters themselves are
// only returned to a connection whose ACL allows "a"). That is the answer
// here. Like MoaT-KV it refuses nil path elements (it follows the path
// with nulls_ok=False) and takes an empty or nil mode as "x".
//
// With acl (the name of another ACL, whose rules MoaT-KV reads from
// (nil, "acl", name, …)) MoaT-KV answers what that ACL would allow. edgekv
// does not evaluate ACLs before its security work defines them (default
// deny, DESIGN §7), so that form is answered with an error of kind
// "unavailable" rather than a guess.
func (s *Server) testACL(ctx context.Context, req Request) ([]byte, error) {
	if !req.HasPath {
		return nil, invalid(req, "test_acl: no path")
	}
	for i, e := range req.Path {
		if e.IsNil() {
			return nil, invalid(req, "test_acl: path element %d is nil (the meta tree is not an ACL target)", i)
		}
	}
	a, err := readArgs(req)
	if err != nil {
		return nil, err
	}
	mode, _, err := a.str("mode")
	if err != nil {
		return nil, invalid(req, "test_acl: %v", err)
	}
	if mode == "" {
		mode = "x"
	}
	if len(mode) != 1 || !strings.Contains(aclLetters, mode) {
		return nil, invalid(req, "test_acl: mode %q is not one ACL letter of %q", mode, aclLetters)
	}
	name, named, err := a.str("acl")
	if err != nil {
		return nil, invalid(req, "test_acl: %v", err)
	}
	if named {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable,
			Msg: fmt.Sprintf("test_acl: this server has no ACLs yet, so it cannot evaluate ACL %q", name)}
	}
	tock, _ := s.Tree.Tock(ctx)
	return appendResult(nil, "access", func(b []byte) []byte { return msgp.AppendBool(b, true) }, req.Seq, tock, true), nil
}

// unsupported is the error for an action the Tree cannot serve.
func unsupported(req Request) error {
	return &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: req.Action + " is not supported by this server"}
}
