package sim

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/store"
	"github.com/edgekv/edgekv/tree/wire"
)

// Topology is how the nodes' links are laid out.
type Topology int

// Topologies.
const (
	Mesh Topology = iota // every pair linked
	Line                 // n0–n1–…–nk
	Star                 // n0 linked to every other node
	Hub                  // every node on one shared broker: a message reaches all others
)

var topoNames = []string{"mesh", "line", "star", "hub"}

func (t Topology) String() string { return topoNames[t] }

// ParseTopology parses a topology name.
func ParseTopology(s string) (Topology, error) {
	for i, n := range topoNames {
		if n == s {
			return Topology(i), nil
		}
	}
	return 0, fmt.Errorf("sim: unknown topology %q (want mesh, line, star or hub)", s)
}

// link is one simulated connection: a pair of nodes, or the hub (all nodes).
type link struct {
	id    int
	nodes []int // two nodes, or every node for the hub
	hub   bool
}

type packet struct {
	from, to int
	link     int
	kind     wire.Kind
	data     []byte
	due      uint64 // step at which it may be delivered
}

type node struct {
	name   string
	policy store.SyncPolicy
	r      *replica.Replica
	fs     *store.MemFS
	st     *store.Store
	up     bool
	links  []int // link ids this node is on
}

// acked is one acknowledged write, kept for the oracle. A write is safe
// once some node has it on disk (flushed); until then a crash of every
// node that holds it may lose it, and then it is marked lost: the oracle
// leaves it out (under sync always a write is safe when acknowledged).
type acked struct {
	node string
	ev   tree.Event
	safe bool
	lost bool
}

// World is a simulated network of replicas.
type World struct {
	rng      *rand.Rand
	nodes    []*node
	links    []*link
	cut      map[[2]int]bool // cut[a,b] (a<b): a and b cannot talk; for the hub, cut[i,i]
	inflight []packet
	step     uint64
	acks     []acked
	trace    []string
	Verbose  io.Writer

	DropRate  float64 // probability that a sent message is lost
	DupRate   float64 // probability that a sent message is delivered twice
	MaxDelay  uint64  // a message waits up to this many steps
	ChainLen  int
	Delivered int
	errs      []error

	// TickReserve, TockReserve and NoReserve configure every replica
	// started from now on (see replica.Config).
	TickReserve, TockReserve uint64
	NoReserve                bool
	// issued records every (node, tick) a node has issued, with the
	// event's path and tock: a tick issued twice for different changes
	// is an error (tick reuse).
	issued map[tree.Link]tree.Event
	// lastTock is the highest tock each node has issued.
	lastTock map[string]uint64
}

// SetPolicy sets node name's sync policy; it takes effect when the node
// next starts.
func (w *World) SetPolicy(name string, p store.SyncPolicy) error {
	i, err := w.index(name)
	if err != nil {
		return err
	}
	w.nodes[i].policy = p
	return nil
}

// NewWorld builds nodes named names on a topology. Every node starts with an
// empty store (sync policy always) and all links up.
func NewWorld(seed uint64, names []string, topo Topology, chainLen int) (*World, error) {
	w := &World{
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		cut:      make(map[[2]int]bool),
		ChainLen: chainLen,
		issued:   make(map[tree.Link]tree.Event),
		lastTock: make(map[string]uint64),
	}
	for _, name := range names {
		w.nodes = append(w.nodes, &node{name: name, fs: store.NewMemFS(), policy: store.SyncAlways})
	}
	n := len(names)
	addLink := func(nodes ...int) {
		l := &link{id: len(w.links), nodes: nodes, hub: len(nodes) > 2 || topo == Hub}
		w.links = append(w.links, l)
		for _, i := range nodes {
			w.nodes[i].links = append(w.nodes[i].links, l.id)
		}
	}
	switch topo {
	case Mesh:
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				addLink(i, j)
			}
		}
	case Line:
		for i := 0; i+1 < n; i++ {
			addLink(i, i+1)
		}
	case Star:
		for i := 1; i < n; i++ {
			addLink(0, i)
		}
	case Hub:
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		addLink(all...)
	}
	for i := range w.nodes {
		if err := w.start(i); err != nil {
			return nil, err
		}
	}
	for _, l := range w.links {
		w.linkUp(l)
	}
	return w, nil
}

