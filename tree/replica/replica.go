package replica

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// ProtoVersion is the sync protocol version sent in hello.
const ProtoVersion = 1

// LinkID names one link of this node; the driver assigns them.
type LinkID int

// Config configures a Replica. Durations are in clock ticks (calls of Tick);
// the driver chooses the tick length (the node uses 100 ms).
type Config struct {
	// Node is this node's unique name.
	Node string
	// HashSeed seeds the tree's hash of path elements (tree.Config).
	HashSeed uint64
	// ChainLen bounds chains (default tree.DefaultChainLen).
	ChainLen int
	// HeartbeatTicks: send a heartbeat every this many ticks (default 10).
	HeartbeatTicks int
	// LiveTicks: a member counts as live if heard from within this many
	// ticks (default 35).
	LiveTicks int
	// MissingTicks: request missing ticks at most this often (default 10).
	MissingTicks int
	// PurgeTicks: look for purgeable tombstones this often (default 10).
	PurgeTicks int
	// BatchSize: updates per batch message when catching up (default 64).
	BatchSize int
	// MaxResend bounds the entries sent for one digest or missing request
	// (default 1<<20); the rest follows on the next request.
	MaxResend int
	// DigestTicks: send the digest on every link this often (default
	// 300), besides on link-up, so that a change lost on a link that
	// stayed up (a dropped message) is repaired.
	DigestTicks int
	// TickReserve and TockReserve: how many ticks and tocks one
	// reservation covers (defaults 1<<20 each). See Reservation.
	TickReserve uint64
	TockReserve uint64
	// HeartbeatRanges bounds the range sets in each heartbeat (default 8,
	// the newest ranges): this node's own skipped ticks (digests carry
	// them all), and per node the ticks seen above a gap (a tombstone
	// whose head lies in an older range waits for a digest-free proof
	// that never comes, so it is kept: safe, and rare).
	HeartbeatRanges int
	// NoReserve turns the reservation off: the node restarts at the tick
	// its log holds and declares nothing skipped. It exists only so that
	// tests can show what the reservation prevents; never set it.
	NoReserve bool
	// FreshStart, if not 0, is where a node starts whose store holds
	// nothing at all, not even a node record: a first start, or a data
	// directory that was lost (a new SD card) under a name peers still
	// hold ticks of. Its own tick starts there and every own tick below is
	// declared skipped, so that nothing it writes can reuse one of its
	// earlier life (peers send those back). Its tock starts at 0 as usual:
	// until it hears from a peer, its writes may lose against what it
	// wrote in that earlier life. The driver draws it at random from a
	// large range (see tree/node).
	FreshStart uint64
	// Volatile says that the node's store keeps no data (sync "none"):
	// its heartbeats then claim nothing about what it has seen, so that
	// no tombstone is purged on its word (what it has seen a crash
	// forgets).
	Volatile bool
	// Actor is the timing of MoaT-KV's ping group on shared links
	// (default wire.MoaTPing: a ping every 10 s, 2 s gap), and ActorOff
	// keeps this node out of the group. See actor.go.
	Actor    wire.ActorSetup
	ActorOff bool
	// TickSeconds is the length of one replica tick in seconds (default
	// 0.1), to convert the group's timing.
	TickSeconds float64
	// Seed seeds the group's random delays.
	Seed uint64
	// MoaTOnly turns edgekv's own catch-up off: no digests (on link-up,
	// periodic, after a loss), no ticks learnt from heartbeats and no
	// periodic info{missing}, so that only MoaT-KV's recovery (pings,
	// info{ticks}, info{missing} when "it" or recovering) finds what is
	// missing. For
	// tests, and to check a mixed network; never needed otherwise.
	MoaTOnly bool
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.ChainLen, tree.DefaultChainLen)
	def(&c.HeartbeatTicks, 10)
	def(&c.LiveTicks, 35)
	def(&c.MissingTicks, 10)
	def(&c.PurgeTicks, 10)
	def(&c.BatchSize, 64)
	def(&c.MaxResend, 1<<20)
	def(&c.DigestTicks, 300)
	def(&c.HeartbeatRanges, 8)
	if c.TickReserve == 0 {
		c.TickReserve = 1 << 20
	}
	if c.TockReserve == 0 {
		c.TockReserve = 1 << 20
	}
	if c.Actor.Cycle == 0 {
		c.Actor = wire.MoaTPing
	}
	if c.TickSeconds <= 0 {
		c.TickSeconds = 0.1
	}
}

// Message is one message to send on a link. Data must not be modified; it
// may be shared between messages. Vouch marks a message that makes a claim
// which must hold after a crash (this node's heartbeat, an info{known}):
// it may leave only once what it vouches for is durable (Ready.MustSync).
type Message struct {
	Link  LinkID
	Kind  wire.Kind
	Data  []byte
	Vouch bool
}

// Change tells local watchers that the entry at Path changed: a new value,
// a deletion (Value nil) or a purge of a tombstone (Purged).
type Change struct {
	Path   tree.Path
	Value  []byte
	Chain  tree.Chain
	Tock   uint64
	Purged bool
}

