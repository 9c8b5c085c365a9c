package broker

import (
	"context"
	"slices"
	"strconv"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgekv/edgekv/tree"
)

// Retained messages of KV topics, served from the tree.
//
// The tree holds every entry once. mochi's retained store would hold each
// a second time, as a packet with its topic, JSON payload and properties
// (about 2.5 KB per 16-byte value): KV topics are therefore never put in
// it. PublishEntry delivers a change to the current subscribers only (and
// builds no packet when nobody subscribes), and a new subscription whose
// filter can match KV topics gets their retained messages from a walk of
// the tree, a kvFill:
//
//   - The fill is registered when the SUBSCRIBE arrives (before mochi adds
//     the subscription) and walks the tree, a chunk at a time, once the
//     SUBACK has gone out. Each chunk is read on the goroutine that
//     publishes the tree's changes (EntryCursor), so the walk and the
//     live changes have one order: a change of an entry that the walk has
//     already passed came after the walk read it, and goes out live,
//     after the walk's message; a change of an entry the walk has not
//     reached is held, and dropped when the walk reaches the entry (the
//     walk reads its current value), or sent when the walk ends (entries
//     added under a level the walk had already reached). So every value
//     the client should have arrives once, none older after a newer one.
//     A change is held only if every subscription of the client that
//     matches it is a walk still to reach it; otherwise it goes out live
//     (and the walk, when it comes there, sends the entry again for its
//     own filter, as it sends every entry it visits).
//   - The walk's messages go through the client's queue (fanout.go), as
//     live ones do: QoS 1/2 within the client's window, and the next chunk
//     (at most 256 entries or 64 KiB of values) is read only once less
//     than fillRoom bytes of the walk's messages wait in the queue, so a
//     client that reads slowly slows only its own walk, and live messages
//     to the client (bounded by its budget) cannot stall the walk. Every walk runs on a goroutine of its own,
//     never the client's reader, which must go on reading the
//     acknowledgements that free room. Queued entries share the tree's
//     value (never a copy) and become packets (JSON, properties) only when
//     written to the connection.
//   - As with mochi, which sent retained messages before it read the
//     client's next packet, a client's own publishes that come back to it
//     (a sentinel on a topic of its own, say) wait behind the walks it
//     has running, so they arrive after the retained messages of the
//     filters it subscribed to before publishing.
//   - A walk covers the filter's literal prefix only, and no deeper than
//     its last '+' unless it ends in '#'. It stops when the client
//     unsubscribes the filter or subscribes to it again (a new walk
//     starts), disconnects, or the broker shuts down.
//
// Non-KV retained messages stay in mochi's store, served by retained.go.
const fillRoom = 256 << 10

// kvFill is one running walk for one filter of one client. Its fields
// other than sub and the walk's bounds are guarded by the queue's lock.
type kvFill struct {
	sub   packets.Subscription // the filter, at its granted QoS
	root  tree.Path
	depth int

	started   bool      // the walk has been given entries
	seen      tree.Path // the last entry given (with started)
	stopped   bool      // ended: walked to the end, or cancelled
	cancelled bool      // unsubscribed, re-subscribed or not granted: what it queued is not sent
	waiting   int64     // bytes of its messages in the queue that the writer has not taken yet

	held      map[string]heldMsg // live changes of entries not reached yet, by topic
	heldSeq   int
	heldBytes int64
}

type heldMsg struct {
	seq  int
	tock uint64 // the entry's version
	item outItem
}

// kvEntry is one entry waiting in a client's queue to be sent as a
// retained message; its value is the tree's.
type kvEntry struct {
	topic      string
	value      []byte
	node       string
	tick, tock uint64
}