func (w *World) tracef(format string, args ...any) {
	line := fmt.Sprintf("%5d ", w.step) + fmt.Sprintf(format, args...)
	w.trace = append(w.trace, line)
	if len(w.trace) > 400 {
		w.trace = w.trace[len(w.trace)-300:]
	}
	if w.Verbose != nil {
		fmt.Fprintln(w.Verbose, line)
	}
}

// Trace returns the most recent trace lines.
func (w *World) Trace() []string { return w.trace }

// Errors returns unexpected errors seen while running (malformed messages,
// store failures, restore problems).
func (w *World) Errors() []error { return w.errs }

func (w *World) index(name string) (int, error) {
	for i, n := range w.nodes {
		if n.name == name {
			return i, nil
		}
	}
	return -1, fmt.Errorf("sim: no node %q", name)
}

// Names returns the node names.
func (w *World) Names() []string {
	out := make([]string, len(w.nodes))
	for i, n := range w.nodes {
		out[i] = n.name
	}
	return out
}

// Replica returns the replica of node name (nil while it is down).
func (w *World) Replica(name string) *replica.Replica {
	i, err := w.index(name)
	if err != nil || !w.nodes[i].up {
		return nil
	}
	return w.nodes[i].r
}

func (w *World) start(i int) error {
	nd := w.nodes[i]
	st, loaded, err := store.Open(nd.fs, store.Options{Sync: nd.policy})
	if err != nil {
		return fmt.Errorf("sim: open store of %s: %w", nd.name, err)
	}
	r := replica.New(replica.Config{Node: nd.name, ChainLen: w.ChainLen,
		TickReserve: w.TickReserve, TockReserve: w.TockReserve, NoReserve: w.NoReserve})
	for _, e := range r.Restore(loaded.Snapshot, loaded.Log, loaded.NodeRecord) {
		w.errs = append(w.errs, fmt.Errorf("%s restore: %w", nd.name, e))
	}
	nd.r, nd.st, nd.up = r, st, true
	return w.flush(i)
}

// holds reports whether t holds ev or a version of its entry that beats
// it: then t's node can pass on what ev is worth.
func holds(t *tree.Tree, ev tree.Event) bool {
	e := t.Get(ev.Path)
	return e != nil && len(e.Chain()) > 0 && e.Version().Compare(ev.Version()) >= 0
}

// durable marks node i's store as flushed: every acknowledged write that
// node i holds (or beats) is now safe.
func (w *World) durable(i int) {
	t := w.nodes[i].r.Tree()
	for k := range w.acks {
		if a := &w.acks[k]; !a.safe && holds(t, a.ev) {
			a.safe = true
		}
	}
}

// FlushStores makes every running node under sync interval flush its
// store (the group commit of its interval).
func (w *World) FlushStores() {
	for i, nd := range w.nodes {
		if nd.up && nd.policy == store.SyncInterval {
			if err := nd.st.Flush(); err != nil {
				w.errs = append(w.errs, fmt.Errorf("%s flush: %w", nd.name, err))
				continue
			}
			w.durable(i)
		}
	}
}

