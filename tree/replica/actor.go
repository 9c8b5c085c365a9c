package replica

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// MoaT-KV's recovery on a shared bus (reference spec §3.3–3.5).
//
// On a link that the driver marks shared (LinkUpShared: a hub, where
// MoaT-KV servers may listen), the replica takes part in MoaT-KV's ping
// group as one more member, speaking asyncactor's protocol: init and vers
// when the first shared link comes up, then pings that carry
// [tock, tick] and the group's history, in asyncactor's turn order and
// timing. From the group it takes what a MoaT-KV server takes:
//
//   - every ping or hist raises the pinger's tick (and this node's tock);
//     ticks so learnt that this node lacks are asked for with info{missing}
//     (requestMissing, and at once when this node is "it");
//   - two pings that disagree on the history mean a healed split (or a
//     newcomer): a recovery runs MoaT-KV's steps with its delays — info
//     {ticks} for every node known, then info{missing} (sent even when
//     empty), each left to an earlier member of this side if one sends it
//     first; and a hist message re-sends this side's last ping so that the
//     other side sees the split too;
//   - info{missing} on a shared link is answered after a random delay of
//     up to half a gap (MoaT-KV waits too), with the entries that hold the
//     ticks (one update each: MoaT-KV does not read edgekv's batches) and
//     info{known} for the rest; ticks that another node re-sent or
//     declared known meanwhile are left out, so that the nodes on a bus do
//     not all send the same entries.
//
// A MoaT-KV server learns this node's tick from its pings, and the ticks of
// every node this node knows from its info{ticks}, and asks for what it
// lacks with info{missing}. Ticks this node only knows as skipped (DESIGN.md
// §2 crash safety) are answered as "known" for MoaT-KV, which has no such
// notion, and as "skipped" for edgekv nodes in the same message.
//
// Time is counted in replica ticks; Config.TickSeconds converts the
// group's seconds. Randomness comes from Config.Seed, so runs are
// repeatable.

// actorMaxQueue bounds the messages held back until the first ping (as
// asyncactor's reader queue does).
const actorMaxQueue = 99

// actorMaxValues bounds the pingers whose last value is kept: a bus that
// floods pings under ever new names cannot grow it without bound (a
// pinger beyond it counts as having no value).
const actorMaxValues = 4096

type actor struct {
	on        bool   // init and vers are out; the group runs
	startAt   uint64 // when the first ping goes out
	pinged    bool   // the first ping went out
	queue     []wire.ActorMsg
	setup     wire.ActorSetup
	history   []string
	values    map[string]wire.ActorValue
	tagged    int    // 0 idle, 2 waiting to be "it", 3 "it"
	tDest     uint64 // when the tagged state moves on
	nextPing  uint64
	countNot  int
	versAt    uint64 // a delayed vers to send (0: none)
	hist      *histSend
	recs      []*recovery
	rnd       *rand.Rand
	collision int // init messages under this node's name from elsewhere
	tags      int
	recovered int
}

// histSend is a hist message to send unless the node it re-sends pings
// first (asyncactor's _send_delay_ping).
type histSend struct {
	node    string
	at      uint64
	history []string
}

// recovery is one run of MoaT-KV's recover_split steps 1 and 2.
type recovery struct {
	local  []string // this side's history when the split healed
	remote []string
	prio   int
	step   int    // 1: ticks next, 2: missing next
	at     uint64 // when this node sends the next step itself
	// missing: this side's info{missing} was heard already (during step
	// 1), so step 2 is done when it comes.
	missing bool
}

// ActorStats is what the ping group did, for tests and status.
type ActorStats struct {
	History    []string // the group's last pingers, most recent first
	Tags       int      // times this node was "it"
	Recoveries int      // healed splits seen
	Collisions int      // init messages under this node's name from another process
}

func (r *Replica) actorOn() bool { return !r.cfg.ActorOff }