// Ready holds the outputs collected since the last call of Ready.
//
// The driver handles them in this order: first NodeRecord, if set, is
// saved durably (store.SaveNodeRecord) — if that fails the driver must stop
// without using anything else of this Ready; then Records are persisted;
// only then may Messages be sent, local writes be acknowledged and Changes
// be shown.
type Ready struct {
	// NodeRecord is a new reservation (see Reservation) to save before
	// anything else; nil if the reservation did not change.
	NodeRecord []byte
	Messages   []Message
	Records    [][]byte
	Changes    []Change
	// MustSync: some Messages (those marked Vouch) make claims that must
	// hold after a crash (this node's heartbeat says what it has seen;
	// info{known} says ticks are superseded), so everything persisted so
	// far, Records included, must be durable (fsynced) before they are
	// sent. The others may go at once.
	MustSync bool
}

// IsEmpty reports whether there is nothing to do.
func (rd Ready) IsEmpty() bool {
	return rd.NodeRecord == nil && len(rd.Messages) == 0 && len(rd.Records) == 0 && len(rd.Changes) == 0 && !rd.MustSync
}

// Member is what this node knows of another node from its heartbeats.
type Member struct {
	Node     string
	Tick     uint64 // the node's tick as of its last heartbeat
	Tock     uint64
	LastSeen uint64 // local clock tick when last heard
	Live     bool
	seq      uint64
	through  map[string]uint64
	seen     map[string]tree.RangeSet
}

// saw reports whether the member's last heartbeat says it has seen link l:
// l is within its contiguous known ticks, or within the ranges above them
// that it listed. Skipped ticks never count: a member that skipped a tick
// has not seen the change it may be.
func (m *Member) saw(l tree.Link) bool {
	return l.Tick <= m.through[l.Node] || m.seen[l.Node].Contains(l.Tick)
}

// LinkState describes one up link.
type LinkState struct {
	ID     LinkID
	Peer   string // from the peer's hello; "" until it arrives
	Synced bool   // the peer's digest has arrived (and what it lacked was sent)
	Shared bool   // a shared bus (a hub): MoaT-KV's recovery runs on it
	shared bool
}

// Stats counts what the replica did.
type Stats struct {
	Sent        map[wire.Kind]int
	Applied     int
	Lost        int
	Duplicate   int
	Relayed     int
	Malformed   int
	Purged      int
	MissingReqs int
	// HeadsExchanges counts heads lists sent because a peer had seen the
	// same changes but held other versions.
	HeadsExchanges int
}

// Replica is one node's sync state machine.
type Replica struct {
	cfg     Config
	t       *tree.Tree
	now     uint64
	epoch   uint64
	hbCount uint64
	links   map[LinkID]*LinkState
	members map[string]*Member
	out     Ready
	ticks   map[string]uint64 // tick raises to persist
	known   map[string]tree.RangeSet
	skips   map[string]tree.RangeSet // skipped ticks learnt, to persist
	res     wire.Reservation         // the reservation last handed out
	stats   Stats
	act     actor // MoaT-KV's ping group, on shared links
	// reasm joins MoaT-KV 0.70's chunked messages, per shared link.
	reasm map[LinkID]*wire.Reassembler
	// answers to info{missing} on shared links, sent a little later
	// (deferAnswer); rnd draws the delays and the ping group's.
	answers map[LinkID]*answer
	rnd     *rand.Rand
}

// New returns a replica with an empty tree. Call Restore before anything
// else to load persisted state.
func New(cfg Config) *Replica {
	cfg.setDefaults()
	return &Replica{
		cfg:     cfg,
		t:       tree.New(tree.Config{Self: cfg.Node, ChainLen: cfg.ChainLen, HashSeed: cfg.HashSeed}),
		links:   make(map[LinkID]*LinkState),
		members: make(map[string]*Member),
		ticks:   make(map[string]uint64),
		known:   make(map[string]tree.RangeSet),
		skips:   make(map[string]tree.RangeSet),
		stats:   Stats{Sent: make(map[wire.Kind]int)},
		reasm:   make(map[LinkID]*wire.Reassembler),
		answers: make(map[LinkID]*answer),
		rnd:     rand.New(rand.NewPCG(cfg.Seed, 0x6d6f6174)),
	}
}

// Tree gives read access to the replica's tree. Callers must not modify it.
func (r *Replica) Tree() *tree.Tree { return r.t }

// Name returns the node name.
func (r *Replica) Name() string { return r.cfg.Node }

// Now returns the number of clock ticks seen.
func (r *Replica) Now() uint64 { return r.now }

// Stats returns a copy of the counters.
func (r *Replica) Stats() Stats {
	s := r.stats
	s.Sent = make(map[wire.Kind]int, len(r.stats.Sent))
	for k, v := range r.stats.Sent {
		s.Sent[k] = v
	}
	return s
}

// Ready returns the collected outputs and starts a new collection.
func (r *Replica) Ready() Ready {
	r.flushState()
	rd := r.out
	r.out = Ready{}
	return rd
}

// recycleCap bounds the slices Recycle keeps: one large step (a catch-up)
// does not keep its arrays for ever.
const recycleCap = 1024

