package broker

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Bus messages: the pass-through of MoaT-KV's msg_send and msg_monitor
// client actions. The node publishes plain messages through the broker's
// inline client (PublishMessage) and follows topics with inline
// subscriptions (Monitor). Both stay clear of the topics the broker keeps
// for itself:
//
//   - PublishMessage refuses topics under the KV prefix (a message there
//     would look like a tree value without being one: the broker's own
//     publishes bypass the write hook), topics under "<sync>/to/" (peers
//     would take it for this node's sync traffic) and topics starting with
//     '$'. Other topics under the sync prefix are allowed: they are the
//     node's bus namespace (MoaT-KV's server root, see SyncPrefix).
//   - A Monitor never sees "<sync>/to/…" messages, the per-peer sync
//     traffic that only the peers themselves may read.

// ErrReservedTopic: PublishMessage on a topic the broker keeps for itself.
var ErrReservedTopic = errors.New("broker: reserved topic")

// ErrTopic: a topic name or filter that MQTT does not allow.
var ErrTopic = errors.New("broker: invalid topic")

// Message is one message a Monitor saw.
type Message struct {
	Topic   string
	Payload []byte // the monitor's own copy
}

// SyncPrefix returns the topic prefix of sync traffic (Config.SyncPrefix
// after defaults). It is the node's bus namespace, the counterpart of
// MoaT-KV's server root ("moat/kv" when the prefix is set to that).
func (b *Broker) SyncPrefix() string { return b.cfg.SyncPrefix }

// PublishMessage publishes payload (QoS 1, not retained) on topic as the
// broker's inline client: every subscriber whose filter matches gets it.
// Reserved topics (see above) give an error wrapping ErrReservedTopic,
// topics that are not valid MQTT topic names one wrapping ErrTopic. It may
// be called from any goroutine.
func (b *Broker) PublishMessage(topic string, payload []byte) error {
	return b.publishInline(topic, payload, false)
}

// PublishRetained is PublishMessage with the retain flag: the broker keeps
// the message for later subscribers (within limits.retained), and an
// empty payload removes the one kept on topic.
func (b *Broker) PublishRetained(topic string, payload []byte) error {
	return b.publishInline(topic, payload, true)
}

func (b *Broker) publishInline(topic string, payload []byte, retain bool) error {
	if err := checkTopicName(topic); err != nil {
		return err
	}
	switch {
	case topic[0] == '$':
		return fmt.Errorf("%w: %q: topics starting with '$' belong to the broker", ErrReservedTopic, topic)
	case underPrefix(topic, b.cfg.KVPrefix):
		return fmt.Errorf("%w: %q is under the KV prefix %q: write the tree instead", ErrReservedTopic, topic, b.cfg.KVPrefix)
	case b.isPeerSync(topic):
		return fmt.Errorf("%w: %q is peer sync traffic", ErrReservedTopic, topic)
	}
	err := b.srv.InjectPacket(b.inline, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: retain},
		TopicName:   topic,
		PacketID:    1, // required for QoS 1; mochi numbers deliveries itself
		Payload:     payload,
	})
	if err != nil {
		return fmt.Errorf("broker: publishing %q: %w", topic, err)
	}
	return nil
}

// isPeerSync reports whether topic is under "<sync>/to/".
func (b *Broker) isPeerSync(topic string) bool {
	return strings.HasPrefix(topic, b.hook.toPrefix)
}

// monitorIDs numbers inline subscriptions; mochi keys them by filter and
// identifier, so every monitor gets its own.
var monitorIDs atomic.Int64

// Monitor follows the messages published on topics matching an MQTT topic
// filter, from the moment Monitor returns, through a bounded queue.
// mochi calls the subscription on the publisher's goroutine (the node's
// owning goroutine, an MQTT client's, …), so it never blocks: when the
// queue is full the monitor overflows — it takes no more messages and
// closes its channel after the ones queued — and is counted in
// MonitorOverflows. Retained messages are not replayed. Close ends it.
type Monitor struct {
	b      *Broker
	filter string
	id     int
	// wildFirst: the filter starts with a wildcard, which must not match
	// '$' topics (MQTT 4.7.2; mochi checks it for clients, not for inline
	// subscriptions).
	wildFirst bool

	mu       sync.Mutex
	ch       chan Message
	ended    bool // the channel is closed (overflow) or the monitor closed
	closed   bool // Close was called
	overflow bool
}