// secs converts seconds of the group's timing to replica ticks (at least 1).
func (r *Replica) secs(s float64) uint64 {
	return uint64(max(1, math.Ceil(s/r.cfg.TickSeconds)))
}

// LinkUpShared registers a link to a shared bus (a hub): like LinkUp, and
// the replica also takes part in MoaT-KV's ping group on it (unless
// Config.ActorOff). On a shared link catch-up updates are sent one per
// message.
func (r *Replica) LinkUpShared(id LinkID) {
	r.LinkUp(id)
	r.links[id].shared = true
	if r.actorOn() && !r.act.on {
		r.actorStart()
	}
}

func (r *Replica) sharedIDs() []LinkID {
	var ids []LinkID
	for _, id := range r.linkIDs() {
		if r.links[id].shared {
			ids = append(ids, id)
		}
	}
	return ids
}

func (r *Replica) sendActor(m wire.ActorMsg) {
	data := wire.AppendActor(nil, m)
	for _, id := range r.sharedIDs() {
		r.send(id, wire.KindPing, data)
	}
}

func (r *Replica) actorStart() {
	a := &r.act
	a.on = true
	a.setup = r.cfg.Actor
	a.values = make(map[string]wire.ActorValue)
	a.rnd = r.rnd
	r.sendActor(wire.ActorMsg{Type: wire.ActorInit, Node: r.cfg.Node})
	r.sendActor(wire.ActorMsg{Type: wire.ActorVers, Node: r.cfg.Node, Setup: a.setup})
	a.startAt = r.now + r.secs((a.rnd.Float64()/2+1.5)*a.setup.Gap+a.setup.Cycle)
}

// ActorStats returns what the ping group did, or nil when this node is
// not in one.
func (r *Replica) ActorStats() *ActorStats {
	a := &r.act
	if !a.on {
		return nil
	}
	return &ActorStats{History: slices.Clone(a.history), Tags: a.tags, Recoveries: a.recovered, Collisions: a.collision}
}

func (r *Replica) value() wire.ActorValue {
	return wire.ActorValue{Set: true, Tock: r.t.Tock(), Tick: r.t.Node(r.cfg.Node).Tick()}
}

// stepPing handles an actor message from a shared bus.
func (r *Replica) stepPing(m wire.ActorMsg) {
	a := &r.act
	// What a MoaT-KV server takes from every ping (its RawMsgEvent).
	if (m.Type == wire.ActorPing || m.Type == wire.ActorHist) && m.Node != r.cfg.Node && m.Value.Set && m.Value.Raw == nil {
		r.t.SeeTock(m.Value.Tock)
		r.raiseTick(m.Node, m.Value.Tick)
	}
	if m.Type == wire.ActorInit && m.Node == r.cfg.Node {
		// Our own init never comes back (links subscribe with No Local):
		// another process runs under this node's name.
		a.collision++
	}
	if !a.on {
		return
	}
	if !a.pinged {
		if len(a.queue) < actorMaxQueue {
			a.queue = append(a.queue, m)
		}
		return
	}
	r.actorMsg(m)
}