// Recycle hands back the slices of a Ready the caller is done with, for
// later Readys to reuse (fewer allocations per local write). The caller
// must not use rd's slices afterwards; what their elements point to
// (records, values, message data) is not reused.
func (r *Replica) Recycle(rd Ready) {
	if r.out.Records == nil && cap(rd.Records) <= recycleCap {
		clear(rd.Records)
		r.out.Records = rd.Records[:0]
	}
	if r.out.Changes == nil && cap(rd.Changes) <= recycleCap {
		clear(rd.Changes)
		r.out.Changes = rd.Changes[:0]
	}
	if r.out.Messages == nil && cap(rd.Messages) <= recycleCap {
		clear(rd.Messages)
		r.out.Messages = rd.Messages[:0]
	}
}

// HasReady reports whether Ready would return anything.
func (r *Replica) HasReady() bool {
	return !r.out.IsEmpty() || len(r.ticks) > 0 || len(r.known) > 0 || len(r.skips) > 0
}

func (r *Replica) send(id LinkID, k wire.Kind, data []byte) {
	r.out.Messages = append(r.out.Messages, Message{Link: id, Kind: k, Data: data})
	r.stats.Sent[k]++
}

// broadcast sends data on every up link except skip (-1: none), in link
// order so runs are deterministic.
func (r *Replica) broadcast(k wire.Kind, data []byte, skip LinkID) int {
	n := 0
	for _, id := range r.linkIDs() {
		if id != skip {
			r.send(id, k, data)
			n++
		}
	}
	return n
}

