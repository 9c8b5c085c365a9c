package sim

import (
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
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

// conn is one simulated connection: node a dialled node b's broker (its
// link is "out:b" on a and "in:a" on b), or the hub that every node
// dialled ("hub:hub" on each).
type conn struct {
	id    int
	a, b  int   // dialler and dialled; both -1 for the hub
	nodes []int // the nodes on it
	hub   bool
}

// linkName is conn c's link name on node i.
func (w *World) linkName(c *conn, i int) string {
	switch {
	case c.hub:
		return "hub:hub"
	case i == c.a:
		return "out:" + w.nodes[c.b].name
	default:
		return "in:" + w.nodes[c.a].name
	}
}

type packet struct {
	from, to int
	conn     int
	kind     wire.Kind
	data     []byte
	due      uint64 // step at which it may be delivered
}

type simNode struct {
	name   string
	policy store.SyncPolicy
	fs     *store.MemFS
	eng    *node.Engine
	stp    *node.Stepper
	up     bool
	conns  []int // conn ids this node is on
	linked map[int]bool
}

// acked is one acknowledged write, kept for the oracle. A write is safe
// once some node has it (or a version that beats it) on disk; until then
// a crash of every node that holds it may lose it, and then it is marked
// lost: the oracle leaves it out. Under sync "always" a write is safe when
// acknowledged.
type acked struct {
	node string
	ev   tree.Event
	safe bool
	lost bool
}

// Config shapes a World.
type Config struct {
	Seed     uint64
	Names    []string
	Topology Topology
	ChainLen int
	// Policies are the nodes' sync policies by name (default always).
	Policies map[string]store.SyncPolicy
	// TickReserve, TockReserve and NoReserve configure the replicas (see
	// replica.Config); zero reserves take the replica's defaults.
	TickReserve, TockReserve uint64
	NoReserve                bool
	// BothDial makes each pair of peers dial each other: two connections
	// per pair, of which their engines must use one.
	BothDial bool
}

// World is a simulated network of engines (tree/node), driven step by step
// through their Steppers on one goroutine. One seeded RNG decides
// everything, and the clock is the step counter, so a seed replays
// exactly.
type World struct {
	cfg      Config
	rng      *rand.Rand
	nodes    []*simNode
	conns    []*conn
	cut      map[[2]int]bool // cut[a,b] (a<b): a and b cannot talk; for the hub, cut[i,i]
	inflight []packet
	step     uint64
	acks     []acked
	trace    []string
	// traceHash sums every trace line: two runs of one seed must agree.
	traceHash hash.Hash64
	Verbose   io.Writer

	DropRate  float64 // probability that a sent message is lost
	DupRate   float64 // probability that a sent message is delivered twice
	MaxDelay  uint64  // a message waits up to this many steps
	Delivered int
	errs      []error

	// issued records every (node, tick) a node has issued, with its
	// event: a tick issued twice is an error (tick reuse).
	issued map[tree.Link]tree.Event
	// lastTock is the highest tock each node has issued.
	lastTock map[string]uint64
	// stats are the replicas' counters, kept across restarts.
	stats map[string]replica.Stats
}

// errDisk is the error the simulated disk returns when told to fail.
var errDisk = errors.New("sim: injected disk failure")

// NewWorld builds nodes named names on a topology, every node on sync
// "always", all links up.
func NewWorld(seed uint64, names []string, topo Topology, chainLen int) (*World, error) {
	return NewWorldConfig(Config{Seed: seed, Names: names, Topology: topo, ChainLen: chainLen})
}

// NewWorldConfig builds a world and starts every node.
func NewWorldConfig(cfg Config) (*World, error) {
	w := &World{
		cfg:       cfg,
		rng:       rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		cut:       make(map[[2]int]bool),
		issued:    make(map[tree.Link]tree.Event),
		lastTock:  make(map[string]uint64),
		stats:     make(map[string]replica.Stats),
		traceHash: fnv.New64a(),
	}
	for _, name := range cfg.Names {
		p, ok := cfg.Policies[name]
		if !ok {
			p = store.SyncAlways
		}
		w.nodes = append(w.nodes, &simNode{name: name, fs: store.NewMemFS(), policy: p, linked: make(map[int]bool)})
	}
	n := len(cfg.Names)
	addConn := func(c *conn) {
		c.id = len(w.conns)
		w.conns = append(w.conns, c)
		for _, i := range c.nodes {
			w.nodes[i].conns = append(w.nodes[i].conns, c.id)
		}
	}
	pair := func(i, j int) {
		addConn(&conn{a: i, b: j, nodes: []int{i, j}})
		if cfg.BothDial {
			addConn(&conn{a: j, b: i, nodes: []int{j, i}})
		}
	}
	switch cfg.Topology {
	case Mesh:
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				pair(i, j)
			}
		}
	case Line:
		for i := 0; i+1 < n; i++ {
			pair(i, i+1)
		}
	case Star:
		for i := 1; i < n; i++ {
			pair(i, 0)
		}
	case Hub:
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		addConn(&conn{a: -1, b: -1, nodes: all, hub: true})
	}
	for i := range w.nodes {
		if err := w.start(i); err != nil {
			return nil, err
		}
	}
	for _, c := range w.conns {
		w.connUp(c)
	}
	return w, nil
}

