package replica

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// Record tags. A record is one tag byte followed by a wire encoding.
const (
	recEvent  = 'e' // an update (wire update encoding) that was new here
	recKnown  = 'k' // info{known}: ticks marked superseded
	recTicks  = 't' // info{ticks}: node ticks raised
	recPurge  = 'p' // entry record of a purged tombstone
	recBoot   = 'b' // info{ticks: {self: epoch}}: one per start (older logs; the epoch is in the node record now)
	recSkip   = 'x' // info{skipped}: ticks declared skipped
	recForget = 'f' // entry record of an entry a peer reported deleted (info{deleted})
	recDrop   = 'd' // info{node_drop}: nodes dropped (kill_node, node_drop)
	recState  = 's' // snapshot: state record
	recEntry  = 'n' // snapshot: one entry (value or tombstone)
)

// Restore rebuilds the replica from a snapshot's records, the change log
// that follows it and the node record (as the store returns them: the
// record is nil on a first start). Records that do not decode are skipped
// and reported; the rest still load.
//
// Then it restarts above the saved reservation: this node's tick is raised
// to the reservation's tick and its tock to the reservation's tock, so no
// tick or tock it may have used before a crash is used again, and every
// own tick up to there that the log does not hold is declared skipped
// (peers that hold one still send it back; nobody waits for the others).
// Finally it hands out a new reservation with the next epoch
// (Ready.NodeRecord), which the driver saves before anything else.
func (r *Replica) Restore(snapshot, log [][]byte, nodeRecord []byte) []error {
	var errs []error
	var known []func()
	for i, rec := range snapshot {
		if err := r.restoreOne(rec, &known); err != nil {
			errs = append(errs, fmt.Errorf("replica: snapshot record %d: %w", i, err))
		}
	}
	// Known sets are applied after the entries, which make ticks present.
	for _, f := range known {
		f()
	}
	known = nil
	for i, rec := range log {
		if err := r.restoreOne(rec, &known); err != nil {
			errs = append(errs, fmt.Errorf("replica: log record %d: %w", i, err))
		}
		for _, f := range known {
			f()
		}
		known = known[:0]
	}
	if nodeRecord != nil {
		res, err := wire.DecodeReservation(nodeRecord)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("replica: node record: %w", err))
		case res.Node != r.cfg.Node:
			errs = append(errs, fmt.Errorf("replica: node record: it is node %q's, this node is %q; ignored", res.Node, r.cfg.Node))
		default:
			r.epoch = max(r.epoch, res.Epoch)
			if !r.cfg.NoReserve {
				r.t.RaiseTick(r.cfg.Node, res.Tick)
				r.t.SeeTock(res.Tock)
			}
		}
	}
	if nodeRecord == nil && len(snapshot) == 0 && len(log) == 0 && r.cfg.FreshStart > 0 && !r.cfg.NoReserve {
		r.t.RaiseTick(r.cfg.Node, r.cfg.FreshStart)
		r.epoch = r.cfg.FreshStart >> 20 // heartbeats must outrank an earlier life's
	}
	r.epoch++
	if !r.cfg.NoReserve {
		own := r.t.Node(r.cfg.Node)
		if tick := own.Tick(); tick > 0 {
			r.skip(r.cfg.Node, tree.RangeSetOf(tree.Range{Start: 1, End: tick + 1}).Minus(own.Known()))
		}
	}
	r.newReservation()
	return errs
}

func (r *Replica) restoreOne(rec []byte, known *[]func()) error {
	if len(rec) == 0 {
		return fmt.Errorf("%w: empty record", tree.ErrMalformed)
	}
	body := rec[1:]
	switch rec[0] {
	case recEvent:
		u, err := wire.DecodeUpdate(body)
		if err != nil {
			return err
		}
		if u.Event.Value != nil {
			u.Event.Value = append([]byte(nil), u.Event.Value...)
		}
		_, err = r.t.Apply(u.Event)
		return err
	case recEntry:
		ev, err := wire.DecodeEntry(body)
		if err != nil {
			return err
		}
		if ev.Value != nil {
			ev.Value = append([]byte(nil), ev.Value...)
		}
		_, err = r.t.Apply(ev)
		return err
	case recKnown, recTicks, recBoot, recSkip, recDrop:
		in, err := wire.DecodeInfo(body)
		if err != nil {
			return err
		}
		switch rec[0] {
		case recKnown:
			for name, rs := range in.Known {
				*known = append(*known, func() { r.t.MarkSuperseded(name, rs) })
			}
		case recTicks:
			for name, t := range in.Ticks {
				r.t.RaiseTick(name, t)
			}
		case recBoot:
			if e := in.Ticks[r.cfg.Node]; e > r.epoch {
				r.epoch = e
			}
		case recSkip:
			for name, rs := range in.Skipped {
				r.t.Skip(name, rs)
			}
		case recDrop:
			for _, name := range in.NodeDrop {
				_ = r.t.DropNode(name) // it held no head when dropped
			}
		}
		return nil
	case recPurge:
		ev, err := wire.DecodeEntry(body)
		if err != nil {
			return err
		}
		h, ok := ev.Chain.Head()
		if !ok {
			return fmt.Errorf("%w: purge record without chain", tree.ErrMalformed)
		}
		r.t.Purge(ev.Path, func(l tree.Link) bool { return l == h })
		return nil
	case recForget:
		ev, err := wire.DecodeEntry(body)
		if err != nil {
			return err
		}
		h, ok := ev.Chain.Head()
		if !ok {
			return fmt.Errorf("%w: forget record without chain", tree.ErrMalformed)
		}
		r.t.Forget(ev.Path, h)
		return nil
	case recState:
		st, err := wire.DecodeState(body)
		if err != nil {
			return err
		}
		r.t.SeeTock(st.Tock)
		r.epoch = max(r.epoch, st.Epoch)
		for name, t := range st.Ticks {
			r.t.RaiseTick(name, t)
		}
		for name, rs := range st.Skipped {
			r.t.Skip(name, rs)
		}
		if st.Purged {
			r.t.SetPurged()
		}
		for name, rs := range st.Known {
			*known = append(*known, func() { r.t.MarkSuperseded(name, rs) })
		}
		return nil
	}
	return fmt.Errorf("%w: unknown record tag %q", tree.ErrMalformed, rec[0])
}

