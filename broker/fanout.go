package broker

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgekv/edgekv/tree"
)

// Live delivery of publishes.
//
// mochi gives every subscriber its own copy of each payload and queues up
// to 8,192 packets per client, whatever their size: five subscribers to
// "#" that never read, and 240 MB published, held 1.48 GB. edgekv
// therefore delivers publishes itself. OnPublish hands every publish that
// is to be forwarded (the inline client's: entries, sync messages, bus
// messages; clients' on topics outside the tree) to the delivery, and
// returns mochi's CodeSuccessIgnore, with which mochi still acknowledges
// the packet but neither retains nor forwards it. The node's changes of
// KV entries come straight from PublishEntry (kvretained.go). The delivery
//
//   - retains it, as mochi would, in mochi's retained store (never an
//     entry's: those are served from the tree);
//   - finds the subscribers as mochi does (shared subscriptions: one of
//     each group; inline subscriptions called at once) and puts one
//     shared packet, payload and all, in each subscriber's queue;
//   - counts each queue in bytes (payload, topic and a fixed overhead).
//     A client whose queue would go over its budget (limits.mqtt_queue),
//     or over what the node allows all queues together (limits.sending),
//     while it still has something waiting, is disconnected and the
//     reason logged: a client that does not read cannot make the node
//     hold more. A peer's link is not cut (sync recovers lost messages);
//     the message is dropped and a warning logged, as mochi did when its
//     queue was full;
//   - writes each queue on a goroutine of its own that lives while the
//     queue has something in it. QoS 1/2 messages are sent within the
//     client's window (as retained delivery: at most fillWindow, and no
//     more than a v5 client's receive maximum, unacknowledged) and keep
//     their bytes counted until acknowledged. mochi's own accounting of a
//     v5 client's receive maximum is turned off (its send quota set to 0
//     at connect): it parks messages in the in-flight store and takes that
//     store's read lock twice in a row (Inflight.NextImmediate), which
//     deadlocks against a Set from another goroutine such as this writer.
//
// A client that is not connected but keeps its session gets QoS 1/2
// messages stored for when it comes back, as with mochi, up to its queue
// budget; QoS 0 messages are not kept for it.
type delivery struct {
	srv    *mqtt.Server
	inline *mqtt.Client
	acl    func(cl *mqtt.Client, topic string, write bool) bool
	isPeer func(cl *mqtt.Client) bool
	log    *slog.Logger

	perClient int64 // a client's queue, in bytes
	nodeMax   int64 // all queues together
	total     atomic.Int64

	// Retained messages of KV topics (kvretained.go).
	tree     Tree
	kvPrefix string
	ctx      func() context.Context
	filling  atomic.Int32 // walks registered
	walking  atomic.Int32 // walks' goroutines running
	kvSubs   *kvSubs      // whether anyone may subscribe to a KV topic

	mu      sync.Mutex
	queues  map[*mqtt.Client]*outQueue
	offline map[string]int64 // bytes stored for clients away, by client ID
	wg      sync.WaitGroup   // writers
}

// itemOverhead is what a queued message costs beyond its payload and
// topic: the packet, the queue slot, and the properties of a KV entry.
const itemOverhead = 256

// outQueue is one connected client's queue.
type outQueue struct {
	cl *mqtt.Client

	mu       sync.Mutex
	items    []outItem
	head     int
	bytes    int64            // queued and unacknowledged
	inflight map[uint16]int64 // sent at QoS 1/2 and not yet acknowledged
	running  bool             // a writer is at work
	gone     bool             // disconnected (or cut off): take nothing more
	dropped  int              // messages dropped since the last warning (peers)
	slot     sync.Mutex       // check-and-take of a QoS 1/2 slot (also retained.go)
	wake     chan struct{}    // an acknowledgement or the end: cap 1
	fills    []*kvFill        // walks of the tree for new subscriptions (kvretained.go)
	room     chan struct{}    // closed when bytes leave the queue (walks wait on it); nil: nobody waits
	sending  *kvFill          // the walk of the item the writer holds, if any
	later    []outItem        // the client's own publishes to itself, behind its walks (kvretained.go)
	lastIn   atomic.Uint32    // the client's last packet id (+1; 0: none yet), see nextPacketID
}

type outItem struct {
	pk       *packets.Packet // shared by every subscriber: read-only
	kv       *kvEntry        // or an entry sent as a retained message (pk nil)
	sub      packets.Subscription
	cost     int64
	retained bool    // sent because it is retained: retain flag set, sub's identifier
	fill     *kvFill // the walk that queued it: not sent once that is cancelled
}