// monitorOverflows counts monitors ended because their queue was full,
// across all brokers of the process.
var monitorOverflows atomic.Int64

// MonitorOverflows returns how many monitors overflowed so far (in this
// process).
func MonitorOverflows() int64 { return monitorOverflows.Load() }

// Monitor starts a monitor on filter (an MQTT topic filter: '+' and '#'
// only as whole levels, '#' last) that queues at most queue messages.
// An invalid filter gives an error wrapping ErrTopic.
func (b *Broker) Monitor(filter string, queue int) (*Monitor, error) {
	if err := checkFilter(filter); err != nil {
		return nil, err
	}
	if queue <= 0 {
		queue = 1
	}
	m := &Monitor{b: b, filter: filter, id: int(monitorIDs.Add(1)), ch: make(chan Message, queue),
		wildFirst: filter[0] == '+' || filter[0] == '#'}
	// InlineSubscribe, not Server.Subscribe: the latter replays the
	// retained messages (for "kv/#", the whole tree) into the queue.
	b.out.kvSubs.inline(filter, +1)
	b.srv.Topics.InlineSubscribe(mqtt.InlineSubscription{
		Subscription: packets.Subscription{Filter: filter, Identifier: m.id},
		Handler:      m.handle,
	})
	return m, nil
}

// handle runs on the publisher's goroutine: a prefix check, a copy and a
// non-blocking send, under a lock that nothing holds while calling out.
func (m *Monitor) handle(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
	if m.b.isPeerSync(pk.TopicName) || (m.wildFirst && strings.HasPrefix(pk.TopicName, "$")) {
		return
	}
	msg := Message{Topic: pk.TopicName, Payload: bytes.Clone(pk.Payload)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return
	}
	select {
	case m.ch <- msg:
	default:
		m.ended, m.overflow = true, true
		close(m.ch)
		monitorOverflows.Add(1)
		m.b.log.Warn("bus monitor fell behind; it ended", "topic", m.filter, "queue", cap(m.ch))
	}
}

// Messages returns the monitor's queue. It is closed when the monitor
// overflowed (Overflowed reports true), after the messages queued before.
func (m *Monitor) Messages() <-chan Message { return m.ch }

// Overflowed reports whether the monitor ended because its queue was full.
func (m *Monitor) Overflowed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.overflow
}

// Close ends the monitor's subscription. It does not close the channel.
func (m *Monitor) Close() {
	m.b.srv.Topics.InlineUnsubscribe(m.id, m.filter)
	m.mu.Lock()
	m.ended = true
	closed := m.closed
	m.closed = true
	m.mu.Unlock()
	if !closed {
		m.b.out.kvSubs.inline(m.filter, -1)
	}
}

// checkTopicName reports why topic cannot be published on.
func checkTopicName(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: empty topic", ErrTopic)
	case len(topic) > maxTopicBytes:
		return fmt.Errorf("%w: topic of %d bytes (MQTT allows %d)", ErrTopic, len(topic), maxTopicBytes)
	case !utf8.ValidString(topic):
		return fmt.Errorf("%w: topic %q is not valid UTF-8", ErrTopic, topic)
	case strings.ContainsAny(topic, "+#\x00"):
		return fmt.Errorf("%w: topic %q contains a wildcard or NUL", ErrTopic, topic)
	}
	return nil
}

// checkFilter reports why filter is not a topic filter a monitor can take:
// '+' and '#' only as whole levels, '#' only as the last, and no shared
// subscriptions ("$share/…").
func checkFilter(filter string) error {
	switch {
	case filter == "":
		return fmt.Errorf("%w: empty filter", ErrTopic)
	case len(filter) > maxTopicBytes:
		return fmt.Errorf("%w: filter of %d bytes (MQTT allows %d)", ErrTopic, len(filter), maxTopicBytes)
	case !utf8.ValidString(filter) || strings.ContainsRune(filter, 0):
		return fmt.Errorf("%w: filter %q is not valid UTF-8 or contains NUL", ErrTopic, filter)
	}
	levels := strings.Split(filter, "/")
	if strings.EqualFold(levels[0], "$share") {
		return fmt.Errorf("%w: %q: shared subscriptions cannot be monitored", ErrTopic, filter)
	}
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("%w: filter %q: '#' must be the last level", ErrTopic, filter)
		case l != "+" && l != "#" && strings.ContainsAny(l, "+#"):
			return fmt.Errorf("%w: filter %q: '+' and '#' must be whole levels", ErrTopic, filter)
		}
	}
	return nil
}