// SnapshotRecords writes the replica's whole state as records: one state
// record, then every entry that has a version (values and tombstones). The
// driver hands them to the store's Snapshot. It must be called from the
// replica's owning goroutine; records are produced eagerly for one entry at
// a time.
func (r *Replica) SnapshotRecords(yield func([]byte) error) error {
	if err := r.SnapshotHeader(yield); err != nil {
		return err
	}
	it := r.t.Iter(nil)
	for {
		more, err := r.SnapshotEntries(it, 1<<16, yield)
		if err != nil || !more {
			return err
		}
	}
}

// SnapshotHeader writes the state record that begins a snapshot. A driver
// may then write the entries a chunk at a time (SnapshotEntries) with
// other work in between: the store rotates its log before a snapshot, and
// on restore replays every record since on top of it, so an entry written
// after the header went out is restored whether the snapshot caught it or
// not (applying a record twice changes nothing, and restoring an entry
// raises the tock and marks its tick as seen as the record would).
func (r *Replica) SnapshotHeader(yield func([]byte) error) error {
	st := wire.State{Node: r.cfg.Node, Tock: r.t.Tock(), Epoch: r.epoch, Purged: r.t.Purged(),
		Ticks: make(map[string]uint64), Known: make(map[string]tree.RangeSet)}
	for _, n := range r.t.Nodes() {
		st.Ticks[n.Name()] = n.Tick()
		st.Known[n.Name()] = n.Known()
		if sk := n.Skipped(); !sk.IsEmpty() {
			if st.Skipped == nil {
				st.Skipped = make(map[string]tree.RangeSet)
			}
			st.Skipped[n.Name()] = sk
		}
	}
	return yield(wire.AppendState([]byte{recState}, st))
}

// SnapshotEntry writes the record of e if it has a version (called from
// the owning goroutine).
func (r *Replica) SnapshotEntry(e *tree.Entry, yield func([]byte) error) error {
	if len(e.Chain()) == 0 {
		return nil
	}
	return yield(wire.AppendEntry([]byte{recEntry}, e.Event(0)))
}

// SnapshotEntries writes the records of up to n more entries of it (a walk
// of the whole tree, r.Tree().Iter(nil)) that have a version, and reports
// whether entries are left. Called from the owning goroutine, like it.
func (r *Replica) SnapshotEntries(it *tree.Iter, n int, yield func([]byte) error) (more bool, err error) {
	more = it.Next(n, func(e *tree.Entry) {
		if err != nil || len(e.Chain()) == 0 {
			return
		}
		err = yield(wire.AppendEntry([]byte{recEntry}, e.Event(0)))
	})
	return more && err == nil, err
}

// decodeDeleter reads the deleter group value {"nodes": [names…]}.
func decodeDeleter(v []byte) ([]string, error) {
	var nodes []string
	sz, v, err := msgp.ReadMapHeaderBytes(v)
	if err != nil {
		return nil, err
	}
	for range sz {
		var key string
		key, v, err = msgp.ReadStringBytes(v)
		if err != nil {
			return nil, err
		}
		if key != "nodes" {
			if v, err = msgp.Skip(v); err != nil {
				return nil, err
			}
			continue
		}
		var n uint32
		n, v, err = msgp.ReadArrayHeaderBytes(v)
		if err != nil {
			return nil, err
		}
		for range n {
			var s string
			s, v, err = msgp.ReadStringBytes(v)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, s)
		}
	}
	return nodes, nil
}