func newDelivery(srv *mqtt.Server, inline *mqtt.Client, perClient, nodeMax int64, log *slog.Logger) *delivery {
	return &delivery{
		srv: srv, inline: inline, log: log, perClient: perClient, nodeMax: nodeMax,
		queues: map[*mqtt.Client]*outQueue{}, offline: map[string]int64{},
	}
}

// queue returns cl's queue, made on first use; nil once cl is gone.
func (d *delivery) queue(cl *mqtt.Client, create bool) *outQueue {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queues[cl]
	if q == nil && create && !cl.Closed() {
		q = &outQueue{cl: cl, wake: make(chan struct{}, 1), inflight: map[uint16]int64{}}
		d.queues[cl] = q
	}
	return q
}

// established starts a client's session: mochi's send quota off (see the
// top of this file); what was stored for it while away is now in flight
// again, resent by mochi, and no longer counted.
func (d *delivery) established(cl *mqtt.Client) {
	cl.State.Inflight.ResetSendQuota(0)
	d.mu.Lock()
	delete(d.offline, cl.ID)
	d.mu.Unlock()
}

// expired forgets the bytes stored for a session that has ended.
func (d *delivery) expired(id string) {
	d.mu.Lock()
	delete(d.offline, id)
	d.mu.Unlock()
}

// disconnected drops cl's queue and gives its bytes back.
func (d *delivery) disconnected(cl *mqtt.Client) {
	d.mu.Lock()
	q := d.queues[cl]
	delete(d.queues, cl)
	d.mu.Unlock()
	if q != nil {
		d.drop(q)
	}
}