// flush persists node i's records and queues its messages.
func (w *World) flush(i int) error {
	nd := w.nodes[i]
	if !nd.up {
		return nil
	}
	rd := nd.r.Ready()
	if rd.NodeRecord != nil {
		if err := nd.st.SaveNodeRecord(rd.NodeRecord); err != nil {
			return fmt.Errorf("sim: %s save node record: %w", nd.name, err)
		}
	}
	if len(rd.Records) > 0 {
		if err := nd.st.AppendBatch(rd.Records); err != nil {
			return fmt.Errorf("sim: %s persist: %w", nd.name, err)
		}
	}
	if nd.policy == store.SyncAlways {
		w.durable(i)
	}
	for _, m := range rd.Messages {
		l := w.links[m.Link]
		for _, to := range l.nodes {
			if to == i || !w.connected(i, to, l) {
				continue
			}
			if w.rng.Float64() < w.DropRate {
				continue
			}
			p := packet{from: i, to: to, link: l.id, kind: m.Kind, data: m.Data, due: w.step + w.delay()}
			w.inflight = append(w.inflight, p)
			if w.rng.Float64() < w.DupRate {
				p.due = w.step + w.delay()
				w.inflight = append(w.inflight, p)
			}
		}
	}
	return nil
}

func (w *World) delay() uint64 {
	if w.MaxDelay == 0 {
		return 0
	}
	return w.rng.Uint64N(w.MaxDelay + 1)
}