// actorMsg is asyncactor's process_msg for an enabled member.
func (r *Replica) actorMsg(m wire.ActorMsg) {
	a := &r.act
	prev := ""
	if len(a.history) > 0 {
		prev = a.history[0]
	}
	switch m.Type {
	case wire.ActorInit:
		return
	case wire.ActorVers:
		switch s := m.Setup; {
		case s.Version > a.setup.Version:
			a.setup = s
		case s.Version < a.setup.Version:
			if a.tagged > 1 {
				r.sendActor(wire.ActorMsg{Type: wire.ActorVers, Node: r.cfg.Node, Setup: a.setup})
			} else if pos := slices.Index(a.history, r.cfg.Node); pos > 0 {
				a.versAt = r.now + r.secs(a.setup.Gap*(1-1/float64(uint64(1)<<min(pos, 62))))
			}
		default:
			a.versAt = 0
		}
		return
	case wire.ActorPing:
		if a.hist != nil && a.hist.node == m.Node {
			a.hist = nil // that node pinged itself: no need to re-send its ping
		}
	}
	if m.Node == r.cfg.Node || m.Node == prev {
		return
	}
	if _, known := a.values[m.Node]; known || len(a.values) < actorMaxValues {
		a.values[m.Node] = m.Value
	}
	var h1, mine0, mine1 []string
	if len(m.History) > 1 {
		h1 = m.History[1:2]
	}
	if len(a.history) > 0 {
		mine0 = a.history[0:1]
	}
	if len(a.history) > 1 {
		mine1 = a.history[1:2]
	}
	if len(m.History) > 0 && slices.Equal(h1, mine0) {
		if m.Type == wire.ActorHist {
			return
		}
		a.history = nodeListAdd(a.history, m.Node, r.maxHistory())
		r.scheduleNextPing()
		a.tagged = 0 // a valid ping: not "it"
		return
	}
	// Colliding pings.
	samePrev := len(m.History) > 0 && slices.Equal(h1, mine1)
	preferNew := r.hasPriority(m.Node, prev)
	old := slices.Clone(a.history)
	if preferNew {
		a.history = slices.Clone(m.History)
		a.tagged = 0
		r.scheduleNextPing()
	}
	if samePrev {
		return
	}
	pos := slices.Index(old, r.cfg.Node)
	if pos < 0 {
		return
	}
	remote := slices.Clone(m.History)
	if m.Type != wire.ActorHist {
		remote = nodeListAdd(remote, m.Node, 0)
	}
	r.recoverSplit(pos, old, remote)
	if a.hist == nil || a.hist.node != old[0] {
		a.hist = &histSend{node: old[0], at: r.now + r.secs(a.setup.Gap*(1-1/float64(uint64(1)<<min(pos, 62)))), history: old}
	}
}

func (r *Replica) maxHistory() int {
	if n := r.act.setup.Nodes; n > 0 {
		return int(n)
	}
	return 0
}

// hasPriority is asyncactor's has_priority: the higher value wins, nil
// lowest, then the smaller name.
func (r *Replica) hasPriority(a, b string) bool {
	if b == "" {
		return true
	}
	// This node's own value is the one it sent (sendPing keeps it), as
	// the others compare it: never its current one.
	va, vb := r.act.values[a], r.act.values[b]
	if c := va.Compare(vb); c != 0 {
		return c > 0
	}
	return a < b
}

// nodeListAdd moves name to the front of list, as asyncactor's NodeList
// does (maxLen 0: unbounded): a name taken out from the middle, or a full
// list, also loses its last element.
func nodeListAdd(list []string, name string, maxLen int) []string {
	i := slices.Index(list, name)
	out := slices.Clone(list)
	if i >= 0 {
		out = slices.Delete(out, i, i+1)
	}
	if maxLen > 0 && len(out) > 0 && ((i >= 0 && i < len(out)) || len(out) == maxLen) {
		out = out[:len(out)-1]
	}
	return slices.Insert(out, 0, name)
}

func (r *Replica) scheduleNextPing() {
	a := &r.act
	a.nextPing = r.now + r.secs(a.setup.Cycle+a.setup.Gap*r.timeToNextPing())
}

// timeToNextPing is asyncactor's _time_to_next_ping, in gaps.
func (r *Replica) timeToNextPing() float64 {
	a := &r.act
	if len(a.history) == 0 {
		return 1.9 - a.rnd.Float64()/5
	}
	if a.history[0] == r.cfg.Node {
		return 2
	}
	s, lv := 0, 1
	nodes := int(a.setup.Nodes)
	for _, h := range a.history {
		if h == r.cfg.Node {
			s = lv
		}
		lv++
		if nodes > 0 && lv > nodes {
			break
		}
	}
	todo := 1
	if nodes > 0 {
		todo = nodes - len(a.history)
	}
	return r.pingDelay(s-1, lv, todo, max(len(a.values), int(a.setup.NHosts)))
}