func (r *Replica) linkIDs() []LinkID {
	ids := make([]LinkID, 0, len(r.links))
	for id := range r.links {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Links returns the up links in ID order.
func (r *Replica) Links() []LinkState {
	out := make([]LinkState, 0, len(r.links))
	for _, id := range r.linkIDs() {
		ls := *r.links[id]
		ls.Shared = ls.shared
		out = append(out, ls)
	}
	return out
}

func (r *Replica) record(tag byte, enc func([]byte) []byte) []byte {
	return r.recordSized(tag, 64, enc)
}

// recordSized is record with room for size bytes from the start.
func (r *Replica) recordSized(tag byte, size int, enc func([]byte) []byte) []byte {
	rec := enc(append(make([]byte, 0, size), tag))
	r.out.Records = append(r.out.Records, rec)
	return rec
}

// updateSize is about the size of ev's update record (map keys, path,
// value, chain, tock), so that encoding it takes one allocation.
func updateSize(ev tree.Event) int {
	n := 48 + len(ev.Value) + 12*len(ev.Path) + 16*len(ev.Chain)
	for _, e := range ev.Path {
		n += len(e.StrVal())
	}
	for _, l := range ev.Chain {
		n += len(l.Node)
	}
	return n
}

func (r *Replica) change(ev tree.Event) {
	r.out.Changes = append(r.out.Changes, Change{Path: ev.Path, Value: ev.Value, Chain: ev.Chain, Tock: ev.Tock})
}

// Set writes value (msgpack) at p as this node. The event is persisted and
// sent to every link through Ready. changed is false for an idempotent
// write that stored nothing.
func (r *Replica) Set(p tree.Path, value []byte, c tree.Cond) (ev tree.Event, changed bool, err error) {
	r.reserve()
	ev, changed, err = r.t.Set(p, slices.Clone(value), c)
	if err != nil || !changed {
		return ev, changed, err
	}
	r.local(ev)
	return ev, true, nil
}

// Delete deletes the value at p as this node.
func (r *Replica) Delete(p tree.Path, c tree.Cond) (tree.Event, error) {
	r.reserve()
	ev, err := r.t.Delete(p, c)
	if err != nil {
		return ev, err
	}
	r.local(ev)
	return ev, nil
}

// reserve makes sure that the next local change's tick and tock are
// covered by the reservation handed out; if not, it hands out a new one
// (Ready.NodeRecord) covering the next TickReserve ticks and TockReserve
// tocks. The driver saves it durably before it sends or acknowledges
// anything, so no tick or tock above a saved reservation is ever seen
// outside this process: a restart above the saved reservation cannot reuse
// one.
func (r *Replica) reserve() {
	if r.cfg.NoReserve {
		return
	}
	if r.t.NextTick() <= r.res.Tick && r.t.Tock() < r.res.Tock {
		return
	}
	r.newReservation()
}

func (r *Replica) newReservation() {
	r.res = wire.Reservation{
		Node:  r.cfg.Node,
		Epoch: r.epoch,
		Tick:  r.t.Node(r.cfg.Node).Tick() + r.cfg.TickReserve,
		Tock:  r.t.Tock() + r.cfg.TockReserve,
	}
	r.out.NodeRecord = wire.AppendReservation(nil, r.res)
}

// Reservation returns the reservation last handed out in Ready.NodeRecord:
// the node issues no tick above Tick and no tock above Tock before it
// hands out a higher one.
func (r *Replica) Reservation() wire.Reservation { return r.res }

func (r *Replica) local(ev tree.Event) {
	r.recordSized(recEvent, updateSize(ev), func(b []byte) []byte { return wire.AppendUpdate(b, ev) })
	r.relay(ev, nil, -1)
	r.change(ev)
}

// relay sends ev on every up link but skip whose peer is not named in via
// (the nodes it has already been sent to), and names this node and all its
// peers in the via list it sends along. In a full mesh an update then
// crosses each link once instead of being relayed back and forth; a peer
// that misses it because a link failed finds the gap from heartbeats.
// It returns how many links it sent on.
func (r *Replica) relay(ev tree.Event, via []string, skip LinkID) int {
	targets := make([]LinkID, 0, len(r.links))
	next := append(make([]string, 0, len(via)+len(r.links)+1), via...)
	next = append(next, r.cfg.Node)
	for _, id := range r.linkIDs() {
		peer := r.links[id].Peer
		if peer != "" && !slices.Contains(next, peer) {
			next = append(next, peer)
		}
		if id == skip || (peer != "" && slices.Contains(via, peer)) {
			continue
		}
		targets = append(targets, id)
	}
	if len(targets) == 0 {
		return 0
	}
	data := wire.AppendUpdateVia(nil, ev, next)
	for _, id := range targets {
		r.send(id, wire.KindUpdate, data)
	}
	return len(targets)
}

// LinkUp registers a new link and starts the catch-up: hello and digest.
func (r *Replica) LinkUp(id LinkID) {
	r.links[id] = &LinkState{ID: id}
	r.Handshake(id)
}

// Handshake sends hello and digest on link id again (the driver calls it
// when the connection under an up link was replaced): the peer then sends
// whatever this node lacks, and this node what the peer lacks.
func (r *Replica) Handshake(id LinkID) {
	if r.links[id] == nil {
		return
	}
	self := r.t.Node(r.cfg.Node)
	r.send(id, wire.KindHello, wire.AppendHello(nil, wire.Hello{Proto: ProtoVersion, Node: r.cfg.Node, Tick: self.Tick(), Tock: r.t.Tock()}))
	if !r.cfg.MoaTOnly {
		r.send(id, wire.KindDigest, wire.AppendDigest(nil, r.digest()))
	}
}

// LinkDown forgets a link.
func (r *Replica) LinkDown(id LinkID) {
	delete(r.links, id)
	delete(r.answers, id)
	delete(r.reasm, id)
}

func (r *Replica) digest() wire.Digest {
	d := wire.Digest{Node: r.cfg.Node, Tick: r.t.Node(r.cfg.Node).Tick(), Tock: r.t.Tock(), Nodes: make(map[string]wire.NodeDigest)}
	for _, n := range r.t.Nodes() {
		d.Nodes[n.Name()] = wire.NodeDigest{Tick: n.Tick(), Known: n.Known(), Skipped: n.Skipped(), Heads: n.HeadsHash()}
	}
	return d
}

// SendDigest sends this node's digest on link id, so that the peer sends
// what this node lacks (the driver calls it after dropping a message that
// arrived on the link).
func (r *Replica) SendDigest(id LinkID) {
	if r.links[id] != nil && !r.cfg.MoaTOnly {
		r.send(id, wire.KindDigest, wire.AppendDigest(nil, r.digest()))
	}
}

// ErrUnknownLink is returned by Step for a link that is not up.
var ErrUnknownLink = errors.New("replica: message on a link that is not up")

// Step handles one message received on link id. A malformed message
// returns an error and changes nothing.
func (r *Replica) Step(id LinkID, k wire.Kind, data []byte) error {
	if r.links[id] == nil {
		return fmt.Errorf("%w (link %d)", ErrUnknownLink, id)
	}
	if r.links[id].shared && (k == wire.KindUpdate || k == wire.KindInfo) {
		// MoaT-KV 0.70 cuts messages over 450 bytes into chunks.
		re := r.reasm[id]
		if re == nil {
			re = wire.NewReassembler(0, 0)
			r.reasm[id] = re
		}
		whole, done, err := re.Add(data)
		if err != nil {
			r.stats.Malformed++
			return fmt.Errorf("replica: %s on link %d: %w", k, id, err)
		}
		if !done {
			return nil
		}
		data = whole
	}
	err := r.step(id, k, data)
	if err != nil {
		r.stats.Malformed++
		return fmt.Errorf("replica: %s on link %d: %w", k, id, err)
	}
	return nil
}

func (r *Replica) step(id LinkID, k wire.Kind, data []byte) error {
	switch k {
	case wire.KindUpdate:
		u, err := wire.DecodeUpdate(data)
		if err != nil {
			return err
		}
		return r.stepUpdate(id, u.Event, u.Via)
	case wire.KindBatch:
		ups, err := wire.DecodeBatch(data)
		if err != nil {
			return err
		}
		// Each update stands on its own: one that is refused changes
		// nothing and costs none of the others.
		var errs []error
		for i, b := range ups {
			u, err := wire.DecodeUpdate(b)
			if err == nil {
				err = r.stepUpdate(id, u.Event, u.Via)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("batch element %d of %d: %w", i, len(ups), err))
				if len(errs) > 1 {
					r.stats.Malformed++ // Step counts the first
				}
			}
		}
		return errors.Join(errs...)
	case wire.KindInfo:
		in, err := wire.DecodeInfo(data)
		if err != nil {
			return err
		}
		r.stepInfo(id, in)
		return nil
	case wire.KindHello:
		h, err := wire.DecodeHello(data)
		if err != nil {
			return err
		}
		if h.Proto != ProtoVersion {
			return fmt.Errorf("peer %q speaks protocol %d, this node %d", h.Node, h.Proto, ProtoVersion)
		}
		r.links[id].Peer = h.Node
		r.t.SeeTock(h.Tock)
		return nil
	case wire.KindDigest:
		d, err := wire.DecodeDigest(data)
		if err != nil {
			return err
		}
		r.stepDigest(id, d)
		return nil
	case wire.KindHeartbeat:
		hb, err := wire.DecodeHeartbeat(data)
		if err != nil {
			return err
		}
		r.stepHeartbeat(id, hb, data)
		return nil
	case wire.KindHeads:
		h, err := wire.DecodeHeads(data)
		if err != nil {
			return err
		}
		r.stepHeads(id, h)
		return nil
	case wire.KindPing:
		m, err := wire.DecodeActor(data)
		if err != nil {
			return err
		}
		r.stepPing(m)
		return nil
	}
	return fmt.Errorf("%w: unknown message kind %d", tree.ErrMalformed, k)
}

func (r *Replica) stepUpdate(id LinkID, ev tree.Event, via []string) error {
	if r.answers[id] != nil {
		for _, l := range ev.Chain {
			r.answered(id, l.Node, tree.RangeSetOf(tree.Range{Start: l.Tick, End: l.Tick + 1}))
		}
	}
	if ev.Value != nil {
		ev.Value = slices.Clone(ev.Value) // never keep the driver's buffer
	}
	out, err := r.t.Apply(ev)
	if err != nil {
		return err
	}
	switch out {
	case tree.Known:
		r.stats.Duplicate++
		// Its older links are superseded here too: a node that had lost
		// them (a node dropped, then brought back by a peer's digest)
		// would otherwise ask for them forever.
		for _, l := range ev.Chain[1:] {
			if n := r.t.LookupNode(l.Node); n == nil || !n.Knows(l.Tick) {
				r.markKnown(l.Node, tree.RangeSetOf(tree.Range{Start: l.Tick, End: l.Tick + 1}))
			}
		}
		return nil
	case tree.Lost:
		r.stats.Lost++
	case tree.Applied:
		r.stats.Applied++
		r.change(ev)
	}
	// New to us: persist it and pass it on (never back to its source).
	r.recordSized(recEvent, updateSize(ev), func(b []byte) []byte { return wire.AppendUpdate(b, ev) })
	if r.relay(ev, via, id) > 0 {
		r.stats.Relayed++
	}
	return nil
}

func (r *Replica) stepInfo(id LinkID, in wire.Info) {
	if in.Node == r.cfg.Node {
		return
	}
	r.t.SeeTock(in.Tock)
	r.recoveryHeard(in)
	for _, name := range sortedKeys(in.Known) {
		r.answered(id, name, in.Known[name])
	}
	r.applyInfo(in)
	if len(in.Missing) > 0 {
		want := make(map[string]tree.RangeSet, len(in.Missing))
		for name, rs := range in.Missing {
			if n := r.t.LookupNode(name); n != nil {
				want[name] = answerable(n, rs)
			}
		}
		if r.links[id].shared {
			r.deferAnswer(id, want)
		} else {
			r.resend(id, want)
		}
	}
}

// applyInfo takes what an info message says of node state: ticks, known,
// skipped, deleted, node_drop.
func (r *Replica) applyInfo(in wire.Info) {
	for _, name := range sortedKeys(in.Ticks) {
		r.raiseTick(name, in.Ticks[name])
	}
	for _, name := range sortedKeys(in.Known) {
		// Ticks sent as both known (for MoaT-KV) and skipped are skipped.
		r.markKnown(name, in.Known[name].Minus(in.Skipped[name]))
	}
	for _, name := range sortedKeys(in.Skipped) {
		r.skip(name, in.Skipped[name])
	}
	for _, name := range sortedKeys(in.Deleted) {
		r.reportDeleted(name, in.Deleted[name])
	}
	for _, name := range in.NodeDrop {
		r.dropNode(name) // only if it heads nothing, as MoaT-KV
	}
}

func (r *Replica) raiseTick(name string, tick uint64) {
	n := r.t.Node(name)
	if tick > n.Tick() {
		r.t.RaiseTick(name, tick)
		r.ticks[name] = tick
	}
}

func (r *Replica) markKnown(name string, rs tree.RangeSet) {
	n := r.t.Node(name)
	add := rs.Minus(n.Known())
	if add.IsEmpty() {
		return
	}
	r.t.MarkSuperseded(name, add)
	k := r.known[name]
	k.AddSet(add)
	r.known[name] = k
}

// skip records ticks of node name as skipped (and persists what is new).
func (r *Replica) skip(name string, rs tree.RangeSet) {
	if rs.IsEmpty() {
		return
	}
	add := r.t.Skip(name, rs)
	if add.IsEmpty() {
		return
	}
	k := r.skips[name]
	k.AddSet(add)
	r.skips[name] = k
}

// flushState turns pending tick raises, known marks and skips into records.
func (r *Replica) flushState() {
	if len(r.skips) > 0 {
		in := wire.Info{Node: r.cfg.Node, Skipped: r.skips}
		r.record(recSkip, func(b []byte) []byte { return wire.AppendInfo(b, in) })
		r.skips = make(map[string]tree.RangeSet)
	}
	if len(r.ticks) > 0 {
		in := wire.Info{Node: r.cfg.Node, Ticks: r.ticks}
		r.record(recTicks, func(b []byte) []byte { return wire.AppendInfo(b, in) })
		r.ticks = make(map[string]uint64)
	}
	if len(r.known) > 0 {
		in := wire.Info{Node: r.cfg.Node, Known: r.known}
		r.record(recKnown, func(b []byte) []byte { return wire.AppendInfo(b, in) })
		r.known = make(map[string]tree.RangeSet)
	}
}

func (r *Replica) stepDigest(id LinkID, d wire.Digest) {
	r.links[id].Synced = true
	r.t.SeeTock(d.Tock)
	for _, name := range sortedKeys(d.Nodes) {
		r.raiseTick(name, d.Nodes[name].Tick)
		r.skip(name, d.Nodes[name].Skipped)
	}
	// What the peer lacks: every tick we have seen that it has not.
	want := make(map[string]tree.RangeSet)
	same := true // both have seen the same ticks
	for _, n := range r.t.Nodes() {
		lack := n.Known().Minus(d.Nodes[n.Name()].Known)
		if !lack.IsEmpty() {
			want[n.Name()] = lack
		}
		same = same && n.Known().Equal(d.Nodes[n.Name()].Known)
	}
	for name, nd := range d.Nodes {
		if n := r.t.LookupNode(name); n == nil && !nd.Known.IsEmpty() {
			same = false
		}
	}
	r.resend(id, want)
	if !same {
		return
	}
	// Having seen the same changes, both must hold the same versions.
	// If they do not (a node was told a tick was superseded by a version
	// that a crash then lost), list our heads where the hashes differ: the
	// peer sends the entries it heads that we lack, and answers with its
	// own list so that we do the same.
	if h := r.headsWhereDifferent(d.Nodes); len(h) > 0 {
		r.stats.HeadsExchanges++
		r.send(id, wire.KindHeads, wire.AppendHeads(nil, wire.Heads{Node: r.cfg.Node, Nodes: h}))
	}
}

// headsWhereDifferent lists our head ticks for every node whose heads hash
// differs from the peer's.
func (r *Replica) headsWhereDifferent(peer map[string]wire.NodeDigest) map[string]tree.RangeSet {
	out := make(map[string]tree.RangeSet)
	for _, n := range r.t.Nodes() {
		if n.HeadsHash() != peer[n.Name()].Heads {
			out[n.Name()] = n.Heads()
		}
	}
	for name, nd := range peer {
		if r.t.LookupNode(name) == nil && nd.Heads != 0 {
			out[name] = tree.RangeSet{}
		}
	}
	return out
}

// stepHeads sends the entries this node heads that the peer's list lacks
// (their current versions), and answers a list that is not a reply with
// its own heads for the same nodes.
func (r *Replica) stepHeads(id LinkID, h wire.Heads) {
	want := make(map[string]tree.RangeSet)
	for _, name := range sortedKeys(h.Nodes) {
		if n := r.t.LookupNode(name); n != nil {
			if lack := n.Heads().Minus(h.Nodes[name]); !lack.IsEmpty() {
				want[name] = lack
			}
		}
	}
	r.resend(id, want)
	if h.Reply {
		return
	}
	mine := make(map[string]tree.RangeSet, len(h.Nodes))
	for name := range h.Nodes {
		if n := r.t.LookupNode(name); n != nil {
			mine[name] = n.Heads()
		} else {
			mine[name] = tree.RangeSet{}
		}
	}
	r.send(id, wire.KindHeads, wire.AppendHeads(nil, wire.Heads{Node: r.cfg.Node, Reply: true, Nodes: mine}))
}

// resend sends on link id the current version of every entry that holds one
// of the wanted ticks, and info{known} for wanted ticks that are superseded.
// Wanted ticks this node knows only as skipped go out as skipped, and also
// as known for MoaT-KV's sake (stepInfo reads such a tick as skipped). On a
// shared link every update is its own message: MoaT-KV reads no batches.
func (r *Replica) resend(id LinkID, want map[string]tree.RangeSet) {
	if l := r.links[id]; l != nil && l.shared {
		// One update per message on a shared link: paced (flushAnswer).
		r.queueAnswer(id, want, 0)
		r.flushAnswer(id)
		return
	}
	r.resendNow(id, want)
}

// resendNow is resend without pacing.
func (r *Replica) resendNow(id LinkID, want map[string]tree.RangeSet) {
	seen := make(map[*tree.Entry]bool)
	var batch [][]byte
	superseded := make(map[string]tree.RangeSet)
	skipped := make(map[string]tree.RangeSet)
	shared := r.links[id] != nil && r.links[id].shared
	sent := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if len(batch) == 1 || shared {
			for _, b := range batch {
				r.send(id, wire.KindUpdate, b)
			}
		} else {
			r.send(id, wire.KindBatch, wire.AppendBatch(nil, batch))
		}
		batch = batch[:0:0]
	}
	for _, name := range sortedKeys(want) {
		n := r.t.LookupNode(name)
		if n == nil {
			continue
		}
		w := want[name]
		present := n.Present()
		// Range arithmetic first: a skipped reservation is a million
		// ticks, and only the ticks that head or sit on entries need a
		// look each.
		if sup := w.Intersect(n.Known()).Minus(present); !sup.IsEmpty() {
			superseded[name] = sup
		}
		if sk := w.Intersect(n.Skipped()).Minus(n.Known()); !sk.IsEmpty() {
			skipped[name] = sk
			superseded[name] = superseded[name].Union(sk)
		}
		w.Intersect(present).All(func(t uint64) bool {
			e := n.Entry(t)
			if e == nil || seen[e] {
				return true
			}
			if sent >= r.cfg.MaxResend {
				return false
			}
			seen[e] = true
			sent++
			batch = append(batch, wire.AppendUpdate(nil, e.Event(r.cfg.ChainLen)))
			if len(batch) >= r.cfg.BatchSize {
				flush()
			}
			return true
		})
	}
	flush()
	if len(superseded) > 0 {
		r.out.MustSync = true
		r.send(id, wire.KindInfo, wire.AppendInfo(nil, wire.Info{Node: r.cfg.Node, Tick: r.t.Node(r.cfg.Node).Tick(), Tock: r.t.Tock(), Known: superseded, Skipped: skipped}))
		r.out.Messages[len(r.out.Messages)-1].Vouch = true
	}
}