// drop empties q for good.
func (d *delivery) drop(q *outQueue) {
	q.mu.Lock()
	q.gone = true
	freed := q.bytes
	for _, f := range q.fills {
		f.stopped, f.held = true, nil
		d.filling.Add(-1)
	}
	q.items, q.head, q.bytes, q.inflight, q.fills = nil, 0, 0, nil, nil
	q.later = nil
	q.signal()
	q.mu.Unlock()
	d.total.Add(-freed)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// forward retains pk if it asks to be, then delivers it to every
// subscriber. It runs on the publisher's goroutine and never blocks on a
// subscriber.
func (d *delivery) forward(pk packets.Packet, retain bool) {
	if retain && pk.FixedHeader.Retain && d.srv.Options.Capabilities.RetainAvailable != 0 {
		d.srv.Topics.RetainMessage(shallowCopy(pk)) // one payload: the store shares it
		atomic.StoreInt64(&d.srv.Info.Retained, int64(d.srv.Topics.Retained.Len()))
	}
	if pk.Created == 0 {
		pk.Created = time.Now().Unix()
	}
	if pk.Expiry == 0 && pk.Properties.MessageExpiryInterval > 0 {
		pk.Expiry = pk.Created + int64(pk.Properties.MessageExpiryInterval)
	}
	subs := d.subscribers(pk.TopicName)
	if subs == nil {
		return
	}
	d.deliver(subs, pk, nil, 0)
}

// subscribers returns who subscribes to topic, or nil if nobody does.
func (d *delivery) subscribers(topic string) *mqtt.Subscribers {
	subs := d.srv.Topics.Subscribers(topic)
	if len(subs.Shared) > 0 {
		subs.SelectShared()
		subs.MergeSharedSelected()
	}
	if len(subs.Subscriptions) == 0 && len(subs.InlineSubscriptions) == 0 {
		return nil
	}
	return subs
}

// deliver hands pk to subs; p and tock are the entry's path and version
// for a KV topic.
func (d *delivery) deliver(subs *mqtt.Subscribers, pk packets.Packet, p tree.Path, tock uint64) {
	for _, in := range subs.InlineSubscriptions {
		in.Handler(d.inline, in.Subscription, pk)
	}
	if len(subs.Subscriptions) == 0 {
		return
	}
	shared := new(packets.Packet) // on the heap only when someone subscribes
	*shared = pk
	cost := int64(len(pk.Payload)+len(pk.TopicName)) + itemOverhead
	for id, sub := range subs.Subscriptions {
		if cl, ok := d.srv.Clients.Get(id); ok {
			d.enqueue(cl, sub, shared, cost, p, tock)
		}
	}
}

// publishEntry delivers a change of the entry at p (topic) to the current
// subscribers; nothing is retained (kvretained.go). The packet is built
// only if someone subscribes.
func (d *delivery) publishEntry(p tree.Path, topic string, value []byte, node string, tick, tock uint64) error {
	subs := d.subscribers(topic)
	if subs == nil {
		return nil
	}
	pk, err := entryPacket(topic, value, node, tick, tock)
	if err != nil {
		return err
	}
	pk.Created = time.Now().Unix()
	d.deliver(subs, pk, p, tock)
	return nil
}

// enqueue puts pk in cl's queue, or stores it for cl's return, or refuses
// it over budget. p and tock are the entry's path and version for a KV
// topic (else nil): a change of an entry that a walk of cl's has not
// reached yet is held by that walk (kvretained.go).
func (d *delivery) enqueue(cl *mqtt.Client, sub packets.Subscription, pk *packets.Packet, cost int64, p tree.Path, tock uint64) {
	if sub.NoLocal && pk.Origin == cl.ID { // [MQTT-3.8.3-3]
		return
	}
	if !d.acl(cl, pk.TopicName, false) {
		return
	}
	if cl.Closed() || cl.Net.Conn == nil {
		d.storeAway(cl, sub, pk, cost)
		return
	}
	q := d.queue(cl, true)
	if q == nil {
		return
	}
	q.mu.Lock()
	if q.gone {
		q.mu.Unlock()
		return
	}
	peer := d.isPeer != nil && d.isPeer(cl)
	limit := d.perClient
	if peer {
		limit = d.nodeMax
	}
	if q.bytes > 0 && (q.bytes+cost > limit || d.total.Load()+cost > d.nodeMax) {
		held, total := q.bytes, d.total.Load()
		if peer {
			q.dropped++
			warn := q.dropped == 1
			q.mu.Unlock()
			if warn {
				d.log.Warn("sync messages dropped: the peer does not take them fast enough (limits.sending)",
					"client", cl.ID, "queued", held, "all_queues", total)
			}
			return
		}
		q.mu.Unlock()
		what, lim := "limits.mqtt_queue", d.perClient
		if held+cost <= d.perClient {
			what, lim = "limits.sending (all clients' queues)", d.nodeMax
		}
		d.log.Warn("MQTT client disconnected: it does not read its messages fast enough",
			"client", cl.ID, "remote", cl.Net.Remote, "queued", held, "limit", what, "bytes", lim, "all_queues", total)
		d.drop(q)
		// Not on this goroutine (the engine's, for a change of the
		// tree): closing a TLS connection sends an alert, which may
		// wait seconds for a client that does not read.
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			cl.Stop(packets.ErrQuotaExceeded)
		}()
		return
	}
	if q.dropped > 0 {
		q.dropped = 0
	}
	it := outItem{pk: pk, sub: sub, cost: cost}
	if len(q.fills) > 0 {
		if p != nil {
			if held, freed := q.hold(p, tock, pk.TopicName, it); held {
				q.bytes += cost - freed
				d.total.Add(cost - freed)
				q.mu.Unlock()
				return
			}
		} else if pk.Origin == cl.ID {
			// The client's own publish comes back to it after the
			// retained messages of the filters it subscribed to before
			// (kvretained.go).
			q.later = append(q.later, it)
			q.bytes += cost
			d.total.Add(cost)
			q.mu.Unlock()
			return
		}
	}
	q.items = append(q.items, it)
	q.bytes += cost
	d.total.Add(cost)
	d.startWriter(q)
	q.mu.Unlock()
}

// startWriter starts q's writer unless it runs. q.mu is held.
func (d *delivery) startWriter(q *outQueue) {
	if !q.running {
		q.running = true
		d.wg.Add(1)
		go d.write(q)
	}
}

// storeAway keeps a QoS 1/2 message for a client that keeps its session
// while away (mochi resends its in-flight messages when it returns), up
// to its queue budget.
func (d *delivery) storeAway(cl *mqtt.Client, sub packets.Subscription, pk *packets.Packet, cost int64) {
	out := d.outgoing(cl, sub, pk)
	if out.FixedHeader.Qos == 0 {
		return
	}
	d.mu.Lock()
	if d.offline[cl.ID]+cost > d.perClient {
		d.mu.Unlock()
		return
	}
	d.offline[cl.ID] += cost
	d.mu.Unlock()
	id, err := d.nextPacketID(cl)
	if err != nil {
		return
	}
	out.PacketID = id
	if cl.State.Inflight.Set(out) {
		atomic.AddInt64(&d.srv.Info.Inflight, 1)
	}
}