// pingDelay is asyncactor's ping_delay: members of the history take turns
// (the oldest first), others jump in rarely.
func (r *Replica) pingDelay(pos, length, todo, total int) float64 {
	a := &r.act
	if pos >= 0 {
		return 1 - 1/float64(uint64(1)<<min(length-pos, 62))/2
	}
	rnd := a.rnd.Float64
	if a.setup.ForceIn != 0 {
		switch {
		case a.countNot >= total:
			return rnd() / 4
		case rnd() > float64(a.countNot-1)/float64(total):
			return 0.5 + rnd()/2
		}
		return rnd() / 2
	}
	f := todo
	if todo <= 0 {
		a.countNot++
		f = total
	}
	if rnd() < 1/float64(f)/float64(max(total, 1)) {
		return rnd() / 3
	}
	return 1.5 + rnd()/2
}

func (r *Replica) sendPing() {
	a := &r.act
	if len(a.history) > 0 {
		// Wait one gap for another ping; without one, this node is "it".
		a.tagged, a.tDest = 2, r.now+r.secs(a.setup.Gap)
	}
	a.history = nodeListAdd(a.history, r.cfg.Node, r.maxHistory())
	h := a.history[:min(len(a.history), int(max(a.setup.Splits, 1)))]
	v := r.value()
	a.values[r.cfg.Node] = v
	r.sendActor(wire.ActorMsg{Type: wire.ActorPing, Node: r.cfg.Node, Value: v, History: slices.Clone(h)})
	r.scheduleNextPing()
}

// actorTick runs the group's clock (from Tick).
func (r *Replica) actorTick() {
	a := &r.act
	if !a.on || len(r.sharedIDs()) == 0 {
		return
	}
	if !a.pinged {
		if r.now < a.startAt {
			return
		}
		a.pinged = true
		r.sendPing()
		q := a.queue
		a.queue = nil
		for _, m := range q {
			r.actorMsg(m)
		}
		return
	}
	if a.versAt != 0 && r.now >= a.versAt {
		a.versAt = 0
		r.sendActor(wire.ActorMsg{Type: wire.ActorVers, Node: r.cfg.Node, Setup: a.setup})
	}
	if hs := a.hist; hs != nil && r.now >= hs.at {
		a.hist = nil
		v := a.values[hs.node]
		h := hs.history[:min(len(hs.history), int(max(a.setup.Splits, 1)))]
		r.sendActor(wire.ActorMsg{Type: wire.ActorHist, Node: hs.node, Value: v, History: slices.Clone(h)})
	}
	r.recoveryTick()
	switch {
	case a.tagged == 0:
		if r.now >= a.nextPing {
			r.sendPing()
		}
	case r.now < a.tDest:
	case a.tagged == 2:
		// "It": MoaT-KV asks for what it still lacks now.
		a.tagged, a.tDest = 3, r.now+r.secs(a.setup.Cycle-a.setup.Gap/2)
		a.tags++
		r.requestMissingNow()
	case a.tagged == 3:
		a.tagged = 0
		a.countNot = 0
	}
}

// recoverSplit starts MoaT-KV's recovery for a healed split, unless one
// runs already for every remote node.
func (r *Replica) recoverSplit(prio int, local, remote []string) {
	a := &r.act
	covered := func(n string) bool {
		for _, rec := range a.recs {
			if slices.Contains(rec.remote, n) {
				return true
			}
		}
		return false
	}
	if !slices.ContainsFunc(remote, func(n string) bool { return !covered(n) }) {
		return
	}
	a.recovered++
	clock := a.setup.Cycle
	// This side: the old history without the nodes that pinged on the
	// other (MoaT-KV's _RecoverControl keys its tasks so).
	local = slices.DeleteFunc(slices.Clone(local), func(n string) bool { return slices.Contains(remote, n) })
	rec := &recovery{local: local, remote: remote, prio: prio, step: 1,
		at: r.now + r.secsOrZero(clock*(1-1/float64(uint64(1)<<min(prio, 62))))}
	a.recs = append(a.recs, rec)
	r.recoveryTick()
}