func (w *World) tracef(format string, args ...any) {
	line := fmt.Sprintf("%5d ", w.step) + fmt.Sprintf(format, args...)
	w.traceHash.Write([]byte(line))
	w.traceHash.Write([]byte{'\n'})
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

// TraceSum is a hash of every trace line so far.
func (w *World) TraceSum() uint64 { return w.traceHash.Sum64() }

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

// Replica returns the replica of node name (nil while it is down), for
// reading.
func (w *World) Replica(name string) *replica.Replica {
	i, err := w.index(name)
	if err != nil || !w.nodes[i].up {
		return nil
	}
	return w.nodes[i].stp.Replica()
}

// Links returns the links of node name that are up and those its engine
// uses (nil while it is down).
func (w *World) Links(name string) (up, active []string) {
	i, err := w.index(name)
	if err != nil || !w.nodes[i].up {
		return nil, nil
	}
	return w.nodes[i].stp.Links(), w.nodes[i].stp.Active()
}

// now is the simulated wall clock: 100 ms per step.
func (w *World) now() time.Time {
	return time.Unix(1_700_000_000, 0).Add(time.Duration(w.step) * 100 * time.Millisecond)
}

func (w *World) start(i int) error {
	nd := w.nodes[i]
	eng, err := node.Open(node.Config{
		Name:     nd.name,
		FS:       nd.fs,
		Store:    store.Options{Sync: nd.policy},
		ChainLen: w.cfg.ChainLen,
		Now:      w.now,
		// The simulated disks are never lost: start at tick 1.
		FreshStart: func() uint64 { return 0 },
		Replica: func(rc *replica.Config) {
			rc.TickReserve, rc.TockReserve, rc.NoReserve = w.cfg.TickReserve, w.cfg.TockReserve, w.cfg.NoReserve
			rc.HeartbeatTicks, rc.LiveTicks, rc.MissingTicks, rc.PurgeTicks, rc.DigestTicks = 10, 35, 10, 10, 100
			// The replica's random delays (MoaT-KV's ping group, answers on
			// a hub) follow the run's seed, the node and the step.
			rc.Seed = w.cfg.Seed*0x9e3779b97f4a7c15 ^ uint64(i)<<32 ^ uint64(w.step)
		},
	})
	if err != nil {
		return fmt.Errorf("sim: open %s: %w", nd.name, err)
	}
	stp, err := eng.Stepper()
	if err != nil {
		return err
	}
	nd.eng, nd.stp, nd.up = eng, stp, true
	clear(nd.linked)
	if err := stp.Start(); err != nil {
		w.fault(i, err)
		return nil
	}
	w.durableIfAlways(i)
	return nil
}

// after checks node i after a step of its engine: a stopped engine (its
// store failed) is a crashed node; under sync "always" what it holds is on
// disk.
func (w *World) after(i int, err error) {
	nd := w.nodes[i]
	if !nd.up {
		return
	}
	if serr := nd.stp.Err(); serr != nil {
		w.fault(i, serr)
		return
	}
	if err != nil {
		w.errs = append(w.errs, fmt.Errorf("%s: %w", nd.name, err))
	}
	w.durableIfAlways(i)
}

// fault handles an engine that stopped because its disk failed: like a
// power loss.
func (w *World) fault(i int, err error) {
	if !errors.Is(err, errDisk) {
		w.errs = append(w.errs, fmt.Errorf("%s stopped: %w", w.nodes[i].name, err))
	}
	w.tracef("%s stopped: %v", w.nodes[i].name, err)
	w.crash(i)
}

// durableIfAlways marks what node i holds as safe if its store has synced
// everything (always under sync "always"; under "interval" after a group
// commit or a sync before a heartbeat).
func (w *World) durableIfAlways(i int) {
	if w.nodes[i].up && w.nodes[i].stp.Durable() {
		w.durable(i)
	}
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
	t := w.nodes[i].stp.Replica().Tree()
	for k := range w.acks {
		if a := &w.acks[k]; !a.safe && holds(t, a.ev) {
			a.safe = true
		}
	}
}

// FlushStores makes every running node under sync "interval" flush its
// store: the group commit of its interval.
func (w *World) FlushStores() {
	for i, nd := range w.nodes {
		if nd.up && nd.policy == store.SyncInterval {
			err := nd.stp.FlushStore()
			if nd.stp.Err() == nil && err == nil {
				w.durable(i)
			}
			w.after(i, nil)
		}
	}
}

// FailDisk makes node name's disk fail operation op (a store.MemFS
// operation: "sync", "write", "rename", …) after n more successful calls.
func (w *World) FailDisk(name, op string, n int) error {
	i, err := w.index(name)
	if err != nil {
		return err
	}
	w.nodes[i].fs.FailAfter(op, n, errDisk)
	w.tracef("disk of %s: %s fails after %d more", name, op, n)
	return nil
}

// sender returns how node i sends on conn c.
func (w *World) sender(i int, c *conn) node.Sender {
	return func(kind wire.Kind, data []byte) error {
		for _, to := range c.nodes {
			if to == i || !w.connected(i, to, c) {
				continue
			}
			if w.rng.Float64() < w.DropRate {
				continue
			}
			p := packet{from: i, to: to, conn: c.id, kind: kind, data: data, due: w.step + w.delay()}
			w.inflight = append(w.inflight, p)
			if w.rng.Float64() < w.DupRate {
				p.due = w.step + w.delay()
				w.inflight = append(w.inflight, p)
			}
		}
		return nil
	}
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

// connected reports whether a and b can talk over c right now.
func (w *World) connected(a, b int, c *conn) bool {
	if !w.nodes[a].up || !w.nodes[b].up {
		return false
	}
	if c.hub {
		return !w.cut[[2]int{a, a}] && !w.cut[[2]int{b, b}] && !w.cut[key(a, b)]
	}
	return !w.cut[key(a, b)]
}

// usable reports whether node i can use conn c now: some other node on it
// is reachable (for a peer connection: the other end; the dialled broker
// must be up for the dialler, and the dialler connected for the dialled).
func (w *World) usable(i int, c *conn) bool {
	for _, j := range c.nodes {
		if j != i && w.connected(i, j, c) {
			return true
		}
	}
	return false
}

// connUp brings c up on every node that can use it now and has not got it
// up; on the hub, a node that (re)joins makes everyone's link start over
// (the broker delivers the newcomer's hello and digest to all).
func (w *World) connUp(c *conn) {
	for _, i := range c.nodes {
		nd := w.nodes[i]
		if !nd.up || !w.usable(i, c) {
			continue
		}
		if !nd.linked[c.id] {
			nd.linked[c.id] = true
			w.after(i, nd.stp.LinkUp(w.linkName(c, i), w.sender(i, c)))
		} else if c.hub {
			w.after(i, nd.stp.LinkUp(w.linkName(c, i), w.sender(i, c)))
		}
	}
}

// refreshLinks takes links down on nodes that lost every peer on them, and
// drops packets that can no longer be delivered.
func (w *World) refreshLinks() {
	for _, c := range w.conns {
		for _, i := range c.nodes {
			nd := w.nodes[i]
			if nd.up && nd.linked[c.id] && !w.usable(i, c) {
				nd.linked[c.id] = false
				w.after(i, nd.stp.LinkDown(w.linkName(c, i)))
			}
		}
	}
	w.inflight = slices.DeleteFunc(w.inflight, func(p packet) bool {
		return !w.connected(p.from, p.to, w.conns[p.conn])
	})
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
	for _, c := range w.conns {
		w.connUp(c)
	}
}

// running returns node name and its index; nd is nil while it is down.
func (w *World) running(name string) (nd *simNode, i int, err error) {
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
	nd, i, err := w.running(name)
	if nd == nil {
		return err
	}
	w.tracef("crash %s", name)
	w.crash(i)
	return nil
}

func (w *World) crash(i int) {
	nd := w.nodes[i]
	w.keepStats(nd)
	nd.up = false
	nd.eng, nd.stp = nil, nil
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
			if o.up && holds(o.stp.Replica().Tree(), a.ev) {
				held = true
				break
			}
		}
		a.lost = !held
	}
	w.refreshLinks()
}

