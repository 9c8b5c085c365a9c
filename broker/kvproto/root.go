package kvproto

import (
	"context"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// The root action (MoaT-KV's chroot): {action: root, path} moves the
// connection's root to path, relative to its current root; it cannot be
// undone. Every later request on the connection names paths relative to
// the new root, and replies and streams carry paths relative to it
// (streams already shorten paths against the requested path; get_value by
// node and tick chops the root off, and treats an entry outside the root
// as not found). Like MoaT-KV:
//
//   - the root path may hold no nil element, and once a connection has a
//     root no request path may (MoaT-KV turns nulls_ok off for chrooted
//     connections); the *_internal actions still address the whole meta
//     tree, as MoaT-KV's metaroot does not move;
//   - delete_tree with an empty path is refused (it would delete the root);
//   - the reply is the new root entry as MoaT-KV's Entry.serialize writes
//     it: {value?, chain? (nchain, default 2 links), tock, path: [] (the
//     entry's path relative to the new root), seq}. A root that holds
//     nothing yet is {tock, path: [], seq} (MoaT-KV creates the entry;
//     edgekv does not need to).
//
// update (an event with an absolute path) is refused on a connection with
// a root.
//
// The connection's reader goroutine applies the root to each request as
// it reads it (reroot), in order, so a root takes effect for exactly the
// requests read after it, whichever goroutine runs them; each request's
// context carries the root that applied to it (rootOf).

// rootKey is the context key of the connection root a request was read
// under.
type rootKey struct{}

// withRoot returns ctx carrying the connection root (none: ctx itself).
func withRoot(ctx context.Context, root tree.Path) context.Context {
	if len(root) == 0 {
		return ctx
	}
	return context.WithValue(ctx, rootKey{}, root)
}

// rootOf returns the connection root a request was read under (nil:
// none).
func rootOf(ctx context.Context) tree.Path {
	root, _ := ctx.Value(rootKey{}).(tree.Path)
	return root
}

// reroot makes req's path absolute under the connection's root and
// returns the root for the requests after it (a new one after a root
// request). It runs on the reader goroutine. The returned paths never
// alias each other.
func reroot(req Request, root tree.Path) (Request, tree.Path, error) {
	if _, internal := internalActions[req.Action]; internal || !req.HasPath {
		return req, root, nil
	}
	if req.Action == "root" || len(root) > 0 {
		for i, e := range req.Path {
			if e.IsNil() {
				return req, root, invalid(req, "%s: path element %d is nil: not allowed in a root or below one", req.Action, i)
			}
		}
	}
	if req.Action == "delete_tree" && len(req.Path) == 0 {
		return req, root, nil // refused by deleteTree: the root itself
	}
	if len(root) > 0 {
		req.Path = root.Append(req.Path...)
	}
	if req.Action == "root" {
		root = req.Path.Clone()
	}
	return req, root, nil
}

// chroot serves the root action; reroot has already moved the
// connection's root to req.Path.
func (s *Server) chroot(ctx context.Context, req Request) ([]byte, error) {
	if !req.HasPath {
		return nil, invalid(req, "root: no path")
	}
	e, err := s.Tree.Get(ctx, req.Path)
	if err != nil {
		return nil, err
	}
	tock := e.Tock
	if !e.Exists() {
		if tock, err = s.Tree.Tock(ctx); err != nil {
			return nil, err
		}
	}
	nchain := 2 // MoaT-KV's Entry.serialize default
	if req.HasNChain {
		nchain = req.NChain
	}
	n := uint32(3)
	if e.Value != nil {
		n++
	}
	withChain := nchain != 0 && len(e.Chain) > 0
	if withChain {
		n++
	}
	b := msgp.AppendMapHeader(nil, n)
	if e.Value != nil {
		b = append(appendKey(b, "value"), e.Value...)
	}
	if withChain {
		b = AppendChain(appendKey(b, "chain"), e.Chain, nchain)
	}
	b = msgp.AppendUint64(appendKey(b, "tock"), tock)
	b = tree.AppendPath(appendKey(b, "path"), tree.Path{})
	return msgp.AppendUint64(appendKey(b, "seq"), req.Seq), nil
}