func (r *Replica) stepHeartbeat(id LinkID, hb wire.Heartbeat, data []byte) {
	if hb.Node == r.cfg.Node {
		return
	}
	m := r.members[hb.Node]
	if m == nil {
		m = &Member{Node: hb.Node}
		r.members[hb.Node] = m
	}
	if hb.Seq <= m.seq {
		return // seen already: do not relay again
	}
	m.seq, m.Tick, m.Tock, m.LastSeen, m.through = hb.Seq, hb.Tick, hb.Tock, r.now, hb.Through
	m.seen = hb.Seen
	r.t.SeeTock(hb.Tock)
	if !r.cfg.MoaTOnly {
		r.raiseTick(hb.Node, hb.Tick)
	}
	r.skip(hb.Node, hb.Skipped)
	r.broadcast(wire.KindHeartbeat, data, id)
}

// Members returns what is known of other nodes, sorted by name.
func (r *Replica) Members() []Member {
	out := make([]Member, 0, len(r.members))
	for _, name := range sortedKeys(r.members) {
		m := *r.members[name]
		m.Live = r.now-m.LastSeen <= uint64(r.cfg.LiveTicks)
		out = append(out, m)
	}
	return out
}

// Tick advances the replica's clock by one tick: heartbeats, requests for
// missing ticks and tombstone purges happen here.
func (r *Replica) Tick() {
	r.now++
	if r.now%uint64(r.cfg.HeartbeatTicks) == 0 {
		r.heartbeat()
	}
	if r.now%uint64(r.cfg.MissingTicks) == 0 {
		r.requestMissing()
	}
	if r.now%uint64(r.cfg.PurgeTicks) == 0 {
		r.purge()
	}
	r.actorTick()
	r.answerTick()
	if r.now%uint64(r.cfg.DigestTicks) == 0 && len(r.links) > 0 && !r.cfg.MoaTOnly {
		data := wire.AppendDigest(nil, r.digest())
		r.broadcast(wire.KindDigest, data, -1)
	}
}