// keepStats adds a stopping node's counters to the world's.
func (w *World) keepStats(nd *simNode) {
	w.stats[nd.name] = addStats(w.stats[nd.name], nd.stp.Replica().Stats())
}

// Stats returns node name's replica counters over all its runs.
func (w *World) Stats(name string) replica.Stats {
	s := addStats(w.stats[name], replica.Stats{})
	if nd, _, _ := w.running(name); nd != nil {
		s = addStats(s, nd.stp.Replica().Stats())
	}
	return s
}

func addStats(a, b replica.Stats) replica.Stats {
	out := replica.Stats{Applied: a.Applied + b.Applied, Lost: a.Lost + b.Lost, Duplicate: a.Duplicate + b.Duplicate,
		Relayed: a.Relayed + b.Relayed, Purged: a.Purged + b.Purged, Malformed: a.Malformed + b.Malformed,
		MissingReqs: a.MissingReqs + b.MissingReqs, Sent: make(map[wire.Kind]int)}
	for k, v := range a.Sent {
		out.Sent[k] += v
	}
	for k, v := range b.Sent {
		out.Sent[k] += v
	}
	return out
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
	if !w.nodes[i].up {
		return nil // its disk failed at once
	}
	r := w.nodes[i].stp.Replica()
	own := r.Tree().Node(name)
	w.tracef("restart %s (tree %d values, tick %d, skipped %s)", name, r.Tree().Len(), own.Tick(), own.Skipped())
	for _, id := range w.nodes[i].conns {
		w.connUp(w.conns[id])
	}
	return nil
}