func key(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

// connected reports whether a and b can talk over l right now.
func (w *World) connected(a, b int, l *link) bool {
	if !w.nodes[a].up || !w.nodes[b].up {
		return false
	}
	if l.hub {
		return !w.cut[[2]int{a, a}] && !w.cut[[2]int{b, b}] && !w.cut[key(a, b)]
	}
	return !w.cut[key(a, b)]
}

// linkAttached reports whether node i currently has link l up.
func (w *World) linkAttached(i int, l *link) bool {
	for _, j := range l.nodes {
		if j != i && w.connected(i, j, l) {
			return true
		}
	}
	return false
}

// linkUp brings l up on every node that can use it now and is not yet on it.
func (w *World) linkUp(l *link) {
	for _, i := range l.nodes {
		nd := w.nodes[i]
		if !nd.up || !w.linkAttached(i, l) {
			continue
		}
		if !slices.ContainsFunc(nd.r.Links(), func(s replica.LinkState) bool { return s.ID == replica.LinkID(l.id) }) {
			nd.r.LinkUp(replica.LinkID(l.id))
			w.must(w.flush(i))
		} else if l.hub {
			// Someone (re)joined the hub: the broker delivers the
			// newcomer's digest to us, and ours to it.
			nd.r.LinkDown(replica.LinkID(l.id))
			nd.r.LinkUp(replica.LinkID(l.id))
			w.must(w.flush(i))
		}
	}
}

// refreshLinks takes links down on nodes that lost every peer on them, and
// drops packets that can no longer be delivered.
func (w *World) refreshLinks() {
	for _, l := range w.links {
		for _, i := range l.nodes {
			nd := w.nodes[i]
			if nd.up && !w.linkAttached(i, l) {
				nd.r.LinkDown(replica.LinkID(l.id))
			}
		}
	}
	w.inflight = slices.DeleteFunc(w.inflight, func(p packet) bool {
		return !w.connected(p.from, p.to, w.links[p.link])
	})
}

func (w *World) must(err error) {
	if err != nil {
		w.errs = append(w.errs, err)
	}
}

// Partition cuts every connection between the nodes in side and the rest.
func (w *World) Partition(side []string) error {
	in := make(map[int]bool)
	for _, s := range side {
		i, err := w.index(s)
		if err != nil {
			return err
		}
		in[i] = true
	}
	for a := range w.nodes {
		for b := a + 1; b < len(w.nodes); b++ {
			if in[a] != in[b] {
				w.cut[key(a, b)] = true
			}
		}
	}
	w.tracef("partition %v | rest", side)
	w.refreshLinks()
	return nil
}

// Heal restores every connection and brings the links back up (hello and
// digest exchange).
func (w *World) Heal() {
	w.cut = make(map[[2]int]bool)
	w.tracef("heal")
	for _, l := range w.links {
		w.linkUp(l)
	}
}

// running returns node name and its index; nd is nil while it is down.
func (w *World) running(name string) (nd *node, i int, err error) {
	i, err = w.index(name)
	if err != nil {
		return nil, i, err
	}
	if !w.nodes[i].up {
		return nil, i, nil
	}
	return w.nodes[i], i, nil
}

// Crash stops node name at once: in-flight messages to and from it are
// lost, and so is every byte its store had not synced.
func (w *World) Crash(name string) error {
	nd, _, err := w.running(name)
	if nd == nil {
		return err
	}
	nd.up = false
	nd.r, nd.st = nil, nil
	nd.fs.Crash(w.rng)
	// Acknowledged writes on no disk and held (or beaten) by no running
	// node are gone.
	for k := range w.acks {
		a := &w.acks[k]
		if a.safe || a.lost {
			continue
		}
		held := false
		for _, o := range w.nodes {
			if o.up && holds(o.r.Tree(), a.ev) {
				held = true
				break
			}
		}
		a.lost = !held
	}
	w.tracef("crash %s", name)
	w.refreshLinks()
	return nil
}

// Restart starts a crashed node from its store and brings its links up.
func (w *World) Restart(name string) error {
	i, err := w.index(name)
	if err != nil {
		return err
	}
	if w.nodes[i].up {
		return nil
	}
	if err := w.start(i); err != nil {
		return err
	}
	w.tracef("restart %s (tree %d values)", name, w.nodes[i].r.Tree().Len())
	for _, id := range w.nodes[i].links {
		w.linkUp(w.links[id])
	}
	return nil
}

// Snapshot makes node name write a snapshot and rotate its log.
func (w *World) Snapshot(name string) error {
	nd, _, err := w.running(name)
	if nd == nil {
		return err
	}
	w.tracef("snapshot %s", name)
	return nd.st.Snapshot(nd.r.SnapshotRecords)
}

// Set writes a value on node name; the write is acknowledged once the
// node's store has synced it.
func (w *World) Set(name string, p tree.Path, value []byte, c tree.Cond) (tree.Event, error) {
	return w.write(name, func(r *replica.Replica) (tree.Event, bool, error) { return r.Set(p, value, c) })
}

// Delete deletes on node name.
func (w *World) Delete(name string, p tree.Path, c tree.Cond) (tree.Event, error) {
	return w.write(name, func(r *replica.Replica) (tree.Event, bool, error) {
		ev, err := r.Delete(p, c)
		return ev, err == nil, err
	})
}

func (w *World) write(name string, op func(*replica.Replica) (tree.Event, bool, error)) (tree.Event, error) {
	nd, i, err := w.running(name)
	if nd == nil {
		if err == nil {
			err = fmt.Errorf("sim: %s is down", name)
		}
		return tree.Event{}, err
	}
	ev, changed, err := op(nd.r)
	if err != nil || !changed {
		return ev, err
	}
	return ev, w.ack(i, ev)
}

func (w *World) ack(i int, ev tree.Event) error {
	name := w.nodes[i].name
	if old, ok := w.issued[ev.Chain[0]]; ok {
		w.errs = append(w.errs, fmt.Errorf("%s reused tick %s: first for %s tock %d, now for %s tock %d",
			name, ev.Chain[0], old.Path, old.Tock, ev.Path, ev.Tock))
	}
	w.issued[ev.Chain[0]] = ev
	if ev.Tock <= w.lastTock[name] {
		w.errs = append(w.errs, fmt.Errorf("%s issued tock %d after tock %d", name, ev.Tock, w.lastTock[name]))
	}
	w.lastTock[name] = ev.Tock
	w.acks = append(w.acks, acked{node: name, ev: ev})
	if err := w.flush(i); err != nil {
		return err
	}
	w.tracef("%s writes %s = %s (%s, tock %d)", w.nodes[i].name, ev.Path, showValue(ev.Value), ev.Chain, ev.Tock)
	return nil
}

// Tick advances every running node's clock once.
func (w *World) Tick() {
	for i, nd := range w.nodes {
		if nd.up {
			nd.r.Tick()
			w.must(w.flush(i))
		}
	}
}

// DeliverOne delivers one due message, chosen at random (so messages are
// reordered). It reports whether there was one.
func (w *World) DeliverOne() bool {
	w.step++
	due := 0
	for _, p := range w.inflight {
		if p.due <= w.step {
			due++
		}
	}
	if due == 0 {
		return len(w.inflight) > 0
	}
	k := w.rng.IntN(due)
	for idx, p := range w.inflight {
		if p.due > w.step {
			continue
		}
		if k > 0 {
			k--
			continue
		}
		w.inflight = slices.Delete(w.inflight, idx, idx+1)
		w.deliver(p)
		return true
	}
	return true
}

// DeliverAll delivers messages until none is left (new ones included), at
// most limit deliveries. It reports whether the network went quiet.
func (w *World) DeliverAll(limit int) bool {
	for n := 0; n < limit; n++ {
		if len(w.inflight) == 0 {
			return true
		}
		w.DeliverOne()
	}
	return len(w.inflight) == 0
}

// DropAll loses every message in flight.
func (w *World) DropAll() int {
	n := len(w.inflight)
	w.inflight = w.inflight[:0]
	return n
}

// InFlight returns the number of messages in flight.
func (w *World) InFlight() int { return len(w.inflight) }

func (w *World) deliver(p packet) {
	to := w.nodes[p.to]
	if !w.connected(p.from, p.to, w.links[p.link]) {
		return
	}
	w.Delivered++
	if err := to.r.Step(replica.LinkID(p.link), p.kind, p.data); err != nil {
		w.errs = append(w.errs, fmt.Errorf("%s: %w", to.name, err))
	}
	w.must(w.flush(p.to))
}

// Stabilize heals everything, restarts crashed nodes, stops message loss,
// then runs clocks and delivers until every node has every tick, the trees
// agree and (with a deleter group) every tombstone is purged. It returns the
// number of rounds, or an error if that does not happen within maxRounds.
func (w *World) Stabilize(maxRounds int) (int, error) {
	w.DropRate, w.DupRate = 0, 0
	for _, nd := range w.nodes {
		if !nd.up {
			w.must(w.Restart(nd.name))
		}
	}
	w.Heal()
	quiet := 0
	for round := 1; round <= maxRounds; round++ {
		w.Tick()
		if !w.DeliverAll(1_000_000) {
			return round, errors.New("sim: network never went quiet (a message loop?)")
		}
		if w.settled() {
			quiet++
			// Two heartbeat periods with nothing left to do.
			if quiet > 25 {
				return round, nil
			}
		} else {
			quiet = 0
		}
	}
	return maxRounds, fmt.Errorf("sim: not settled after %d rounds: %s", maxRounds, w.unsettled())
}

func (w *World) settled() bool { return w.unsettled() == "" }

func (w *World) unsettled() string {
	var first string
	for _, nd := range w.nodes {
		r := nd.r
		if m := r.Missing(); len(m) > 0 {
			return fmt.Sprintf("%s is missing %v", nd.name, m)
		}
		if len(r.DeleterGroup()) > 0 && r.Tree().NumTombstones() > 0 {
			return fmt.Sprintf("%s still has %d tombstones", nd.name, r.Tree().NumTombstones())
		}
		d := DumpState(r.Tree())
		if first == "" {
			first = d
		} else if d != first {
			return fmt.Sprintf("%s differs from %s", nd.name, w.nodes[0].name)
		}
	}
	return ""
}

// DumpState prints a tree's entries (values and tombstones, with chains and
// tocks) and node states canonically, for comparing replicas.
func DumpState(t *tree.Tree) string {
	var b strings.Builder
	t.Walk(nil, func(e *tree.Entry) bool {
		if len(e.Chain()) == 0 {
			return true
		}
		v, _ := e.Value()
		fmt.Fprintf(&b, "%s = %s [%s] tock %d\n", e.Path(), showValue(v), e.Chain(), e.Tock())
		return true
	})
	for _, n := range t.Nodes() {
		fmt.Fprintf(&b, "node %s tick %d known %s present %s deleted %s skipped %s\n", n.Name(), n.Tick(), n.Known(), n.Present(), n.Deleted(), n.Skipped())
	}
	return b.String()
}

func showValue(v []byte) string {
	if v == nil {
		return "<deleted>"
	}
	var b strings.Builder
	if _, err := msgp.UnmarshalAsJSON(&b, v); err != nil {
		return fmt.Sprintf("%x", v)
	}
	return strings.TrimSpace(b.String())
}

// Check verifies the converged world: identical trees and node states, the
// oracle (each path holds the winner of all acknowledged writes, or nothing
// if that winner is a purged deletion), contiguous ticks, and no unexpected
// errors. It returns every problem found.
func (w *World) Check() []error {
	var errs []error
	errs = append(errs, w.errs...)
	var ref string
	for _, nd := range w.nodes {
		if !nd.up {
			errs = append(errs, fmt.Errorf("%s is down", nd.name))
			continue
		}
		d := DumpState(nd.r.Tree())
		if ref == "" {
			ref = d
		} else if d != ref {
			errs = append(errs, fmt.Errorf("%s differs from %s:\n%s\nvs\n%s", nd.name, w.nodes[0].name, d, ref))
		}
		for _, n := range nd.r.Tree().Nodes() {
			if m := n.Missing(); !m.IsEmpty() {
				errs = append(errs, fmt.Errorf("%s: ticks of %s not contiguous: missing %s", nd.name, n.Name(), m))
			}
		}
	}
	// Oracle, per path: the entry must hold a version that some
	// acknowledged write made (nothing invented), and no acknowledged
	// write that a crash could not have lost may beat it. A write a crash
	// may have lost (see acked) can still win: a torn write can keep more
	// than was synced.
	made := make(map[string]map[tree.Version]bool)
	paths := make(map[string]tree.Path)
	req := make(map[string]tree.Event) // the winner among the writes that cannot be lost
	for _, a := range w.acks {
		k := a.ev.Path.String()
		if made[k] == nil {
			made[k] = make(map[tree.Version]bool)
			paths[k] = a.ev.Path
		}
		made[k][a.ev.Version()] = true
		if a.lost {
			continue
		}
		if cur, ok := req[k]; !ok || a.ev.Version().Compare(cur.Version()) > 0 {
			req[k] = a.ev
		}
	}
	for _, nd := range w.nodes {
		if !nd.up {
			continue
		}
		t := nd.r.Tree()
		for _, k := range slices.Sorted(maps.Keys(paths)) {
			e := t.Get(paths[k])
			r, hasReq := req[k]
			switch {
			case e == nil || len(e.Chain()) == 0: // never there, or a purged tombstone
				if hasReq && r.Value != nil {
					errs = append(errs, fmt.Errorf("%s: %s lost acknowledged winning write %s (%s)", nd.name, k, showValue(r.Value), r.Chain))
				}
			case !made[k][e.Version()]:
				errs = append(errs, fmt.Errorf("%s: %s has version %v, which no acknowledged write made", nd.name, k, e.Version()))
			case hasReq && e.Version().Compare(r.Version()) < 0:
				if r.Value == nil {
					errs = append(errs, fmt.Errorf("%s: deleted %s came back as %s (%v)", nd.name, k, showValue(mustValue(e)), e.Version()))
				} else {
					errs = append(errs, fmt.Errorf("%s: %s has version %v, the winning write is %v", nd.name, k, e.Version(), r.Version()))
				}
			}
		}
	}
	return errs
}

func mustValue(e *tree.Entry) []byte { v, _ := e.Value(); return v }