// secsOrZero is secs, but 0 seconds is 0 ticks (prio 0 acts at once).
func (r *Replica) secsOrZero(s float64) uint64 {
	if s <= 0 {
		return 0
	}
	return r.secs(s)
}

func (r *Replica) recoveryTick() {
	a := &r.act
	clock := a.setup.Cycle
	a.recs = slices.DeleteFunc(a.recs, func(rec *recovery) bool {
		for rec.step <= 2 && r.now >= rec.at {
			if rec.step == 1 {
				r.sendTicks()
			} else {
				r.sendMissing(true)
			}
			r.recoveryNext(rec, clock)
		}
		return rec.step > 2
	})
}

func (r *Replica) recoveryNext(rec *recovery, clock float64) {
	rec.step++
	if rec.step == 2 {
		rec.at = r.now + r.secsOrZero(clock*(2-1/float64(uint64(1)<<min(rec.prio, 62)))/2)
		if rec.missing {
			rec.step = 3
		}
	}
}

// recoveryHeard notes an info message: ticks or missing from a member of a
// recovering side means that step is done there.
func (r *Replica) recoveryHeard(in wire.Info) {
	for _, rec := range r.act.recs {
		if !slices.Contains(rec.local, in.Node) {
			continue
		}
		if in.Missing != nil {
			rec.missing = true
		}
		if rec.step == 1 && len(in.Ticks) > 0 {
			r.recoveryNext(rec, r.act.setup.Cycle)
		}
		if rec.step == 2 && rec.missing {
			rec.step = 3
		}
	}
	r.act.recs = slices.DeleteFunc(r.act.recs, func(rec *recovery) bool { return rec.step > 2 })
}

// sendTicks broadcasts info{ticks} for every node known.
func (r *Replica) sendTicks() {
	ticks := make(map[string]uint64)
	for _, n := range r.t.Nodes() {
		ticks[n.Name()] = n.Tick()
	}
	in := wire.Info{Node: r.cfg.Node, Tick: r.t.Node(r.cfg.Node).Tick(), Tock: r.t.Tock(), Ticks: ticks}
	r.broadcast(wire.KindInfo, wire.AppendInfo(nil, in), -1)
}

// sendMissing broadcasts info{missing}; force sends it even when nothing
// is missing (MoaT-KV's recovery step 2 does, to tell its side it is done).
func (r *Replica) sendMissing(force bool) {
	miss := r.Missing()
	if len(miss) == 0 && !force {
		return
	}
	r.stats.MissingReqs++
	in := wire.Info{Node: r.cfg.Node, Tick: r.t.Node(r.cfg.Node).Tick(), Tock: r.t.Tock(), Missing: miss}
	r.broadcast(wire.KindInfo, wire.AppendInfo(nil, in), -1)
}

// requestMissingNow asks for missing ticks at once (when "it").
func (r *Replica) requestMissingNow() {
	if len(r.links) > 0 {
		r.sendMissing(false)
	}
}

// answerable returns, of the ticks rs of node n asked for, those this node
// can answer: held, superseded, or skipped.
func answerable(n *tree.Node, rs tree.RangeSet) tree.RangeSet {
	return rs.Intersect(n.Covered())
}

// answer is what is still to be sent on a shared link, from "at" on.
type answer struct {
	want map[string]tree.RangeSet
	at   uint64
}

// AnswerBatch bounds the entries sent on a shared link per tick (about
// 5,000 a second at 100 ms ticks): one update per message there would
// otherwise overflow the link's send queue on a big catch-up, and a reset
// link starts over.
const AnswerBatch = 512