// outgoing is the packet cl receives for pk under sub, as mochi builds it
// (publishToClient); the payload is pk's, not a copy.
func (d *delivery) outgoing(cl *mqtt.Client, sub packets.Subscription, pk *packets.Packet) packets.Packet {
	out := shallowCopy(*pk)
	if !sub.FwdRetainedFlag && ((cl.Properties.ProtocolVersion == 5 && !sub.RetainAsPublished) || cl.Properties.ProtocolVersion < 5) { // ![MQTT-3.3.1-13] [v3 MQTT-3.3.1-9]
		out.FixedHeader.Retain = false // [MQTT-3.3.1-12]
	}
	if len(sub.Identifiers) > 0 { // [MQTT-3.3.4-3]
		ids := make([]int, 0, len(sub.Identifiers))
		for _, id := range sub.Identifiers {
			ids = append(ids, id) // [MQTT-3.3.4-4] ![MQTT-3.3.4-5]
		}
		slices.Sort(ids)
		out.Properties.SubscriptionIdentifier = ids
	}
	out.FixedHeader.Qos = min(out.FixedHeader.Qos, sub.Qos, d.srv.Options.Capabilities.MaximumQos) // [MQTT-3.2.2-9]
	return out
}

// write sends q's messages until it is empty or gone.
func (d *delivery) write(q *outQueue) {
	defer d.wg.Done()
	cl := q.cl
	for {
		q.mu.Lock()
		if q.gone || q.head == len(q.items) {
			q.running = false
			q.items, q.head = q.items[:0], 0
			q.mu.Unlock()
			return
		}
		it := q.items[q.head]
		q.items[q.head] = outItem{}
		q.head++
		if q.head > 64 && q.head*2 > len(q.items) { // keep the slice from growing for ever
			n := copy(q.items, q.items[q.head:])
			clear(q.items[n:])
			q.items, q.head = q.items[:n], 0
		}
		q.sending = it.fill
		if it.fill != nil {
			it.fill.waiting -= it.cost
			q.signal() // the walk may read more
		}
		if it.fill != nil && it.fill.cancelled { // unsubscribed [MQTT-3.10.4-2]
			q.bytes -= it.cost
			d.total.Add(-it.cost)
			q.mu.Unlock()
			continue
		}
		q.mu.Unlock()

		if it.kv != nil {
			var ok bool
			if it.pk, ok = d.kvPacket(it.kv); !ok {
				d.release(q, it.cost)
				continue
			}
		}
		out := d.outgoing(cl, it.sub, it.pk)
		if it.retained {
			out.FixedHeader.Retain = true // [MQTT-3.3.1-8]
			out.Properties.SubscriptionIdentifier = nil
			if it.sub.Identifier > 0 {
				out.Properties.SubscriptionIdentifier = []int{it.sub.Identifier} // [MQTT-3.3.4-3]
			}
		}
		if out.Expiry > 0 && out.Expiry < time.Now().Unix() {
			d.release(q, it.cost)
			continue // expired while queued
		}
		if cl.Properties.Props.TopicAliasMaximum > 0 {
			var exists bool
			out.Properties.TopicAlias, exists = cl.State.TopicAliases.Outbound.Set(out.TopicName)
			if out.Properties.TopicAlias > 0 {
				out.Properties.TopicAliasFlag = true
				if exists {
					out.TopicName = ""
				}
			}
		}
		if out.FixedHeader.Qos > 0 {
			id, ok := d.takeSlot(q, &out)
			if !ok {
				d.release(q, it.cost)
				continue // gone: the next round ends
			}
			q.mu.Lock()
			if q.gone {
				q.mu.Unlock()
				continue
			}
			if it.fill != nil && it.fill.cancelled { // unsubscribed while waiting for the slot
				q.mu.Unlock()
				if cl.State.Inflight.Delete(id) {
					atomic.AddInt64(&d.srv.Info.Inflight, -1)
				}
				d.release(q, it.cost)
				continue
			}
			q.inflight[id] = it.cost
			q.mu.Unlock()
			if err := cl.WritePacket(out); err != nil {
				// Too large for the client (skipped, as mochi does) or
				// the connection has closed.
				if cl.State.Inflight.Delete(id) {
					atomic.AddInt64(&d.srv.Info.Inflight, -1)
				}
				d.completed(cl, id)
			}
			continue
		}
		_ = cl.WritePacket(out) // an error: too large (skipped) or closed (ends the queue)
		d.release(q, it.cost)
	}
}

// idGuard is how many packet ids after the client's last one the
// broker's own messages to it leave free (nextPacketID).
const idGuard = 1024