// kvRoot returns where a walk for filter starts and how deep it goes
// (negative: all the way), or false if filter matches no KV topic.
func kvRoot(prefix, filter string) (root tree.Path, depth int, ok bool) {
	fl := strings.Split(filter, "/")
	pl := strings.Split(prefix, "/")
	for i, p := range pl {
		if i == len(fl) {
			return nil, 0, false
		}
		switch fl[i] {
		case "#":
			return tree.Path{}, -1, true
		case "+":
		default:
			if fl[i] != p {
				return nil, 0, false
			}
		}
	}
	rest := fl[len(pl):]
	root = tree.Path{}
	for i, l := range rest {
		if l == "#" || l == "+" {
			depth = len(rest) - i
			if rest[len(rest)-1] == "#" {
				depth = -1
			}
			return root, depth, true
		}
		e, err := parseLevel(l)
		if err != nil {
			return nil, 0, false // no entry has this topic
		}
		if canon, err := appendLevel(nil, e); err != nil || string(canon) != l {
			return nil, 0, false // not canonical: no entry has this topic
		}
		root = append(root, e)
	}
	return root, 0, true
}

// matchTopic reports whether the topic name matches the filter
// (wildcards '+' and '#'; a '$' topic is not matched by a wildcard level
// at the start).
func matchTopic(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !fmore:
			return false
		case !tmore:
			return frest == "#" // "a/#" matches "a"
		}
		filter, topic = frest, trest
	}
}

// entryPacket is the retained message of an entry: value (msgpack) as
// JSON with content type "application/json", user properties node, tick
// and tock; a nil value is an empty payload.
func entryPacket(topic string, value []byte, node string, tick, tock uint64) (packets.Packet, error) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName:   topic,
		Origin:      mqtt.InlineClientId,
		Properties: packets.Properties{
			User: []packets.UserProperty{
				{Key: "node", Val: node},
				{Key: "tick", Val: strconv.FormatUint(tick, 10)},
				{Key: "tock", Val: strconv.FormatUint(tock, 10)},
			},
		},
	}
	if value != nil {
		var err error
		if pk.Payload, err = MsgpackToJSON(value); err != nil {
			return pk, err
		}
		pk.Properties.ContentType = "application/json"
		pk.Properties.PayloadFormat = 1 // UTF-8
		pk.Properties.PayloadFormatFlag = true
	}
	return pk, nil
}

// addFill registers a walk for sub, a filter of cl's SUBSCRIBE that wants
// retained messages, if it can match KV topics. A walk of the same filter
// still running stops.
func (d *delivery) addFill(cl *mqtt.Client, sub packets.Subscription) *kvFill {
	if d.tree == nil {
		return nil
	}
	root, depth, ok := kvRoot(d.kvPrefix, sub.Filter)
	if !ok {
		return nil
	}
	q := d.queue(cl, true)
	if q == nil {
		return nil
	}
	f := &kvFill{sub: sub, root: root, depth: depth}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.gone {
		return nil
	}
	d.cancelFills(q, sub.Filter)
	q.fills = append(q.fills, f)
	d.filling.Add(1)
	return f
}

// stopFill cancels f's walk, forgetting what it held and what it queued
// (the writer skips that). q.mu is held.
func (d *delivery) stopFill(q *outQueue, f *kvFill) {
	f.cancelled = true
	if f.stopped {
		return
	}
	f.stopped = true
	for _, h := range f.held {
		q.bytes -= h.item.cost
		d.total.Add(-h.item.cost)
	}
	f.held, f.heldBytes = nil, 0
	q.fills = deleteFill(q.fills, f)
	d.filling.Add(-1)
	d.releaseLater(q)
	q.signal()
}

// releaseLater queues the client's own publishes that waited behind its
// walks, once none is left. q.mu is held.
func (d *delivery) releaseLater(q *outQueue) {
	if len(q.fills) > 0 || len(q.later) == 0 {
		return
	}
	q.items = append(q.items, q.later...)
	q.later = nil
	d.startWriter(q)
}

func deleteFill(fills []*kvFill, f *kvFill) []*kvFill {
	for i, o := range fills {
		if o == f {
			return append(fills[:i], fills[i+1:]...)
		}
	}
	return fills
}