// deferAnswer queues an answer to info{missing} on shared link id, after a
// random part of half a gap.
func (r *Replica) deferAnswer(id LinkID, want map[string]tree.RangeSet) {
	gap := r.cfg.Actor.Gap
	if r.act.on {
		gap = r.act.setup.Gap
	}
	r.queueAnswer(id, want, 1+uint64(r.rnd.Float64()*gap/2/r.cfg.TickSeconds))
}

// queueAnswer adds want to link id's answer, due in delay ticks (or
// sooner, if it was due sooner).
func (r *Replica) queueAnswer(id LinkID, want map[string]tree.RangeSet, delay uint64) {
	an := r.answers[id]
	if an == nil {
		an = &answer{want: make(map[string]tree.RangeSet), at: r.now + delay}
		r.answers[id] = an
	}
	an.at = min(an.at, r.now+delay)
	for name, rs := range want {
		an.want[name] = an.want[name].Union(rs)
	}
}

// answered drops ticks from link id's queued answer: another node sent
// them on that link.
func (r *Replica) answered(id LinkID, name string, rs tree.RangeSet) {
	if an := r.answers[id]; an != nil {
		if w, ok := an.want[name]; ok {
			an.want[name] = w.Minus(rs)
		}
	}
}

// answerTick sends what is due of the queued answers.
func (r *Replica) answerTick() {
	if len(r.answers) == 0 {
		return // the usual case: no allocation per tick
	}
	for _, id := range r.linkIDs() {
		if an := r.answers[id]; an != nil && r.now >= an.at {
			r.flushAnswer(id)
		}
	}
}

// flushAnswer sends up to AnswerBatch entries of link id's answer, with
// the known and skipped ticks it asks about, and keeps the rest for the
// next tick.
func (r *Replica) flushAnswer(id LinkID) {
	an := r.answers[id]
	delete(r.answers, id)
	part := make(map[string]tree.RangeSet)
	rest := make(map[string]tree.RangeSet)
	budget := uint64(AnswerBatch)
	for _, name := range sortedKeys(an.want) {
		n := r.t.LookupNode(name)
		if n == nil {
			continue
		}
		w := answerable(n, an.want[name])
		pres := w.Intersect(n.Present())
		take := w.Minus(pres) // answered by range: known, skipped
		if budget > 0 && !pres.IsEmpty() {
			// From a random place on (wrapping around), so that nodes
			// answering the same request send different entries first and
			// drop what they hear the others send.
			head := pickFrom(pres, uint64(r.rnd.Int64N(int64(min(pres.Len(), 1<<62)))), budget)
			take = take.Union(head)
			pres = pres.Minus(head)
			budget -= min(budget, head.Len())
		}
		if !take.IsEmpty() {
			part[name] = take
		}
		if !pres.IsEmpty() {
			rest[name] = pres
		}
	}
	if len(part) > 0 {
		r.resendNow(id, part)
		// An entry sent carries all the ticks on its chain.
		for name, rs := range part {
			n := r.t.LookupNode(name)
			rs.Intersect(n.Present()).All(func(t uint64) bool {
				if e := n.Entry(t); e != nil {
					for _, l := range e.Chain() {
						if w, ok := rest[l.Node]; ok {
							w.Remove(l.Tick)
							rest[l.Node] = w
						}
					}
				}
				return true
			})
		}
		for name, w := range rest {
			if w.IsEmpty() {
				delete(rest, name)
			}
		}
	}
	if len(rest) > 0 {
		r.answers[id] = &answer{want: rest, at: r.now + 1}
	}
}

// pickFrom returns up to k ticks of s, starting with its off-th tick and
// wrapping around to its start.
func pickFrom(s tree.RangeSet, off, k uint64) tree.RangeSet {
	var out tree.RangeSet
	var i uint64
	s.All(func(t uint64) bool {
		if i >= off {
			out.Add(t)
		}
		i++
		return out.Len() < k
	})
	if out.Len() < k {
		s.All(func(t uint64) bool {
			if out.Len() >= k || out.Contains(t) {
				return false
			}
			out.Add(t)
			return true
		})
	}
	return out
}
