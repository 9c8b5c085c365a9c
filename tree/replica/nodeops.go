package replica

import (
	"fmt"
	"slices"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// MoaT-KV's node operations (reference spec §2.6, §2.7): info{deleted},
// node_drop, kill_node, check_deleted.

// reportDeleted takes a peer's word that ticks rs of node name belong to
// deleted (and purged) entries, as MoaT-KV's report_deleted: an entry that
// a deleted tick heads loses its version here (the deletion descends from
// it, so it would win anyway), and the ticks become known (superseded).
// Unlike MoaT-KV, an entry that holds such a tick only further down its
// chain is kept: its head may be concurrent with the deletion, and
// edgekv's winner rule decides between them when the deletion's holder
// sends it.
func (r *Replica) reportDeleted(name string, rs tree.RangeSet) {
	if rs.IsEmpty() || rs.Len() > 1<<24 {
		return // nothing, or not a set of real entries' ticks
	}
	n := r.t.LookupNode(name)
	if n != nil {
		rs.Intersect(n.Present()).All(func(t uint64) bool {
			e := n.Entry(t)
			if e == nil || e.Chain()[0] != (tree.Link{Node: name, Tick: t}) {
				return true
			}
			ev := e.Event(0)
			if r.t.Forget(ev.Path, ev.Chain[0]) {
				r.stats.Purged++
				r.record(recForget, func(b []byte) []byte { return wire.AppendEntry(b, ev) })
				r.out.Changes = append(r.out.Changes, Change{Path: ev.Path, Chain: ev.Chain, Tock: ev.Tock, Purged: true})
			}
			return true
		})
	}
	r.markKnown(name, rs)
}

// dropNode drops node name if it heads no entry, and persists that.
func (r *Replica) dropNode(name string) error {
	if r.t.LookupNode(name) == nil {
		return nil
	}
	if err := r.t.DropNode(name); err != nil {
		return err
	}
	delete(r.members, name)
	delete(r.ticks, name)
	delete(r.known, name)
	delete(r.skips, name)
	in := wire.Info{Node: r.cfg.Node, NodeDrop: []string{name}}
	r.record(recDrop, func(b []byte) []byte { return wire.AppendInfo(b, in) })
	return nil
}

// KillNode is MoaT-KV's kill_node: node name must head no entry (else an
// error wrapping tree.ErrConflict says which); it is cut out of every
// chain, forgotten, and info{node_drop} tells every link.
func (r *Replica) KillNode(name string) error {
	if name == r.cfg.Node {
		return fmt.Errorf("%w: node %q is this node", tree.ErrConflict, name)
	}
	if r.t.LookupNode(name) == nil {
		return fmt.Errorf("%w: node %q is not known here", tree.ErrNotFound, name)
	}
	if err := r.dropNode(name); err != nil {
		return err
	}
	r.SendInfo(wire.Info{NodeDrop: []string{name}}, false)
	return nil
}

// CheckDeleted is MoaT-KV's check_deleted: of the ticks asked about, those
// this node knows but holds on no entry (superseded or purged) are
// broadcast as info{deleted}, and returned. Unlike MoaT-KV, ticks this
// node never saw are not reported: their entries may exist elsewhere.
func (r *Replica) CheckDeleted(nodes map[string]tree.RangeSet) map[string]tree.RangeSet {
	out := make(map[string]tree.RangeSet)
	for name, rs := range nodes {
		n := r.t.LookupNode(name)
		if n == nil {
			continue
		}
		if d := rs.Intersect(n.Known()).Minus(n.Present()); !d.IsEmpty() {
			out[name] = d
		}
	}
	if len(out) > 0 {
		r.SendInfo(wire.Info{Deleted: out}, false)
	}
	return out
}

// SendInfo broadcasts an info message on every link with this node's
// name, tick and tock; with fake, as MoaT-KV's fake_info_send does, with
// node "" and tick 0 (no sender: every receiver applies it).
func (r *Replica) SendInfo(in wire.Info, fake bool) {
	in.Node, in.Tick = "", 0
	if !fake {
		in.Node, in.Tick = r.cfg.Node, r.t.Node(r.cfg.Node).Tick()
	}
	in.Tock = r.t.Tock()
	r.broadcast(wire.KindInfo, wire.AppendInfo(nil, in), -1)
	if fake {
		// MoaT-KV's server gets its own fake info back from the bus and
		// applies it; links here never echo.
		r.ApplyClientInfo(in)
	}
}

// ApplyClientInfo applies info fields a client gave (MoaT-KV's fake_info,
// and fake_info_send here): ticks, known, deleted, node_drop. What they
// say of this node itself is left out: a client cannot speak for the
// node.
func (r *Replica) ApplyClientInfo(in wire.Info) {
	in.Ticks = without(in.Ticks, r.cfg.Node)
	in.Known = without(in.Known, r.cfg.Node)
	in.Deleted = without(in.Deleted, r.cfg.Node)
	in.NodeDrop = slices.DeleteFunc(slices.Clone(in.NodeDrop), func(n string) bool { return n == r.cfg.Node })
	in.Skipped = nil
	r.applyInfo(in)
}

// without returns m without key k (a copy if it had k).
func without[V any](m map[string]V, k string) map[string]V {
	if _, ok := m[k]; !ok {
		return m
	}
	out := make(map[string]V, len(m))
	for key, v := range m {
		if key != k {
			out[key] = v
		}
	}
	return out
}