// cancelFill ends f's walk before it started (its filter was not granted,
// or the SUBACK failed).
func (d *delivery) cancelFill(cl *mqtt.Client, f *kvFill) {
	if q := d.queue(cl, false); q != nil {
		q.mu.Lock()
		d.stopFill(q, f)
		q.mu.Unlock()
	}
}

// unsubscribed ends the walks of the filters cl dropped.
func (d *delivery) unsubscribed(cl *mqtt.Client, filters packets.Subscriptions) {
	q := d.queue(cl, false)
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range filters {
		d.cancelFills(q, s.Filter)
	}
}

// cancelFills cancels the walks of filter, running or done, so that what
// they queued is not sent. q.mu is held.
func (d *delivery) cancelFills(q *outQueue, filter string) {
	for _, f := range slices.Clone(q.fills) {
		if f.sub.Filter == filter {
			d.stopFill(q, f)
		}
	}
	for _, it := range q.items[q.head:] {
		if it.fill != nil && it.fill.sub.Filter == filter {
			it.fill.cancelled = true
		}
	}
	if f := q.sending; f != nil && f.sub.Filter == filter {
		f.cancelled = true // the writer checks again once it has a slot
	}
}

// startFill starts f's walk with its granted QoS, on a goroutine of its
// own: it waits for room in the client's queue, which may only come with
// acknowledgements that the client's reader goroutine must be free to
// read.
func (d *delivery) startFill(cl *mqtt.Client, f *kvFill, qos byte) {
	q := d.queue(cl, false)
	if q == nil {
		return
	}
	q.mu.Lock()
	if q.gone || f.stopped {
		q.mu.Unlock()
		return
	}
	f.sub.Qos = qos
	q.mu.Unlock()
	d.wg.Add(1)
	d.walking.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.walking.Add(-1)
		d.runFill(q, f)
	}()
}

// runFill walks the tree for f, a chunk whenever q has room.
func (d *delivery) runFill(q *outQueue, f *kvFill) {
	ctx := d.ctx()
	cur := d.tree.Entries(f.root, f.depth)
	for {
		if !d.waitRoom(ctx, q, f) {
			return
		}
		more, err := cur.Next(ctx, func(es []Entry) { d.fillChunk(q, f, es) })
		if err != nil {
			q.mu.Lock()
			d.stopFill(q, f)
			q.mu.Unlock()
			return
		}
		if !more {
			d.endFill(q, f)
			return
		}
	}
}

// waitRoom waits until less than fillRoom bytes of f's messages wait in
// q for the writer: a walk's own, so that live messages, which the
// client's budget bounds, cannot keep it from going on. It reports false
// if the walk is to stop.
func (d *delivery) waitRoom(ctx context.Context, q *outQueue, f *kvFill) bool {
	for {
		q.mu.Lock()
		if q.gone || f.stopped || q.cl.Closed() {
			q.mu.Unlock()
			return false
		}
		if f.waiting < fillRoom {
			q.mu.Unlock()
			return true
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return false
		}
	}
}

// signal wakes the walks waiting for room: one of their messages left the
// queue, or a walk is to stop (ended, cancelled, the client gone). q.mu is
// held.
func (q *outQueue) signal() {
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
}

// fillChunk queues the retained messages of a chunk of the walk. It runs
// where changes are published (EntryCursor), so no change slips between
// reading an entry and marking it seen.
func (d *delivery) fillChunk(q *outQueue, f *kvFill, es []Entry) {
	if len(es) == 0 {
		return
	}
	cl := q.cl
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.gone || f.stopped {
		return
	}
	f.started = true
	f.seen = es[len(es)-1].Path.Clone()
	added := false
	for _, e := range es {
		if e.Value == nil && len(f.held) == 0 {
			continue
		}
		if e.Path.IsMeta() {
			continue
		}
		topic, err := TopicForPath(d.kvPrefix, e.Path)
		if err != nil {
			continue // no topic for this path
		}
		h, held := f.held[topic]
		if held {
			delete(f.held, topic)
			f.heldBytes -= h.item.cost
			if h.tock <= e.Tock { // the walk reads the current value
				q.bytes -= h.item.cost
				d.total.Add(-h.item.cost)
				held = false
			}
		}
		if e.Value != nil && matchTopic(f.sub.Filter, topic) && d.acl(cl, topic, false) {
			cost := int64(len(e.Value)+len(topic)) + itemOverhead
			q.items = append(q.items, outItem{
				kv:       &kvEntry{topic: topic, value: e.Value, node: e.Node, tick: e.Tick, tock: e.Tock},
				sub:      f.sub,
				cost:     cost,
				retained: true,
				fill:     f,
			})
			q.bytes += cost
			f.waiting += cost
			d.total.Add(cost)
			added = true
		}
		if held { // newer than what the walk read: it follows at once, before later changes go out live
			q.items = append(q.items, h.item)
			added = true
		}
	}
	if added {
		d.startWriter(q)
	}
}