func (r *Replica) heartbeat() {
	if len(r.links) == 0 {
		return
	}
	r.hbCount++
	hb := wire.Heartbeat{
		Node:    r.cfg.Node,
		Tick:    r.t.Node(r.cfg.Node).Tick(),
		Tock:    r.t.Tock(),
		Seq:     r.epoch<<32 | r.hbCount,
		Through: make(map[string]uint64),
	}
	k := r.cfg.HeartbeatRanges
	for _, n := range r.t.Nodes() {
		if r.cfg.Volatile {
			break // claims nothing it has seen
		}
		known := n.Known()
		hb.Through[n.Name()] = known.Through()
		if above := known.Ranges(); len(above) > 1 || (len(above) == 1 && above[0].Start > 1) {
			if above[0].Start == 1 {
				above = above[1:]
			}
			if hb.Seen == nil {
				hb.Seen = make(map[string]tree.RangeSet)
			}
			hb.Seen[n.Name()] = tree.RangeSetOf(above[max(0, len(above)-k):]...)
		}
	}
	own := r.t.Node(r.cfg.Node).Skipped().Ranges()
	hb.Skipped = tree.RangeSetOf(own[max(0, len(own)-k):]...)
	r.out.MustSync = true
	n := r.broadcast(wire.KindHeartbeat, wire.AppendHeartbeat(nil, hb), -1)
	for i := len(r.out.Messages) - n; i < len(r.out.Messages); i++ {
		r.out.Messages[i].Vouch = true
	}
}

