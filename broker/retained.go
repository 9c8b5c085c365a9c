package broker

import (
	"context"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Retained messages on subscribe.
//
// mochi sends the retained messages that match a new subscription from the
// client's reader goroutine, all at once: QoS 0 messages go into the
// client's outbound queue and are dropped once it holds 8,192; QoS 1/2
// messages are dropped once 8,192 are in flight, and for a v5 client all
// beyond its receive maximum are parked where they are never sent. With a
// large tree, a new "kv/#" subscriber silently missed most entries.
//
// edgekv therefore delivers retained messages itself: those of KV topics
// from the tree (kvretained.go), the others from mochi's store, here. OnSubscribe turns
// mochi's delivery off (retain handling 2 on every filter) after noting
// which filters want retained messages (retain handling 0, or 1 for a new
// subscription; never shared subscriptions). Once the SUBACK has gone out
// (OnPacketProcessed), the messages are sent paced by the client:
//
//   - a QoS 0 subscription gets its messages on the client's reader
//     goroutine, each written straight to the connection, so a client that
//     reads slowly slows its own delivery (TCP flow control) instead of
//     overflowing a queue, and, as with mochi, they have all been sent
//     before the client's next packet is handled;
//   - a QoS 1/2 subscription has at most fillWindow messages (and never
//     more than a v5 client's receive maximum) unacknowledged at a time.
//     These are sent on the client's own reader goroutine: after the
//     SUBACK, and after each PUBACK/PUBCOMP (OnQosComplete) that frees a
//     slot. mochi's in-flight store takes a read lock twice in a row when
//     it checks for parked messages after a packet (Inflight.NextImmediate),
//     so a Set from another goroutine in between deadlocks the reader;
//     setting in-flight messages only from the reader cannot.
//
// Each filter's matching topic names are taken when its delivery starts,
// and each message is read from the retained store when it is sent, so a
// value changed meanwhile goes out as it is now. A delivery stops when the
// client unsubscribes the filter, disconnects, or the broker shuts down.
const fillWindow = 256

// filler tracks the clients with retained messages to deliver.
type filler struct {
	srv      *mqtt.Server
	out      *delivery                      // KV topics' retained messages (kvretained.go)
	slotLock func(*mqtt.Client) *sync.Mutex // fanout.go's delivery.slotLock
	acl      func(cl *mqtt.Client, topic string, write bool) bool
	ctx      func() context.Context
	maxQos   byte
	clients  sync.Map // *mqtt.Client → *fillClient
}

// fillClient is one client's pending and running deliveries.
type fillClient struct {
	mu     sync.Mutex
	subPkt []fillJob // filters of the SUBSCRIBE being processed
	acked  []fillJob // filters whose SUBACK is being written
	gone   bool      // the client has disconnected

	// QoS 1/2 subscriptions: served on the reader goroutine only.
	queue1 []fillJob
	cur    *fillCursor
}

// fillJob is one filter whose retained messages are to be sent.
type fillJob struct {
	sub  packets.Subscription
	want bool    // false: the filter wants no retained messages
	kv   *kvFill // its walk of the tree for KV topics, if it may match some
}

// fillCursor is a running delivery: the topics to send and the next one.
type fillCursor struct {
	sub    packets.Subscription
	topics []string
	next   int
}

func newFiller(srv *mqtt.Server, acl func(*mqtt.Client, string, bool) bool, ctx func() context.Context) *filler {
	return &filler{srv: srv, acl: acl, ctx: ctx, maxQos: srv.Options.Capabilities.MaximumQos}
}

func (f *filler) client(cl *mqtt.Client, create bool) *fillClient {
	if v, ok := f.clients.Load(cl); ok {
		return v.(*fillClient)
	}
	if !create {
		return nil
	}
	v, _ := f.clients.LoadOrStore(cl, &fillClient{})
	return v.(*fillClient)
}

// subscribe notes which filters of pk want retained messages and turns
// mochi's own delivery off for all of them. It runs before mochi adds the
// subscriptions, so an existing one is still known as such.
func (f *filler) subscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline || len(pk.Filters) == 0 {
		return pk
	}
	jobs := make([]fillJob, len(pk.Filters))
	filters := make(packets.Subscriptions, len(pk.Filters))
	copy(filters, pk.Filters)
	for i, sub := range filters {
		_, existed := cl.State.Subscriptions.Get(sub.Filter)
		want := !mqtt.IsSharedFilter(sub.Filter) && sub.RetainHandling != 2 &&
			!(sub.RetainHandling == 1 && existed) // [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]
		jobs[i] = fillJob{sub: sub, want: want}
		if want && f.out != nil {
			jobs[i].kv = f.out.addFill(cl, sub)
		}
		filters[i].RetainHandling = 2
	}
	pk.Filters = filters
	fc := f.client(cl, true)
	fc.mu.Lock()
	fc.subPkt = jobs
	fc.mu.Unlock()
	return pk
}