// inboundID notes the packet id of a client's PUBLISH (QoS 1/2), SUBSCRIBE
// or UNSUBSCRIBE.
func (d *delivery) inboundID(cl *mqtt.Client, id uint16) {
	if q := d.queue(cl, true); q != nil && id != 0 {
		q.lastIn.Store(uint32(id) + 1)
	}
}

// nextPacketID gives out the packet id of a QoS 1/2 message to cl. mochi
// keeps one set of ids in flight for both directions: a client's SUBSCRIBE
// or UNSUBSCRIBE whose id one of the broker's messages to it has in flight
// is refused ("packet identifier in use"), and a client's PUBLISH with such
// an id drops that message from flight (never resent; its bytes are given
// back when mochi reports the publish complete, see completed). Clients
// count their ids up one by one, so the broker's skip the idGuard ids that
// follow the client's last.
func (d *delivery) nextPacketID(cl *mqtt.Client) (uint16, error) {
	if d == nil {
		id, err := cl.NextPacketID()
		return uint16(id), err
	}
	return nextPacketIDOf(cl, d.queue(cl, false))
}

// nextPacketIDOf is nextPacketID for cl, whose queue is q (nil: none).
func nextPacketIDOf(cl *mqtt.Client, q *outQueue) (uint16, error) {
	var last uint32
	if q != nil {
		last = q.lastIn.Load()
	}
	for range idGuard + 1 {
		id, err := cl.NextPacketID()
		if err != nil {
			return 0, err
		}
		if last == 0 || uint16(uint32(id)-(last-1)) >= idGuard {
			return uint16(id), nil
		}
	}
	return 0, packets.ErrQuotaExceeded // not reached: idGuard+1 ids in a row cannot all be near
}

// release gives back the bytes of a message that has left q.
func (d *delivery) release(q *outQueue, cost int64) {
	q.mu.Lock()
	if !q.gone {
		q.bytes -= cost
		d.total.Add(-cost)
	}
	q.mu.Unlock()
}

// takeSlot waits until cl may have one more QoS 1/2 message
// unacknowledged, then gives out a packet id and puts out in flight. It
// reports false if the client has gone meanwhile.
func (d *delivery) takeSlot(q *outQueue, out *packets.Packet) (uint16, bool) {
	cl := q.cl
	win := window(cl)
	for {
		q.slot.Lock()
		if cl.State.Inflight.Len() < win {
			id, err := nextPacketIDOf(cl, q)
			if err == nil {
				out.PacketID = id
				if cl.State.Inflight.Set(*out) {
					atomic.AddInt64(&d.srv.Info.Inflight, 1)
				}
				q.slot.Unlock()
				return out.PacketID, true
			}
		}
		q.slot.Unlock()
		q.mu.Lock()
		gone := q.gone
		q.mu.Unlock()
		if gone || cl.Closed() {
			return 0, false
		}
		select {
		case <-q.wake:
		case <-time.After(time.Second): // a missed wake-up costs a second, not the queue
		}
	}
}

// completed notes an acknowledged (or abandoned) QoS 1/2 message of cl.
// mochi calls OnQosComplete for outbound messages and for a client's own
// QoS 1 publishes alike: an id that this queue did not send, or that is
// still in flight, is ignored.
func (d *delivery) completed(cl *mqtt.Client, id uint16) {
	q := d.queue(cl, false)
	if q == nil {
		return
	}
	if _, still := cl.State.Inflight.Get(id); !still {
		q.mu.Lock()
		if cost, ok := q.inflight[id]; ok && !q.gone {
			delete(q.inflight, id)
			q.bytes -= cost
			d.total.Add(-cost)
		}
		q.mu.Unlock()
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// slotLock returns the lock under which cl's QoS 1/2 slots are taken, so
// that retained delivery and live delivery together keep to the window.
func (d *delivery) slotLock(cl *mqtt.Client) *sync.Mutex {
	if q := d.queue(cl, true); q != nil {
		return &q.slot
	}
	return nil
}

// wait waits for the writers to end (after every client has gone).
func (d *delivery) wait() { d.wg.Wait() }

// shallowCopy is pk.Copy(false) with pk's payload, not a copy of it.
func shallowCopy(pk packets.Packet) packets.Packet {
	payload := pk.Payload
	pk.Payload = nil
	out := pk.Copy(false)
	out.Payload = payload
	return out
}

// clonePayload gives an inline publish a payload of its own: its caller
// may reuse the slice once the publish returns, and subscribers' queues
// keep it longer.
func clonePayload(b []byte) []byte { return bytes.Clone(b) }