// endFill ends a walk that has visited everything: the changes it holds
// (of entries it never reached) join the queue, in the order they came,
// under the same lock as the walk's removal, so that no later change of
// the same entry can pass them.
func (d *delivery) endFill(q *outQueue, f *kvFill) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.gone || f.stopped {
		return
	}
	held := make([]heldMsg, 0, len(f.held))
	for _, h := range f.held {
		held = append(held, h)
	}
	f.held, f.heldBytes = nil, 0 // their bytes stay counted: they are queued now
	f.stopped = true
	q.fills = deleteFill(q.fills, f)
	d.filling.Add(-1)
	slices.SortFunc(held, func(a, b heldMsg) int { return a.seq - b.seq })
	for _, h := range held {
		q.items = append(q.items, h.item)
	}
	if len(held) > 0 {
		d.startWriter(q)
	}
	d.releaseLater(q)
}

// hold keeps a live change (version tock) of a KV entry that one of q's
// walks has not reached yet (see the top of this file), replacing an
// earlier change of the same entry. A change goes out live instead if
// any other subscription of the client matches it: a filter without a
// walk, or whose walk has passed the entry. q.mu is held.
func (q *outQueue) hold(p tree.Path, tock uint64, topic string, it outItem) (held bool, freed int64) {
	var w *kvFill
	for _, f := range q.fills {
		if f.ahead(p, topic) {
			w = f
			break
		}
	}
	if w == nil {
		return false, 0
	}
	for filter := range q.cl.State.Subscriptions.GetAll() {
		if !matchSubscription(filter, topic) {
			continue
		}
		walked := true
		for _, f := range q.fills {
			if f.sub.Filter == filter && f.ahead(p, topic) {
				walked = false
				break
			}
		}
		if walked {
			return false, 0
		}
	}
	if w.held == nil {
		w.held = map[string]heldMsg{}
	}
	if old, ok := w.held[topic]; ok {
		freed = old.item.cost
		w.heldBytes -= freed
	}
	w.heldSeq++
	w.held[topic] = heldMsg{seq: w.heldSeq, tock: tock, item: it}
	w.heldBytes += it.cost
	return true, freed
}

// ahead reports whether f's walk is still to reach the entry at p (topic).
func (f *kvFill) ahead(p tree.Path, topic string) bool {
	return !f.stopped && matchTopic(f.sub.Filter, topic) && !(f.started && p.Compare(f.seen) <= 0)
}

// matchSubscription reports whether a client's subscription filter, shared
// ("$share/group/filter") or not, matches topic.
func matchSubscription(filter, topic string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, filter, ok = strings.Cut(rest, "/")
		if !ok {
			return false
		}
	}
	return matchTopic(filter, topic)
}

// kvPacket builds the packet of a queued entry. It returns false if the
// value cannot be shown as JSON (the tree does not hold such values).
func (d *delivery) kvPacket(e *kvEntry) (*packets.Packet, bool) {
	pk, err := entryPacket(e.topic, e.value, e.node, e.tick, e.tock)
	if err != nil {
		d.log.Debug("entry not sent as a retained message", "topic", e.topic, "error", err)
		return nil, false
	}
	return &pk, true
}