// subscribed keeps the filters that mochi granted.
func (f *filler) subscribed(cl *mqtt.Client, codes []byte) {
	fc := f.client(cl, false)
	if fc == nil {
		return
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.acked = fc.acked[:0]
	for i, j := range fc.subPkt {
		if j.want && i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code {
			j.sub.Qos = min(j.sub.Qos, codes[i], f.maxQos)
			fc.acked = append(fc.acked, j)
		} else if j.kv != nil {
			f.out.cancelFill(cl, j.kv)
		}
	}
	fc.subPkt = nil
}

// processed starts the deliveries of a SUBSCRIBE whose SUBACK has gone
// out. It runs on the client's reader goroutine.
func (f *filler) processed(cl *mqtt.Client, err error) {
	fc := f.client(cl, false)
	if fc == nil {
		return
	}
	var qos0 []fillJob
	fc.mu.Lock()
	for _, j := range fc.acked {
		if j.kv == nil {
			continue
		}
		if err == nil && !fc.gone {
			f.out.startFill(cl, j.kv, j.sub.Qos)
		} else {
			f.out.cancelFill(cl, j.kv)
		}
	}
	if err == nil && !fc.gone {
		for _, j := range fc.acked {
			if j.sub.Qos == 0 {
				qos0 = append(qos0, j)
			} else {
				fc.queue1 = append(fc.queue1, j)
			}
		}
	}
	fc.acked = fc.acked[:0]
	fc.mu.Unlock()
	for _, j := range qos0 {
		f.fill0(cl, j.sub)
	}
	f.pump(cl, fc)
}

// completed goes on with a QoS 1/2 delivery once an acknowledgement has
// freed a slot. It runs on the client's reader goroutine.
func (f *filler) completed(cl *mqtt.Client) {
	if fc := f.client(cl, false); fc != nil {
		f.pump(cl, fc)
	}
}

// disconnected ends the client's deliveries.
func (f *filler) disconnected(cl *mqtt.Client) {
	v, ok := f.clients.LoadAndDelete(cl)
	if !ok {
		return
	}
	fc := v.(*fillClient)
	fc.mu.Lock()
	fc.gone = true
	fc.queue1, fc.cur = nil, nil
	fc.mu.Unlock()
}

// topics returns the names of the retained topics matching filter.
func (f *filler) topics(filter string) []string {
	pks := f.srv.Topics.Messages(filter)
	names := make([]string, len(pks))
	for i := range pks {
		names[i] = pks[i].TopicName
	}
	return names
}

// current returns the retained message on topic if it is still retained
// and cl may still receive it under sub.
func (f *filler) current(cl *mqtt.Client, sub packets.Subscription, topic string) (packets.Packet, bool) {
	pk, ok := f.srv.Topics.Retained.Get(topic)
	if !ok || len(pk.Payload) == 0 { // cleared meanwhile
		return pk, false
	}
	if sub.NoLocal && pk.Origin == cl.ID { // [MQTT-3.8.3-3]
		return pk, false
	}
	return pk, f.acl(cl, topic, false)
}

// outgoing is the copy of retained message pk that cl receives under sub.
func (f *filler) outgoing(cl *mqtt.Client, sub packets.Subscription, pk packets.Packet) packets.Packet {
	out := pk.Copy(false)
	out.FixedHeader.Retain = true // sent because it is retained [MQTT-3.3.1-8]
	out.FixedHeader.Qos = min(out.FixedHeader.Qos, sub.Qos)
	if sub.Identifier > 0 && cl.Properties.ProtocolVersion == 5 { // [MQTT-3.3.4-3]
		out.Properties.SubscriptionIdentifier = []int{sub.Identifier}
	}
	return out
}

// stillSubscribed reports whether cl still holds a subscription to filter.
func stillSubscribed(cl *mqtt.Client, filter string) bool {
	_, ok := cl.State.Subscriptions.Get(filter) // [MQTT-3.10.4-2]
	return ok
}

// fill0 sends the retained messages of a QoS 0 subscription, each written
// straight to the connection.
func (f *filler) fill0(cl *mqtt.Client, sub packets.Subscription) {
	ctx := f.ctx()
	for _, topic := range f.topics(sub.Filter) {
		if ctx.Err() != nil || cl.Closed() || !stillSubscribed(cl, sub.Filter) {
			return
		}
		pk, ok := f.current(cl, sub, topic)
		if !ok {
			continue
		}
		// An error is a closed connection (seen on the next round) or a
		// message too large for the client (skipped, as mochi does).
		_ = cl.WritePacket(f.outgoing(cl, sub, pk))
	}
}

// takeSlot puts out in flight under a new packet id if cl's window has
// room, under the lock that live delivery takes too (fanout.go).
func (f *filler) takeSlot(cl *mqtt.Client, win int, out *packets.Packet) bool {
	if mu := f.slotLock(cl); mu != nil {
		mu.Lock()
		defer mu.Unlock()
	}
	if cl.State.Inflight.Len() >= win {
		return false
	}
	id, err := f.out.nextPacketID(cl)
	if err != nil {
		return false // every id in flight: wait for an acknowledgement
	}
	out.PacketID = id
	if cl.State.Inflight.Set(*out) {
		atomic.AddInt64(&f.srv.Info.Inflight, 1)
	}
	return true
}

// window is how many QoS 1/2 messages cl may have unacknowledged.
func window(cl *mqtt.Client) int {
	if rm := int(cl.Properties.Props.ReceiveMaximum); cl.Properties.ProtocolVersion == 5 && rm > 0 && rm < fillWindow {
		return rm
	}
	return fillWindow
}

// pump sends QoS 1/2 retained messages until the client's window is full
// or nothing is left. It runs on the client's reader goroutine only (see
// the top of this file).
func (f *filler) pump(cl *mqtt.Client, fc *fillClient) {
	win := window(cl)
	for {
		fc.mu.Lock()
		if fc.gone {
			fc.mu.Unlock()
			return
		}
		if fc.cur == nil || fc.cur.next >= len(fc.cur.topics) {
			fc.cur = nil
			if len(fc.queue1) == 0 {
				fc.mu.Unlock()
				return
			}
			job := fc.queue1[0]
			fc.queue1 = fc.queue1[1:]
			fc.mu.Unlock()
			cur := &fillCursor{sub: job.sub, topics: f.topics(job.sub.Filter)}
			fc.mu.Lock()
			if fc.gone {
				fc.mu.Unlock()
				return
			}
			fc.cur = cur
		}
		cur := fc.cur
		fc.mu.Unlock()
		for cur.next < len(cur.topics) {
			if cl.Closed() {
				return
			}
			if !stillSubscribed(cl, cur.sub.Filter) {
				cur.next = len(cur.topics)
				break
			}
			pk, ok := f.current(cl, cur.sub, cur.topics[cur.next])
			if !ok {
				cur.next++
				continue
			}
			out := f.outgoing(cl, cur.sub, pk)
			if out.FixedHeader.Qos > 0 && !f.takeSlot(cl, win, &out) {
				return // the next acknowledgement calls pump again
			}
			cur.next++
			if err := cl.WritePacket(out); err != nil && out.FixedHeader.Qos > 0 {
				// Too large for the client (skipped, as mochi does) or
				// the connection has closed.
				if cl.State.Inflight.Delete(out.PacketID) {
					atomic.AddInt64(&f.srv.Info.Inflight, -1)
				}
			}
		}
	}
}