// Missing returns, per node, the ticks known to exist but not seen here.
func (r *Replica) Missing() map[string]tree.RangeSet {
	out := make(map[string]tree.RangeSet)
	for _, n := range r.t.Nodes() {
		if m := n.Missing(); !m.IsEmpty() {
			out[n.Name()] = m
		}
	}
	return out
}

func (r *Replica) requestMissing() {
	if len(r.links) == 0 || r.cfg.MoaTOnly {
		return // MoaTOnly: only when "it" and in a recovery, as MoaT-KV
	}
	r.sendMissing(false)
}

// DeleterPath is where the deleter group lives in the meta tree.
var DeleterPath = tree.Path{tree.Nil(), tree.Str("actor"), tree.Str("del")}

// DeleterGroup returns the configured deleter group (sorted), or nil.
func (r *Replica) DeleterGroup() []string {
	e := r.t.Get(DeleterPath)
	if e == nil {
		return nil
	}
	v, ok := e.Value()
	if !ok {
		return nil
	}
	nodes, err := decodeDeleter(v)
	if err != nil {
		return nil
	}
	return nodes
}

// stable reports whether the change l can be forgotten: every member of the
// deleter group has seen it, and this node has seen (or knows skipped)
// every change those members had made when they reported it. Any change
// concurrent with l by a group member is then already known here, so no
// late copy can revive what l deleted.
//
// A member has seen l only if l is within the ticks it actually received
// (Member.saw): a skipped tick is covered for waiting, never for having
// seen the deletion it may be.
func (r *Replica) stable(group []string, l tree.Link) bool {
	for _, g := range group {
		if g == r.cfg.Node {
			if !r.t.Node(l.Node).Knows(l.Tick) {
				return false
			}
			continue
		}
		m := r.members[g]
		if m == nil || !m.saw(l) {
			return false
		}
		if r.t.Node(g).CoveredThrough() < m.Tick {
			return false
		}
	}
	return true
}

