package replica

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// Record tags. A record is one tag byte followed by a wire encoding.
const (
	recEvent = 'e' // an update (wire update encoding) that was new here
	recKnown = 'k' // info{known}: ticks marked superseded
	recTicks = 't' // info{ticks}: node ticks raised
	recPurge = 'p' // entry record of a purged tombstone
	recBoot  = 'b' // info{ticks: {self: epoch}}: one per start
	recState = 's' // snapshot: state record
	recEntry = 'n' // snapshot: one entry (value or tombstone)
)

// Restore rebuilds the replica from a snapshot's records and the change log
// that follows it (as the store returns them), then persists a boot record.
// Records that do not decode are skipped and reported; the rest still load.
func (r *Replica) Restore(snapshot, log [][]byte) []error {
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
	r.epoch++
	in := wire.Info{Node: r.cfg.Node, Ticks: map[string]uint64{r.cfg.Node: r.epoch}}
	r.record(recBoot, func(b []byte) []byte { return wire.AppendInfo(b, in) })
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
	case recKnown, recTicks, recBoot:
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
	case recState:
		st, err := wire.DecodeState(body)
		if err != nil {
			return err
		}
		r.t.SeeTock(st.Tock)
		for name, t := range st.Ticks {
			r.t.RaiseTick(name, t)
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
	boot := wire.Info{Node: r.cfg.Node, Ticks: map[string]uint64{r.cfg.Node: r.epoch}}
	if err := yield(wire.AppendInfo([]byte{recBoot}, boot)); err != nil {
		return err
	}
	st := wire.State{Node: r.cfg.Node, Tock: r.t.Tock(), Ticks: make(map[string]uint64), Known: make(map[string]tree.RangeSet)}
	for _, n := range r.t.Nodes() {
		st.Ticks[n.Name()] = n.Tick()
		st.Known[n.Name()] = n.Known()
	}
	if err := yield(wire.AppendState([]byte{recState}, st)); err != nil {
		return err
	}
	var err error
	r.t.Walk(nil, func(e *tree.Entry) bool {
		if len(e.Chain()) == 0 {
			return true
		}
		err = yield(wire.AppendEntry([]byte{recEntry}, e.Event(0)))
		return err == nil
	})
	return err
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