// Snapshot makes node name write a snapshot and rotate its log.
func (w *World) Snapshot(name string) error {
	nd, i, err := w.running(name)
	if nd == nil {
		return err
	}
	w.tracef("snapshot %s", name)
	serr := nd.stp.Snapshot()
	if serr != nil && errors.Is(serr, errDisk) {
		w.tracef("snapshot of %s failed: %v", name, serr)
		serr = nil
	}
	w.after(i, serr)
	return nil
}

// Set writes a value on node name; the write is acknowledged once the
// node's store has it.
func (w *World) Set(name string, p tree.Path, value []byte, c tree.Cond) (tree.Event, error) {
	return w.write(name, p, value, c)
}

// Delete deletes on node name.
func (w *World) Delete(name string, p tree.Path, c tree.Cond) (tree.Event, error) {
	return w.write(name, p, nil, c)
}

func (w *World) write(name string, p tree.Path, value []byte, c tree.Cond) (tree.Event, error) {
	nd, i, err := w.running(name)
	if nd == nil {
		if err == nil {
			err = fmt.Errorf("sim: %s is down", name)
		}
		return tree.Event{}, err
	}
	var res node.Result
	if value != nil {
		res, err = nd.stp.Set(p, value, node.Cond{Cond: c})
	} else {
		res, err = nd.stp.Delete(p, node.Cond{Cond: c})
	}
	if serr := nd.stp.Err(); serr != nil {
		// The disk failed under the write: it was not acknowledged, but
		// its record may have reached the disk before the failure (a torn
		// write can keep it), so it may still show up. Keep it as a write
		// that may or may not survive. (Its tick is not counted as issued:
		// if the reservation that covers it did not reach the disk, its
		// record did not either, and the tick is used again after the
		// restart, rightly.)
		t := nd.stp.Replica().Tree()
		if e := t.Get(p); e != nil && len(e.Chain()) > 0 {
			h := e.Chain()[0]
			if _, seen := w.issued[h]; !seen && h.Node == name && h.Tick == t.Node(name).Tick() {
				v, _ := e.Value()
				ev := tree.Event{Path: p, Value: v, Chain: e.Chain(), Tock: e.Tock()}
				w.acks = append(w.acks, acked{node: name, ev: ev, lost: true})
				w.tracef("%s's write %s = %s (%s, tock %d) failed on its disk", name, p, showValue(v), ev.Chain, ev.Tock)
			}
		}
		w.fault(i, serr)
		return tree.Event{}, fmt.Errorf("%w: %v", errDown, serr)
	}
	if err != nil || res.NoOp {
		return tree.Event{}, err
	}
	ev := tree.Event{Path: p, Value: value, Chain: res.Chain, Tock: res.Tock}
	w.ack(i, ev)
	return ev, nil
}

// errDown: the node went down during the write (its disk failed); the
// write was not acknowledged.
var errDown = errors.New("sim: node went down")