func (r *Replica) purge() {
	group := r.DeleterGroup()
	if len(group) == 0 || r.t.NumTombstones() == 0 {
		return
	}
	for _, p := range r.t.Tombstones() {
		e := r.t.Get(p)
		ev := e.Event(0)
		if r.t.Purge(p, func(l tree.Link) bool { return r.stable(group, l) }) {
			r.stats.Purged++
			r.record(recPurge, func(b []byte) []byte { return wire.AppendEntry(b, ev) })
			r.out.Changes = append(r.out.Changes, Change{Path: p, Chain: ev.Chain, Tock: ev.Tock, Purged: true})
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Import applies an event given by a client (MoaT-KV's update action, or a
// save file being loaded) exactly as if a peer had sent it: with its own
// chain and tock, persisted and relayed to every link. It reports whether
// the event was new here. A client cannot speak for this node: an event
// whose chain holds a link of this node above its own tick, or that would
// change this node's status entries, is refused with tree.ErrPermission
// and changes nothing.
func (r *Replica) Import(ev tree.Event) (bool, error) {
	own := r.t.Node(r.cfg.Node).Tick()
	for _, l := range ev.Chain {
		if l.Node == r.cfg.Node && l.Tick > own {
			return false, fmt.Errorf("%w: %s would take this node's tick past %d: only the node itself makes its changes", tree.ErrPermission, l, own)
		}
	}
	if OwnStatus(r.cfg.Node, ev.Path) {
		return false, fmt.Errorf("%w: %s: the node's status entries are written by the node alone", tree.ErrPermission, ev.Path)
	}
	if ev.Value != nil {
		ev.Value = slices.Clone(ev.Value)
	}
	before := r.stats.Duplicate
	if err := r.stepUpdate(-1, ev, nil); err != nil {
		return false, err
	}
	return r.stats.Duplicate == before, nil
}

// StatusPrefix is where nodes keep their status entries: (".edgekv",
// "status", node, …).
var StatusPrefix = tree.Path{tree.Str(".edgekv"), tree.Str("status")}

// OwnStatus reports whether p is among node's status entries.
func OwnStatus(node string, p tree.Path) bool {
	return len(p) >= 3 && p.HasPrefix(StatusPrefix) && p[2] == tree.Str(node)
}

// ImportInfo applies node state from a client or a save file: ticks raise
// what is known of nodes, known marks ticks as seen and superseded. It
// checks everything first and changes nothing if it refuses: a client
// cannot move this node's own tick or mark its ticks above it, nor raise
// the tick of a node unknown here without saying which of its ticks it
// knows (that would plant ticks nobody made, missing forever).
func (r *Replica) ImportInfo(ticks map[string]uint64, known map[string]tree.RangeSet) error {
	own := r.t.Node(r.cfg.Node).Tick()
	for _, name := range sortedKeys(ticks) {
		switch t := ticks[name]; {
		case name == r.cfg.Node && t > own:
			return fmt.Errorf("%w: tick %d of this node is past its own tick %d: only the node itself makes its changes", tree.ErrPermission, t, own)
		case r.t.LookupNode(name) == nil && known[name].IsEmpty() && t > 0:
			return fmt.Errorf("%w: node %q is not known here: give the ticks of it that are known with its tick", tree.ErrInvalidValue, name)
		}
	}
	for _, name := range sortedKeys(known) {
		if name == r.cfg.Node && known[name].Max() > own {
			return fmt.Errorf("%w: ticks %s of this node go past its own tick %d", tree.ErrPermission, known[name], own)
		}
	}
	for _, name := range sortedKeys(ticks) {
		r.raiseTick(name, ticks[name])
	}
	for _, name := range sortedKeys(known) {
		r.markKnown(name, known[name])
	}
	return nil
}