func (w *World) ack(i int, ev tree.Event) {
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
	w.durableIfAlways(i)
	w.tracef("%s writes %s = %s (%s, tock %d)", name, ev.Path, showValue(ev.Value), ev.Chain, ev.Tock)
}

// Tick advances every running node's clock once.
func (w *World) Tick() {
	w.step++
	for i, nd := range w.nodes {
		if nd.up {
			w.after(i, nd.stp.Tick())
		}
	}
}

// WriteStatus makes every running node write its status entries.
func (w *World) WriteStatus() {
	for i, nd := range w.nodes {
		if nd.up {
			w.after(i, nd.stp.WriteStatus())
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
	c := w.conns[p.conn]
	if !w.connected(p.from, p.to, c) {
		return
	}
	to := w.nodes[p.to]
	w.Delivered++
	w.after(p.to, to.stp.Receive(w.linkName(c, p.to), w.sender(p.to, c), p.kind, p.data))
}

// Stabilize heals everything, restarts crashed nodes, stops message loss
// and disk failures, then runs clocks and delivers until every node has
// every tick, the trees agree and (with a deleter group) every tombstone is
// purged. It returns the number of rounds, or an error if that does not
// happen within maxRounds.
func (w *World) Stabilize(maxRounds int) (int, error) {
	w.DropRate, w.DupRate = 0, 0
	for _, nd := range w.nodes {
		for _, op := range []string{"create", "open", "read", "rename", "remove", "list", "truncate", "syncdir", "write", "sync"} {
			nd.fs.FailAfter(op, 0, nil)
		}
	}
	for _, nd := range w.nodes {
		if !nd.up {
			if err := w.Restart(nd.name); err != nil {
				return 0, err
			}
		}
	}
	w.Heal()
	quiet := 0
	for round := 1; round <= maxRounds; round++ {
		w.Tick()
		if round%10 == 0 {
			w.FlushStores()
		}
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
		if !nd.up {
			return fmt.Sprintf("%s is down", nd.name)
		}
		r := nd.stp.Replica()
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
// oracle (below), contiguous ticks, no tick issued twice, and no
// unexpected errors. It returns every problem found.
func (w *World) Check() []error {
	var errs []error
	errs = append(errs, w.errs...)
	var ref string
	for _, nd := range w.nodes {
		if !nd.up {
			errs = append(errs, fmt.Errorf("%s is down", nd.name))
			continue
		}
		t := nd.stp.Replica().Tree()
		d := DumpState(t)
		if ref == "" {
			ref = d
		} else if d != ref {
			errs = append(errs, fmt.Errorf("%s differs from %s:\n%s\nvs\n%s", nd.name, w.nodes[0].name, d, ref))
		}
		for _, n := range t.Nodes() {
			if m := n.Missing(); !m.IsEmpty() {
				errs = append(errs, fmt.Errorf("%s: ticks of %s not contiguous: missing %s", nd.name, n.Name(), m))
			}
		}
		if up, active := nd.stp.Links(), nd.stp.Active(); w.cfg.BothDial && len(up) > 0 && len(active) != w.peerCount(nd) {
			errs = append(errs, fmt.Errorf("%s uses links %v of %v: want one per peer", nd.name, active, up))
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
		t := nd.stp.Replica().Tree()
		for _, k := range slices.Sorted(maps.Keys(paths)) {
			e := t.Get(paths[k])
			r, hasReq := req[k]
			switch {
			case e == nil || len(e.Chain()) == 0: // never there, or a purged tombstone
				if hasReq && r.Value != nil && !w.deletedAfter(t, r) {
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

// deletedAfter reports whether an acknowledged deletion that beats ev
// survived (t knows its link): then ev's entry may be a purged tombstone.
func (w *World) deletedAfter(t *tree.Tree, ev tree.Event) bool {
	for _, a := range w.acks {
		if a.ev.Value == nil && a.ev.Path.Equal(ev.Path) && a.ev.Version().Compare(ev.Version()) > 0 {
			h := a.ev.Chain[0]
			if t.Node(h.Node).Knows(h.Tick) {
				return true
			}
		}
	}
	return false
}

// peerCount is how many peers node nd has links to (the hub counts once).
func (w *World) peerCount(nd *simNode) int {
	peers := make(map[string]bool)
	for _, id := range nd.conns {
		c := w.conns[id]
		if c.hub {
			peers["hub"] = true
			continue
		}
		for _, j := range c.nodes {
			if w.nodes[j] != nd {
				peers[w.nodes[j].name] = true
			}
		}
	}
	return len(peers)
}

func mustValue(e *tree.Entry) []byte { v, _ := e.Value(); return v }
